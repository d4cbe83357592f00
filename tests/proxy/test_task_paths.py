"""`/task/{uuid}/{action}`: the node gets a path rebuilt from the parsed uuid and action, hostile
paths (dot segments, encoded slashes) are refused with NodeODM's JSON errors, and with several
tokens one owner's path never reaches another owner's task. Requests go over a raw socket so
nothing normalises them on the way; the scripted node logs every request line it receives."""

from __future__ import annotations

from pathlib import Path

from support.clusterodm import ClusterODM
from support.rawhttp import raw_request
from support.simnode import SimNode

from .conftest import ScriptedNode, create_task, insert_routes, limits_file

MINE = "11111111-1111-4111-8111-111111111111"
THEIRS = "22222222-2222-4222-8222-222222222222"
UNKNOWN = "33333333-3333-4333-8333-333333333333"


HOSTILE = [
    # (raw target after /task/<mine>/, expected error; "CANNOT" = ClusterODM's `Cannot handle <path>`)
    (f"../../task/{THEIRS}/info", "CANNOT"),
    (f"%2e%2e/%2E%2E/task/{THEIRS}/info", "CANNOT"),
    (f".%2E/%2e./task/{THEIRS}/info", "CANNOT"),
    (f"..%2f..%2ftask%2f{THEIRS}%2finfo", "CANNOT"),
    (f"..%2F..%2Ftask%2F{THEIRS}%2Finfo", "CANNOT"),
    (f"info/../../{THEIRS}/info", "CANNOT"),
    (f"info%2f..%2f..%2f{THEIRS}%2finfo", "CANNOT"),
    ("./info", "CANNOT"),
    ("%2e/info", "CANNOT"),
    ("/info", "CANNOT"),
    ("info//", "CANNOT"),
    (f"download/..%2f..%2f{THEIRS}%2fdownload%2fall.zip", "Invalid asset"),
    (f"download/../../{THEIRS}/download/all.zip", "Invalid asset"),
    ("download/%2e%2e", "Invalid asset"),
    ("download/all.zip%2F..", "Invalid asset"),
    ("DOWNLOAD/a%2fb.zip", "Invalid asset"),
]


def test_node_gets_the_rebuilt_path_and_hostile_paths_are_refused(
    tmp_path: Path, scripted: ScriptedNode
) -> None:
    cluster = ClusterODM(tmp_path, "--limits", limits_file(tmp_path))
    insert_routes(cluster.data_dir, scripted, [MINE], token="alice")
    insert_routes(cluster.data_dir, scripted, [THEIRS], token="bob")
    with cluster.start():

        def get(target: str) -> object:
            reply = raw_request(cluster.host, cluster.port, target)
            assert reply.status == 200, (target, reply)
            return reply.json()

        # Plain, upper-case, trailing-slash and encoded forms reach the node rebuilt and encoded.
        expected = {
            f"/task/{MINE}/info?token=alice&with_output=2": f"GET /task/{MINE}/info?with_output=2 HTTP/1.1",
            f"/TASK/{MINE}/INFO/?token=alice": f"GET /task/{MINE}/info HTTP/1.1",
            f"/task/{MINE}/output/?token=alice": f"GET /task/{MINE}/output HTTP/1.1",
            f"/task/{MINE}/Download/a%20b%3F.zip?token=alice": (
                f"GET /task/{MINE}/download/a%20b%3F.zip HTTP/1.1"
            ),
            f"/task/{MINE}/download/caf%C3%A9+1.zip?token=alice": (
                f"GET /task/{MINE}/download/caf%C3%A9+1.zip HTTP/1.1"
            ),
        }
        for target, line in expected.items():
            answer = get(target)
            assert isinstance(answer, dict) and answer["request"] == line, target
        seen = scripted.task_requests()
        assert seen == list(expected.values())

        for rest, error in HOSTILE:
            target = f"/task/{MINE}/{rest}?token=alice"
            answer = get(target)
            if error == "CANNOT":
                assert isinstance(answer, dict) and answer["error"].startswith("Cannot handle /task/"), rest
            else:
                assert answer == {"error": error}, rest
        # Traversal that does not even parse as a task of ours, and an encoded slash in the uuid.
        for target in (f"/task/../task/{THEIRS}/info", f"/task/%2e%2e/task/{THEIRS}/info"):
            assert get(f"{target}?token=alice") == {"error": f"Cannot handle /task/../task/{THEIRS}/info"}
        assert get(f"/task/{MINE}%2f..%2f{THEIRS}/info?token=alice") == {"error": "Invalid uuid (not found)"}
        # Another owner's task, asked for directly: answered as if it did not exist.
        assert get(f"/task/{THEIRS}/info?token=alice") == {
            "error": f"Invalid route for taskId {THEIRS}:info, no task table entry."
        }
        assert scripted.task_requests() == seen  # none of that reached the node
        answer = get(f"/task/{THEIRS}/info?token=bob")
        assert isinstance(answer, dict) and answer["request"] == f"GET /task/{THEIRS}/info HTTP/1.1"


def test_traversal_never_reaches_another_owners_task_on_a_simulator(
    tmp_path: Path, module_images: list[str]
) -> None:
    with SimNode(tmp_path, "--processing-seconds", "0.2") as sim:
        mine, theirs = create_task(sim, module_images), create_task(sim, module_images)
        cluster = ClusterODM(tmp_path, "--limits", limits_file(tmp_path), nodes=[sim])
        insert_routes(cluster.data_dir, sim, [mine], token="alice")
        insert_routes(cluster.data_dir, sim, [theirs], token="bob")
        with cluster.start(wait_nodes=1):
            own = raw_request(cluster.host, cluster.port, f"/task/{mine}/info?token=alice").json()
            assert own["uuid"] == mine
            for rest, _ in HOSTILE:
                for variant in (rest, rest.replace(THEIRS, theirs)):
                    reply = raw_request(cluster.host, cluster.port, f"/task/{mine}/{variant}?token=alice")
                    answer = reply.json()
                    assert reply.status == 200 and list(answer) == ["error"], variant
                    assert answer["error"] == "Invalid asset" or answer["error"].startswith("Cannot handle")


def test_s3_download_redirect_only_for_the_owner(tmp_path: Path, scripted: ScriptedNode) -> None:
    """The redirect names the object; another token (or an unknown uuid) gets the ownership error."""
    base = "https://s3.example.com/bucket"
    cluster = ClusterODM(tmp_path, "--limits", limits_file(tmp_path), "--downloads-from-s3", base)
    insert_routes(cluster.data_dir, scripted, [MINE], token="alice")
    insert_routes(cluster.data_dir, scripted, [THEIRS], token="bob")
    with cluster.start():
        own = raw_request(cluster.host, cluster.port, f"/task/{MINE}/download/all.zip?token=alice")
        assert (own.status, own.headers["location"]) == (302, f"{base}/{MINE}/all.zip")
        for uuid, token in ((THEIRS, "alice"), (MINE, "bob"), (MINE, ""), (UNKNOWN, "alice")):
            reply = raw_request(cluster.host, cluster.port, f"/task/{uuid}/download/all.zip?token={token}")
            assert reply.status == 200 and "location" not in reply.headers
            assert reply.json() == {
                "error": f"Invalid route for taskId {uuid}:download/all.zip, no task table entry."
            }
        theirs = raw_request(cluster.host, cluster.port, f"/task/{THEIRS}/download/orthophoto.tif?token=bob")
        assert theirs.headers["location"] == f"{base}/{THEIRS}/odm_orthophoto/odm_orthophoto.tif"
        assert scripted.task_requests() == []
