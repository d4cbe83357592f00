"""Task creation routes: chunked init/upload/commit and single-shot ``/task/new`` (spec 1.4)."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import uuid as uuid_lib
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from clusterodm.nodeodm import messages
from clusterodm.nodeodm.formparse import PARTIAL_DIR, FormError, ParsedForm, parse_form
from clusterodm.nodeodm.jsnum import parse_int
from clusterodm.nodeodm.names import is_valid_set_uuid
from clusterodm.nodeodm.options import OptionsError, validate_options
from clusterodm.sim.assets import normalize_outputs
from clusterodm.sim.state import SimState
from clusterodm.sim.task import default_task_name, now_ms
from clusterodm.sim.wire import json_error, json_response

BODY_FILE = "body.json"
log = logging.getLogger("clusterodm.sim.uploads")


async def _drain(request: Request) -> None:
    """Consume an unwanted body so the client reads our answer instead of a reset."""
    async for _ in request.stream():
        pass


def _assign_uuid(sim: SimState, request: Request) -> tuple[str | None, Response | None]:
    wanted = request.headers.get("set-uuid")
    if not wanted:  # NodeODM tests the header's truthiness: an empty one is no header
        return str(uuid_lib.uuid4()), None
    if not is_valid_set_uuid(wanted) or sim.tasks.get(wanted) is not None:
        return None, json_error(messages.invalid_set_uuid(wanted))
    return wanted, None


async def _parse(
    request: Request, file_field: str | None, directory: Path | None, *, keep_on_disconnect: bool = False
) -> ParsedForm:
    content_type = request.headers.get("content-type", "")
    return await parse_form(
        content_type,
        request.stream(),
        file_field=file_field,
        directory=directory,
        keep_completed_on_error=False,
        replace_same_name=True,
        keep_on_disconnect=keep_on_disconnect,
    )


async def init(request: Request) -> Response:
    sim: SimState = request.app.state.sim
    uuid, problem = _assign_uuid(sim, request)
    if problem is not None or uuid is None:
        await _drain(request)
        return problem or json_error("Invalid set-uuid")
    try:
        form = await _parse(request, None, None)
    except FormError as exc:
        return json_error(str(exc))
    if form.fields.get("options"):  # NodeODM skips an empty value here; commit then chokes on it
        checked = validate_options(sim.data.options, form.fields["options"])
        if isinstance(checked, OptionsError):
            return json_error(checked.message)
    directory = sim.config.uploads_dir / uuid
    directory.mkdir(parents=True, exist_ok=True)
    (directory / BODY_FILE).write_text(json.dumps(form.fields), encoding="utf-8")
    return json_response({"uuid": uuid})


def _session_dir(sim: SimState, uuid: str) -> Path | None:
    if "/" in uuid or "\\" in uuid or uuid in ("", ".", ".."):
        return None
    directory = sim.config.uploads_dir / uuid
    return directory if (directory / BODY_FILE).is_file() else None


async def upload(request: Request) -> Response:
    sim: SimState = request.app.state.sim
    directory = _session_dir(sim, request.path_params["uuid"])
    if directory is None:
        await _drain(request)
        return json_error(messages.UUID_NOT_FOUND)
    uuid = directory.name
    if sim.should_drop_upload():
        await _drain(request)
        log.info("dropped upload for %s (simulated failure, answered 500)", uuid)
        sim.record_upload(uuid, [], "dropped")
        return Response(b"Internal Server Error (simulated drop)", status_code=500)
    try:
        # NodeODM (multer) keeps the parts of a request whose connection ended, the last one cut off,
        # and its commit counts them: spec 9.1.
        form = await _parse(request, "images", directory, keep_on_disconnect=True)
    except FormError as exc:
        sim.record_upload(uuid, [], f"error: {exc}")
        return json_error(str(exc))
    except BaseException:
        sim.record_upload(uuid, [], "error: the request ended early")
        raise
    sim.record_upload(uuid, form.files, "success" if form.files else "error: no file")
    if not form.files:
        return json_error(messages.NEED_ONE_FILE, noRetry=True)
    return json_response({"success": True})


async def load_log(request: Request) -> Response:
    """Simulator only, not part of NodeODM's API: the most tasks this node held and ran at once."""
    tasks = request.app.state.sim.tasks
    return json_response(
        {
            "queueCount": tasks.queue_count(),
            "maxQueueCount": tasks.max_queue_count,
            "maxRunning": tasks.max_running,
            "parallelTasks": tasks.config.parallel_tasks,
        }
    )


async def upload_log(request: Request) -> Response:
    """Simulator only, not part of NodeODM's API: the upload requests a task got (`SimState.uploads`)."""
    sim: SimState = request.app.state.sim
    return json_response({"requests": sim.uploads.get(request.path_params["uuid"], [])})


def _task_kwargs(fields: dict[str, str], options: list[dict[str, Any]]) -> dict[str, Any]:
    """Task settings from the form fields, with NodeODM's defaults and quirks."""
    date_created = parse_int(fields["dateCreated"]) if "dateCreated" in fields else None
    created = date_created if date_created is not None else now_ms()
    name = fields.get("name")
    if name == "":
        name = default_task_name(created)
    outputs: list[str] | None = None
    if fields.get("outputs"):
        try:
            parsed = json.loads(fields["outputs"])
        except ValueError:
            parsed = []
        outputs = normalize_outputs(parsed) if isinstance(parsed, list) else None
    return {
        "name": name,
        "date_created": created,
        "options": options,
        "skip_post_processing": fields.get("skipPostProcessing") == "true",
        "webhook": fields.get("webhook") or None,
        "outputs": outputs or None,
        "zipurl": fields.get("zipurl") or None,
    }


async def commit(request: Request) -> Response:
    sim: SimState = request.app.state.sim
    uuid = request.path_params["uuid"]
    await _drain(request)
    directory = _session_dir(sim, uuid)
    if directory is None or sim.tasks.get(uuid) is not None:
        return json_error(messages.UUID_NOT_FOUND)
    body_path = directory / BODY_FILE
    fields: dict[str, str] = json.loads(body_path.read_text(encoding="utf-8"))
    body_path.unlink()
    # Uploads stage each file in PARTIAL_DIR until it is complete; nothing of it belongs to the task.
    await asyncio.to_thread(shutil.rmtree, directory / PARTIAL_DIR, True)
    if not any(directory.iterdir()):
        await asyncio.to_thread(shutil.rmtree, directory, True)
        return json_error(messages.NEED_ONE_FILE)
    checked = validate_options(sim.data.options, fields.get("options"))
    if isinstance(checked, OptionsError):
        await asyncio.to_thread(shutil.rmtree, directory, True)
        return json_error(checked.message)
    sim.tasks.create(uuid, directory, **_task_kwargs(fields, checked.options))
    return json_response({"uuid": uuid})


async def new_single_shot(request: Request) -> Response:
    sim: SimState = request.app.state.sim
    uuid, problem = _assign_uuid(sim, request)
    if problem is not None or uuid is None:
        await _drain(request)
        return problem or json_error("Invalid set-uuid")
    directory = sim.config.uploads_dir / uuid
    directory.mkdir(parents=True, exist_ok=True)
    try:
        form = await _parse(request, "images", directory)
    except FormError as exc:
        await asyncio.to_thread(shutil.rmtree, directory, True)
        return json_error(str(exc))
    checked = validate_options(sim.data.options, form.fields.get("options"))
    error = _single_shot_error(sim, form)
    if error is None and isinstance(checked, OptionsError):
        error = checked.message
    if error is not None or isinstance(checked, OptionsError):
        await asyncio.to_thread(shutil.rmtree, directory, True)
        return json_error(error or "")
    await asyncio.to_thread(shutil.rmtree, directory / PARTIAL_DIR, True)
    sim.tasks.create(uuid, directory, **_task_kwargs(form.fields, checked.options))
    return json_response({"uuid": uuid})


def _single_shot_error(sim: SimState, form: ParsedForm) -> str | None:
    if not form.files and not form.fields.get("zipurl"):
        return messages.NEED_FILE_OR_ZIPURL
    limit = sim.config.max_images
    if limit is not None and len(form.files) > limit:
        return messages.too_many_images(len(form.files), limit)
    return None
