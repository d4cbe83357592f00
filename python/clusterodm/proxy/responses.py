"""Responses in ClusterODM's conventions: errors are HTTP 200 with `{"error": ...}`."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


def json_response(data: Any, status_code: int = 200) -> Response:
    """ClusterODM sends `application/json` without a charset; clients compare it literally."""
    return Response(orjson.dumps(data), status_code=status_code, media_type="application/json")


def json_error(message: str) -> Response:
    return json_response({"error": message})
