"""Node and task routes: info, options, list, task info/output/download, cancel/remove/restart."""

from __future__ import annotations

import os

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from clusterodm.nodeodm import messages
from clusterodm.nodeodm.jsnum import coerce_line, slice_lines
from clusterodm.nodeodm.options import OptionsError, validate_options
from clusterodm.sim.assets import iter_file
from clusterodm.sim.state import SimState
from clusterodm.sim.wire import json_error, json_response, query_string_value, read_small_body

NODE_VERSION = "2.2.4"


def _memory() -> tuple[int, int]:
    page = os.sysconf("SC_PAGE_SIZE")
    return os.sysconf("SC_PHYS_PAGES") * page, os.sysconf("SC_AVPHYS_PAGES") * page


async def node_info(request: Request) -> Response:
    sim: SimState = request.app.state.sim
    if request.query_params.get("_debugUnauthorized"):
        return Response(b"", status_code=401)
    total, available = _memory()
    return json_response(
        {
            "version": NODE_VERSION,
            "taskQueueCount": sim.tasks.queue_count(),
            "totalMemory": total,
            "availableMemory": available,
            "cpuCores": os.cpu_count() or 1,
            "maxImages": sim.config.max_images,
            "maxParallelTasks": sim.config.parallel_tasks,
            "engineVersion": sim.config.engine_version,
            "engine": "odm",
        }
    )


async def node_options(request: Request) -> Response:
    return json_response(request.app.state.sim.data.options)


async def auth_info(request: Request) -> Response:
    return json_response({"message": messages.AUTH_INFO_MESSAGE, "loginUrl": None, "registerUrl": None})


async def auth_unavailable(request: Request) -> Response:
    return json_error(messages.AUTH_NOT_AVAILABLE)


async def task_list(request: Request) -> Response:
    sim: SimState = request.app.state.sim
    return json_response([{"uuid": uuid} for uuid in sim.tasks.tasks])


async def task_info(request: Request) -> Response:
    sim: SimState = request.app.state.sim
    uuid = request.path_params["uuid"]
    task = sim.tasks.get(uuid)
    if task is None:
        return json_error(messages.task_not_found(uuid))
    raw = query_string_value(request, "with_output")
    return json_response(task.info(None if raw is None else coerce_line(raw)))


async def task_output(request: Request) -> Response:
    sim: SimState = request.app.state.sim
    uuid = request.path_params["uuid"]
    task = sim.tasks.get(uuid)
    if task is None:
        return json_error(messages.task_not_found(uuid))
    return json_response(slice_lines(task.output, coerce_line(query_string_value(request, "line"))))


async def task_download(request: Request) -> Response:
    sim: SimState = request.app.state.sim
    uuid = request.path_params["uuid"]
    task = sim.tasks.get(uuid)
    if task is None:
        return json_error(messages.task_not_found(uuid))
    if request.path_params["asset"] != "all.zip":
        return json_error(messages.INVALID_ASSET)
    # NodeODM checks only that all.zip exists: after a cancel of a completed task, or while a
    # restarted task runs again, the previous archive is served.
    if not task.zip_path.is_file():
        return json_error(messages.ASSET_NOT_READY)
    # Deliberately no Range support and no Accept-Ranges, like NodeODM 2.2.4.
    headers = {
        "content-length": str(task.zip_path.stat().st_size),
        "content-disposition": "attachment; filename=all.zip",
    }
    return StreamingResponse(iter_file(task.zip_path), media_type="application/zip", headers=headers)


async def _uuid_from_body(request: Request) -> tuple[dict[str, object], str | None]:
    body = await read_small_body(request)
    uuid = body.get("uuid")
    return body, (str(uuid) if uuid not in (None, "") else None)


async def task_cancel(request: Request) -> Response:
    sim: SimState = request.app.state.sim
    _, uuid = await _uuid_from_body(request)
    if uuid is None:
        return json_error(messages.UUID_PARAM_MISSING)
    if sim.tasks.cancel(uuid):
        return json_response({"success": True})
    return json_response({"success": False, "error": messages.task_not_found(uuid)})


async def task_remove(request: Request) -> Response:
    sim: SimState = request.app.state.sim
    _, uuid = await _uuid_from_body(request)
    if uuid is None:
        return json_error(messages.UUID_PARAM_MISSING)
    if await sim.tasks.remove(uuid):
        return json_response({"success": True})
    return json_response({"success": False, "error": messages.task_not_found(uuid)})


async def task_restart(request: Request) -> Response:
    sim: SimState = request.app.state.sim
    body, uuid = await _uuid_from_body(request)
    if uuid is None:
        return json_error(messages.UUID_PARAM_MISSING)
    options = None
    if body.get("options"):
        checked = validate_options(sim.data.options, body["options"])
        if isinstance(checked, OptionsError):
            return json_error(checked.message)
        options = checked.options
    error = sim.tasks.restart(uuid, options)
    if error is not None:
        return json_response({"success": False, "error": error})
    return json_response({"success": True})
