"""NodeODM's error messages, verbatim, so the simulator and the proxy cannot drift apart."""

from __future__ import annotations

INVALID_TOKEN = "Invalid authentication token: token does not match."  # noqa: S105 (a message)
UNEXPECTED_FIELD = "Unexpected field"
UUID_NOT_FOUND = "Invalid uuid (not found)"
NEED_ONE_FILE = "Need at least 1 file."
NEED_FILE_OR_ZIPURL = "Need at least 1 file or a zip file url."
UUID_PARAM_MISSING = "uuid param missing."
CANNOT_RESTART = "Task cannot be restarted"
INVALID_ASSET = "Invalid asset"
ASSET_NOT_READY = "Asset not ready"
CANNOT_PROCESS = "Cannot process dataset"
AUTH_NOT_AVAILABLE = "Not available"
AUTH_INFO_MESSAGE = "Authentication not available on this node"


def invalid_set_uuid(value: str) -> str:
    return f"Invalid set-uuid: {value}"


def task_not_found(uuid: str) -> str:
    return f"{uuid} not found"


def too_many_images(count: int, max_images: int) -> str:
    return f"{count} images uploaded, but this node can only process up to {max_images}."


# V8's JSON.parse errors as Node 14 (NodeODM's image) words them; Node 20 words them differently.
JSON_UNEXPECTED_END = "Unexpected end of JSON input"


def json_unexpected_token(char: str, position: int) -> str:
    return f"Unexpected token {char} in JSON at position {position}"


def json_unexpected_number(position: int) -> str:
    return f"Unexpected number in JSON at position {position}"


def json_unexpected_string(position: int) -> str:
    return f"Unexpected string in JSON at position {position}"
