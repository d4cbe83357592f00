"""The simulator answers at the HTTP level as NodeODM's Express app does (spec 9.7-9.8): the query
parser, ETags and conditional GETs, and route matching on the raw path."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import httpx
from pyodm import Node

from support.rawhttp import raw_request
from support.simnode import SimNode

INVALID_TOKEN = {"error": "Invalid authentication token: token does not match."}


def express_etag(body: bytes) -> str:
    """What Express's default `etag` setting sends: W/"<length hex>-<first 27 chars of base64 SHA-1>"."""
    return f'W/"{len(body):x}-{base64.b64encode(hashlib.sha1(body).digest()).decode()[:27]}"'


def completed_task(sim: SimNode, images: list[str]) -> str:
    task = Node(sim.host, sim.port).create_task(images[:2])
    task.wait_for_completion(interval=0.1)
    return str(task.uuid)


def test_repeated_token_is_refused(start_sim: Callable[..., SimNode]) -> None:
    """NodeODM: Express's query parser makes `?token=a&token=b` (and `token[]=a`) a list, which never
    equals the node's token, so the answer is the wrong-token error even when every value is right.
    A node without a token accepts anything, lists included."""
    sim = start_sim("--token", "s3cret")
    host, port = sim.host, sim.port
    assert raw_request(host, port, "/info?token=s3cret").json()["version"] == "2.2.4"
    for query in (
        "token=s3cret&token=s3cret",
        "token=x&token=s3cret",
        "token[]=s3cret",
        "tok%65n=s3cret&token=s3cret",
    ):
        reply = raw_request(host, port, f"/info?{query}")
        assert (reply.status, reply.json()) == (200, INVALID_TOKEN), query
        assert raw_request(host, port, f"/task/list?{query}").json() == INVALID_TOKEN, query
    open_node = start_sim()
    assert raw_request(open_node.host, open_node.port, "/task/list?token=a&token=b").json() == []


def test_json_answers_carry_a_weak_etag_and_conditional_gets_get_304(sim: SimNode, images: list[str]) -> None:
    """NodeODM (Express `res.json`): every JSON answer, errors included, has a weak ETag computed
    from its body; a GET or HEAD whose `If-None-Match` names it (weak comparison, lists allowed,
    `*` too) gets 304 with an empty body and no Content-Type, unless `Cache-Control: no-cache`.
    Other methods, HTML 404 pages and downloads are never 304 and the pages carry no ETag."""
    uuid = completed_task(sim, images)
    target = f"/task/{uuid}/info"
    first = raw_request(sim.host, sim.port, target)
    etag = first.headers["etag"]
    assert etag == express_etag(first.body) and etag.startswith('W/"')
    error = raw_request(sim.host, sim.port, "/task/nope/info")
    assert error.json() == {"error": "nope not found"} and error.headers["etag"] == express_etag(error.body)
    strong = etag[2:]
    for header in (etag, strong, f'W/"other", {etag}', "*"):
        for method in ("GET", "HEAD"):
            again = raw_request(sim.host, sim.port, target, method=method, headers={"If-None-Match": header})
            assert (again.status, again.body, again.headers["etag"]) == (304, b"", etag), (method, header)
            assert "content-type" not in again.headers and again.headers["access-control-allow-origin"] == "*"
    for headers in ({"If-None-Match": 'W/"other"'}, {"If-None-Match": etag, "Cache-Control": "no-cache"}):
        reply = raw_request(sim.host, sim.port, target, headers=headers)
        assert (reply.status, reply.body) == (200, first.body), headers
    posted = httpx.post(f"{sim.url}/task/cancel", data={"uuid": "nope"}, headers={"If-None-Match": "*"})
    assert posted.status_code == 200 and posted.headers["etag"] == express_etag(posted.content)
    missing = raw_request(sim.host, sim.port, "/nope", headers={"If-None-Match": "*"})
    assert missing.status == 404 and "etag" not in missing.headers
    download = raw_request(
        sim.host, sim.port, f"/task/{uuid}/download/all.zip", headers={"If-None-Match": "*"}
    )
    assert download.status == 200 and "etag" not in download.headers and download.body[:2] == b"PK"


def test_routes_match_like_express_on_the_raw_path(sim: SimNode, images: list[str]) -> None:
    """NodeODM (Express router): route names match in any case and with one trailing slash; the raw
    path is matched before decoding, so an encoded slash stays inside its parameter and gets the
    route's JSON error (`Invalid uuid (not found)`, `Invalid asset`), while a parameter is decoded
    afterwards (`all%2Ezip` is all.zip). Unknown paths, `..` segments, two trailing slashes and a
    wrong method get Express's HTML 404 page naming the path as sent; a malformed escape is a 400."""
    uuid = completed_task(sim, images)
    host, port = sim.host, sim.port
    info = raw_request(host, port, f"/task/{uuid}/info").json()
    for target in (f"/task/{uuid}/info/", f"/TASK/{uuid}/INFO", f"/Task/{uuid}/Info/"):
        assert raw_request(host, port, target).json() == info, target
    assert (
        raw_request(host, port, "/INFO").json()["version"]
        == raw_request(host, port, "/info/").json()["version"]
    )
    assert raw_request(host, port, "/Task/List/").json() == raw_request(host, port, "/task/list").json()
    assert raw_request(host, port, f"/task/{uuid.upper()}/info").json() == {
        "error": f"{uuid.upper()} not found"
    }
    for action in ("upload", "commit"):
        reply = raw_request(host, port, f"/task/new/{action}/{uuid}%2F..", method="POST")
        assert reply.json() == {"error": "Invalid uuid (not found)"}, action
    assert raw_request(host, port, f"/task/{uuid}/download/x%2Fall.zip").json() == {"error": "Invalid asset"}
    assert raw_request(host, port, "/task/a%2Fb/info").json() == {"error": "a/b not found"}
    zipped = raw_request(host, port, f"/task/{uuid}/download/all%2Ezip")
    assert zipped.status == 200 and zipped.headers["content-type"] == "application/zip"
    for method, target in (
        ("GET", f"/task/{uuid}/../{uuid}/info"),
        ("GET", f"/task/{uuid}/info/../info"),
        ("GET", "/info//"),
        ("GET", "/task/new/init"),
        ("POST", "/info"),
        ("GET", "/nope/'x'&\"y\""),
    ):
        reply = raw_request(host, port, target, method=method)
        assert reply.status == 404 and reply.headers["content-type"] == "text/html; charset=utf-8", target
        shown = target.replace("&", "&amp;").replace('"', "%22").replace("'", "&#39;")
        assert f"<pre>Cannot {method} {shown}</pre>".encode() in reply.body, target
    bad = raw_request(host, port, "/task/%E0%A4%A/info")
    assert bad.status == 400 and b"Failed to decode param &#39;%E0%A4%A&#39;" in bad.body


def test_repeated_line_parameters_read_as_javascript_lists(sim: SimNode, images: list[str]) -> None:
    """NodeODM parses `line` and `with_output` with parseInt of the query value; Express makes a
    repeated parameter a list, which reads as "2,5" (so 2), `line[]=-1` as "-1", and `line[k]=3` an
    object, "[object Object]" (NaN, so 0)."""
    uuid = completed_task(sim, images)
    full = httpx.get(f"{sim.url}/task/{uuid}/output").json()
    assert len(full) > 10

    def output(query: str) -> list[str]:
        return raw_request(sim.host, sim.port, f"/task/{uuid}/output?{query}").json()

    assert output("line=2&line=5") == full[2:]
    assert output("line[]=-1") == full[-1:]
    assert output("line[k]=3") == full
    with_output = raw_request(sim.host, sim.port, f"/task/{uuid}/info?with_output=3&with_output=9").json()
    assert with_output["output"] == full[3:]
