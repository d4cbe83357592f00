"""Fields of `/task/cancel|remove|restart` bodies: urlencoded, JSON or multipart (spec 8.5)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.requests import Request

from clusterodm.nodeodm import v8json

MAX_BODY = 1024 * 1024
"""These bodies carry a uuid and maybe an options list; anything bigger is refused."""


class BodyError(Exception):
    """The body cannot be read as fields; the message is the JSON error to send."""


async def read_fields(request: Request) -> dict[str, Any]:
    """`uuid`/`options` fields of the body, whatever its encoding (missing Content-Type = urlencoded)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        try:
            async with request.form(max_files=0, max_fields=100) as form:
                return {k: v for k, v in form.items() if isinstance(v, str)}
        except HTTPException as exc:  # Starlette's 400 for a malformed body: ours is a JSON error
            raise BodyError(f"Malformed multipart body: {exc.detail}") from exc
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise BodyError("Request body too large")
    if content_type == "application/json" or content_type.endswith("+json"):
        # NodeODM's body-parser (strict): its Node 14 error texts; an array is no fields at all.
        try:
            data = v8json.loads_body(body)
        except v8json.JsonError as exc:
            raise BodyError(str(exc)) from None
        return data if isinstance(data, dict) else {}
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
