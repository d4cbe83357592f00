"""Hand-built multipart bodies, for the parts an HTTP client library will not send (``filename=""``,
two files of one name in one request, fields and files in a chosen order).

body, content_type = multipart([("name", None, b"t"), ("images", "a.jpg", b"...")])
httpx.post(url, content=body, headers={"Content-Type": content_type})
"""

from __future__ import annotations

BOUNDARY = "simEdgeB0undary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = BOUNDARY) -> tuple[bytes, str]:
    """``(field, filename or None for a text field, data)`` parts -> the body and its Content-Type."""
    body = b""
    for field, filename, data in parts:
        disposition = f'form-data; name="{field}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"
