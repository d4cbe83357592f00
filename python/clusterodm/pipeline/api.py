"""Task creation routes: /task/new/init, /task/new/upload/{uuid}, /task/new/commit/{uuid}, /task/new.

The auth layer in front sets `request.state.token` and `request.state.limits`. Every refusal is
NodeODM's HTTP 200 `{"error": ...}`. While the state store is unavailable, `init`, `commit` and
`/task/new` are refused before anything is created (an upload into an open session still works:
it only writes files here, and its commit can be sent again once the store answers).
"""

from __future__ import annotations

import asyncio
import filecmp
import hmac
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from clusterodm.cluster.providers import NO_LIMITS, Limits
from clusterodm.cluster.store import UNAVAILABLE, StoreUnavailable
from clusterodm.nodeodm import messages
from clusterodm.nodeodm.formparse import FormError, drain, parse_form
from clusterodm.nodeodm.jsnum import parse_int
from clusterodm.pipeline.guards import FLOODING
from clusterodm.pipeline.sessions import Session, is_image
from clusterodm.pipeline.streaming import RequestFeed
from clusterodm.proxy.responses import json_error, json_response

if TYPE_CHECKING:
    from clusterodm.cluster.store import Store
    from clusterodm.pipeline import Pipeline

COMMIT_WAIT_S = 60.0


def max_images_exceeded(limit: int) -> str:
    """A token's limit counts images only (`sessions.is_image`), and says so."""
    return (
        f"Max images count exceeded: this account can process up to {limit} images per task "
        "(GCP and other .txt files, .zip archives and align.* files do not count)."
    )


def _auth(request: Request) -> tuple[str, Limits]:
    token = getattr(request.state, "token", "") or ""
    limits = getattr(request.state, "limits", None) or NO_LIMITS
    return token, limits


def _incoming(request: Request) -> int:
    """The request body's announced size (0 when not given: chunked)."""
    value = request.headers.get("content-length", "")
    return int(value) if value.isdigit() else 0


def _cluster_url(request: Request) -> str:
    return str(request.base_url)


def task_fields(form: dict[str, str]) -> dict[str, Any]:
    """The creation fields clusterodm keeps (spec 2.3); everything else is ignored."""
    fields: dict[str, Any] = {
        "name": form.get("name") or "",
        "options": form.get("options", "[]"),  # "" is kept: commit refuses it as NodeODM does
        "skipPostProcessing": form.get("skipPostProcessing") == "true",
        "webhook": form.get("webhook") or "",
        "outputs": form.get("outputs") or "",
        "zipurl": form.get("zipurl") or "",
    }
    created = parse_int(form["dateCreated"]) if form.get("dateCreated") else None
    if created is not None:
        fields["dateCreated"] = created
    return fields


def same_content(a: Path, b: Path) -> bool:
    """Byte-for-byte equality (only called for same-named files, so rarely); blocking."""
    return a.stat().st_size == b.stat().st_size and filecmp.cmp(a, b, shallow=False)


async def same_file(a: Path, b: Path) -> bool:
    """`same_content` in a worker thread: a retried file may be gigabytes, and reading them on the
    event loop would stall every other upload and request meanwhile."""
    return await asyncio.to_thread(same_content, a, b)


def _owned_session(pipeline: Pipeline, uuid: str, token: str) -> Session | None:
    session = pipeline.sessions.get(uuid)
    if session is None or not hmac.compare_digest(session.token.encode(), token.encode()):
        return None
    return session


async def _store_files(
    pipeline: Pipeline, request: Request, session: Session, limits: Limits, *, quota_each: bool = False
) -> list[str] | str:
    """Stream the request's `images` into the session folder; the stored names, or an error text.

    Each completed file goes on to the session's early forward at once (with stream-through, each
    file starts going on as soon as it starts arriving). A file identical to one stored by an
    earlier request under the same name is a client's retry of an upload whose answer it missed:
    it is dropped and counts as received, so retries never add copies or hit the image limit.
    Two parts of one name in the same request leave one file, as on NodeODM (where the two writes
    race and the later usually wins); here the first stays, the second is dropped as a repeat, so
    the early forward never has to take back a file it already sent.
    """
    reserved = 0
    unreserved = False
    """The current image part was let in past the image limit, as a possible repeat."""
    asked: set[str] = set()
    """Names (as sanitized, before any `_` renaming) of the files this request completed."""
    cluster_url = _cluster_url(request)
    feed = RequestFeed(
        lambda partial, name: pipeline.file_started(session, partial, name, limits, cluster_url),
        pipeline.received,
    )

    def gate(name: str) -> str | None:
        nonlocal reserved, unreserved
        unreserved = False
        if quota_each:  # a body of unknown size: each file is let in while the quota is not used up
            error = pipeline.quota_error(0)
            if error is not None:
                return error
        if not is_image(name):
            return None
        limit = limits.max_images
        if limit is not None and session.images + session.reserved + 1 > limit:
            if name not in asked and not (session.directory / name).is_file():
                return max_images_exceeded(limit)
            unreserved = True  # decided once complete: a repeat passes, anything else is refused
            return None
        session.reserved += 1
        reserved += 1
        return None

    async def repeat_of(partial: Path, name: str) -> str | None:
        if name in asked:
            return name
        stored_before = session.directory / name
        if stored_before.is_file() and await same_file(stored_before, partial):
            asked.add(name)
            return name
        if unreserved:
            raise FormError(max_images_exceeded(limits.max_images or 0))
        asked.add(name)
        return None

    def stored(name: str) -> None:
        nonlocal reserved
        feed.completed(name)
        if is_image(name):
            session.reserved -= 1
            reserved -= 1
        session.add_file(name)
        pipeline.file_stored(session, name, limits, cluster_url)

    session.begin_request()
    try:
        form = await parse_form(
            request.headers.get("content-type", ""),
            feed.follow(request.stream()),
            file_field="images",
            directory=session.directory,
            staging=session.staging,
            gate=gate,
            on_file=stored,
            on_file_start=feed.started,
            repeat_of=repeat_of,
            reuse=pipeline.sessions.spare.take if pipeline.sessions.spare else None,
        )
    except FormError as exc:
        return str(exc)
    finally:
        feed.close()
        session.reserved -= reserved
        session.end_request()
    request.state.form_fields = form.fields
    return form.files + form.repeats


def routes(pipeline: Pipeline, store: Store) -> list[BaseRoute]:
    """The creation routes over `pipeline`; they refuse to begin a task while `store` is down."""

    def store_down() -> bool:
        """The state store is known not to answer: a task begun now could not be created."""
        return not store.available

    async def init(request: Request) -> Response:
        token, limits = _auth(request)
        if store_down():
            await drain(request.stream())
            return json_error(UNAVAILABLE)
        uuid = pipeline.assign_uuid(request.headers.get("set-uuid"))
        if uuid is None:
            await drain(request.stream())
            return json_error(messages.invalid_set_uuid(request.headers.get("set-uuid", "")))
        try:
            form = await parse_form(request.headers.get("content-type", ""), request.stream())
        except FormError as exc:
            return json_error(str(exc))
        fields = task_fields(form.fields)
        error = await pipeline.admit(token, limits, fields, _cluster_url(request))
        if error is None and not await pipeline.flood_start(token):
            error = FLOODING  # counted cluster-wide: other replicas' uploads of this token too
        if error is not None:
            return json_error(error)
        if pipeline.known(uuid):  # a parallel init with the same set-uuid won the race
            return json_error(messages.invalid_set_uuid(uuid))
        error = await pipeline.claim(uuid, token)  # replicas: held here (and by no other replica)
        if error is not None:
            return json_error(error)
        if pipeline.known(uuid):  # a parallel init here won the race while the claim was written
            return json_error(messages.invalid_set_uuid(uuid))
        pipeline.sessions.create(uuid, token, fields)
        return json_response({"uuid": uuid})

    async def upload(request: Request) -> Response:
        token, limits = _auth(request)
        session = _owned_session(pipeline, request.path_params["uuid"], token)
        if session is None or session.committed:
            await drain(request.stream())
            return json_error("Invalid taskId: the task no longer exists.")
        incoming = _incoming(request)
        error = pipeline.quota_error(incoming) if incoming else None
        if error is not None:
            await drain(request.stream())
            return json_error(error)
        pipeline.sessions.reserved_bytes += incoming
        try:
            result = await _store_files(pipeline, request, session, limits, quota_each=not incoming)
        finally:
            pipeline.sessions.reserved_bytes -= incoming
        if isinstance(result, str):
            return json_error(result)
        if not result:
            return json_response({"error": messages.NEED_ONE_FILE, "noRetry": True})
        return json_response({"success": True})

    async def commit(request: Request) -> Response:
        token, limits = _auth(request)
        uuid = request.path_params["uuid"]
        await drain(request.stream())
        session = _owned_session(pipeline, uuid, token)
        if session is None:
            return json_error(messages.UUID_NOT_FOUND)
        if session.committed:
            return json_error(f"Task {uuid} was already committed.")
        if store_down():  # the upload stays as it is: the client commits again later
            return json_error(UNAVAILABLE)
        session.committed = True  # before any await: a concurrent second commit is refused
        try:
            await asyncio.wait_for(session.idle.wait(), COMMIT_WAIT_S)
        except TimeoutError:
            session.committed = False
            return json_error("Uploads for this task are still running; commit again once they finished.")
        return await _launch(session, limits, request, keep=True)

    async def _launch(session: Session, limits: Limits, request: Request, *, keep: bool = False) -> Response:
        """Launch a committed session; with `keep`, a store outage or a refusal worth a retry
        leaves it uncommitted (the client may commit again) instead of dropping it."""
        try:
            refusal = await pipeline.launch(session, limits, _cluster_url(request))
        except StoreUnavailable:
            if not keep:
                await pipeline.drop(session.uuid)
            session.committed = False
            return json_error(UNAVAILABLE)
        except BaseException:
            await pipeline.drop(session.uuid)
            raise
        if refusal is None:
            return json_response({"uuid": session.uuid})
        if keep and refusal.retry:  # e.g. no node online right now: the upload waits for a new commit
            session.committed = False
        else:
            await pipeline.drop(session.uuid)
        return json_error(refusal.message)

    async def new(request: Request) -> Response:
        token, limits = _auth(request)
        if store_down():
            await drain(request.stream())
            return json_error(UNAVAILABLE)
        uuid = pipeline.assign_uuid(request.headers.get("set-uuid"))
        if uuid is None:
            await drain(request.stream())
            return json_error(messages.invalid_set_uuid(request.headers.get("set-uuid", "")))
        incoming = _incoming(request)
        error = pipeline.quota_error(0) or (pipeline.quota_error(incoming) if incoming else None)
        error = error or (await pipeline.queue_limit_error(token) if pipeline.queue.enabled else None)
        error = error or await pipeline.claim(uuid, token)
        if error is None and pipeline.known(uuid):  # a parallel request won while the claim was written
            error = messages.invalid_set_uuid(uuid)
        if error is not None:
            await drain(request.stream())
            return json_error(error)
        session = pipeline.sessions.create(uuid, token, {})
        session.committed = True  # nobody may upload into or commit a single-shot task
        pipeline.sessions.reserved_bytes += incoming
        try:
            result = await _store_files(pipeline, request, session, limits, quota_each=not incoming)
            if isinstance(result, str):
                await pipeline.drop(uuid)
                return json_error(result)
            session.fields = task_fields(request.state.form_fields)
            if not result and not session.fields["zipurl"]:
                await pipeline.drop(uuid)
                return json_error(messages.NEED_FILE_OR_ZIPURL)
            error = await pipeline.admit(
                token, limits, session.fields, _cluster_url(request), before_data=False
            )
            if error is not None:
                await pipeline.drop(uuid)
                return json_error(error)
        except BaseException:
            await pipeline.drop(uuid)
            raise
        finally:
            pipeline.sessions.reserved_bytes -= incoming
        return await _launch(session, limits, request)

    return [
        Route("/task/new/init", init, methods=["POST"]),
        Route("/task/new/upload/{uuid}", upload, methods=["POST"]),
        Route("/task/new/commit/{uuid}", commit, methods=["POST"]),
        Route("/task/new", new, methods=["POST"]),
    ]
