"""TASK commands of the admin CLI, answered through the shared `TaskActions` (admin = no owner check)."""

from __future__ import annotations

import json

from pyodm import Node as OdmNode

from support.admin_env import Cli, Env


def test_task_info_output_list(env: Env, cli: Cli) -> None:
    info = json.loads("\n".join(cli.command(f"TASK INFO {env.task_uuid}")))
    assert info["uuid"] == env.task_uuid and info["name"] == "Survey" and info["imagesCount"] == 4
    assert info["status"]["code"] in (10, 20)
    output = cli.command(f"TASK OUTPUT {env.task_uuid}")
    on_node = OdmNode(env.sims[0].host, env.sims[0].port).get_task(env.task_uuid).output()
    assert on_node[: len(output)] == output  # the node's output (it may have grown since)
    if output:
        assert cli.command(f"TASK OUTPUT {env.task_uuid} {len(output) - 1}") == output[-1:]
    assert cli.command(f"TASK OUTPUT {env.task_uuid} 100000") == []
    assert cli.command(f"TASK OUTPUT {env.local_uuid}") == ["Uploading"]
    listed = json.loads("\n".join(cli.command("TASK LIST")))
    assert env.task_uuid in [t["uuid"] for t in listed]
    assert [t["uuid"] for t in json.loads("\n".join(cli.command("TASK LIST 1")))] == [env.task_uuid]
    assert json.loads("\n".join(cli.command("TASK LIST 2"))) == []
    local = json.loads("\n".join(cli.command(f"TASK INFO {env.local_uuid}")))
    assert local["uuid"] == env.local_uuid and local["imagesCount"] == 7


def test_task_cancel_and_remove(env: Env, cli: Cli) -> None:
    assert json.loads("\n".join(cli.command(f"TASK CANCEL {env.local_uuid}"))) == {"success": True}
    info = json.loads("\n".join(cli.command(f"TASK INFO {env.local_uuid}")))
    assert info["status"]["code"] == 50
    assert json.loads("\n".join(cli.command(f"TASK REMOVE {env.local_uuid}"))) == {"success": True}
    assert cli.command(f"TASK INFO {env.local_uuid}") == ["INVALID"]
