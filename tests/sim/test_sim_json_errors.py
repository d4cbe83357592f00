"""NodeODM's JSON error texts: V8's `JSON.parse` as Node 14 words it (NodeODM's image runs Node 14),
and body-parser's strict mode on JSON bodies (spec 9.6)."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusterodm.nodeodm import v8json
from support.simnode import SimNode


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("notjson", "Unexpected token o in JSON at position 1"),
        ("{bad", "Unexpected token b in JSON at position 1"),
        ("[{nope", "Unexpected token n in JSON at position 2"),
        ("", "Unexpected end of JSON input"),
        ('[{"name":"dsm"', "Unexpected end of JSON input"),
        ("01", "Unexpected number in JSON at position 1"),
        ("-x", "Unexpected token x in JSON at position 1"),
        ("1.", "Unexpected end of JSON input"),
        ("[1.x]", "Unexpected token x in JSON at position 3"),
        ("[1.5e+]", "Unexpected token ] in JSON at position 6"),
        ("[-0.5E2, 0]", None),
        ("[1,]", "Unexpected token ] in JSON at position 3"),
        ('{"a" "b"}', "Unexpected string in JSON at position 5"),
        ('"a\\x"', "Unexpected token x in JSON at position 3"),
        ("NaN", "Unexpected token N in JSON at position 0"),
        ("[1] x", "Unexpected token x in JSON at position 4"),
        ("\U0001f600x", "Unexpected token \U0001f600 in JSON at position 0"),
        ('["\U0001f600", x]', "Unexpected token x in JSON at position 7"),  # UTF-16 positions
        ('[[{"a": [true, null, -1.5e3]}]]', None),
    ],
)
def test_v8_json_parse_messages(text: str, message: str | None) -> None:
    """V8 8.4 reports the first character it cannot use: inside a literal (`notjson`: the `o`),
    numbers and strings by kind (`Unexpected number|string`), the end as `Unexpected end of JSON input`."""
    assert v8json.parse_error(text) == message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{bad", "Unexpected token b in JSON at position 1"),
        (b"null", "Unexpected token n in JSON at position 0"),
        (b'  "x"', 'Unexpected token " in JSON at position 2'),
        (b"5", "Unexpected token 5 in JSON at position 0"),
        (b" \n", "Unexpected end of JSON input"),
    ],
)
def test_body_parser_strict_messages(body: bytes, message: str) -> None:
    """body-parser's strict `json()` takes only an object or array; for anything else it parses the
    text up to the first character with `#` in its place and names that character."""
    with pytest.raises(v8json.JsonError) as caught:
        v8json.loads_body(body)
    assert str(caught.value) == message


def test_node14_json_error_texts(sim: SimNode) -> None:
    """NodeODM 2.2.4 on Node 14: `options=notjson` -> `Unexpected token o in JSON at position 1`; a JSON
    body `{bad` on cancel/remove/restart -> `Unexpected token b in JSON at position 1`; a JSON body
    `null` -> `Unexpected token n in JSON at position 0` (body-parser's strict mode); `[]` and an
    empty body parse (no uuid)."""
    init = httpx.post(f"{sim.url}/task/new/init", files={"options": (None, "notjson")})
    assert init.json() == {"error": "Unexpected token o in JSON at position 1"}
    files = {"options": (None, "notjson"), "images": ("a.jpg", b"a")}
    single = httpx.post(f"{sim.url}/task/new", files=files)
    assert single.json() == {"error": "Unexpected token o in JSON at position 1"}
    json_type = {"Content-Type": "application/json"}
    for action in ("cancel", "remove", "restart"):
        url = f"{sim.url}/task/{action}"
        assert httpx.post(url, content=b"{bad", headers=json_type).json() == {
            "error": "Unexpected token b in JSON at position 1"
        }
        assert httpx.post(url, content=b"null", headers=json_type).json() == {
            "error": "Unexpected token n in JSON at position 0"
        }
        assert httpx.post(url, content=b"[]", headers=json_type).json() == {"error": "uuid param missing."}
        assert httpx.post(url, content=b"", headers=json_type).json() == {"error": "uuid param missing."}


@given(st.text(alphabet='{}[]",:01239.-+eEtrufalsnu \\\n\x01', max_size=24))
def test_v8_scan_agrees_with_a_json_parser(text: str) -> None:
    """The scan refuses exactly what a strict JSON parser refuses (it only chooses the words)."""
    try:
        json.loads(text, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
        valid = True
    except ValueError:
        valid = False
    assert (v8json.parse_error(text) is None) == valid
