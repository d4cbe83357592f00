"""Control-plane requests to nodes (/info, /options, task info/output/list).

These are small JSON calls; uploads and proxied client traffic go elsewhere. The node's own
token is sent as the `token` query parameter, and nothing at all when the node has none: a
user's token is never passed on to a node (spec 8.23).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from clusterodm.cluster.node import Node

DEFAULT_TIMEOUT_S = 10.0


class NodeError(Exception):
    """A node request failed (transport, HTTP status, bad JSON or a NodeODM `{"error": ...}` reply)."""

    def __init__(self, node: Node, message: str) -> None:
        super().__init__(f"{node.name}: {message}")
        self.node = node
        self.reason = message


class NodeClient:
    """Thin typed wrapper over a shared `httpx.AsyncClient` (its connection pool is reused)."""

    def __init__(self, http: httpx.AsyncClient, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._http = http
        self._timeout = timeout_s

    def _params(self, node: Node, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        params = dict(extra or {})
        if node.token:
            params["token"] = node.token
        return params

    async def _request(
        self,
        node: Node,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        url = node.base_url + path
        try:
            response = await self._http.request(
                method,
                url,
                params=self._params(node, params),
                timeout=self._timeout if timeout_s is None else timeout_s,
            )
        except httpx.TimeoutException:
            raise NodeError(node, f"{method} {path} timed out") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise NodeError(node, f"{method} {path} failed: {exc.__class__.__name__}: {exc}") from None
        if response.status_code != 200:
            raise NodeError(node, f"{method} {path} answered HTTP {response.status_code}")
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise NodeError(node, f"{method} {path} answered invalid JSON") from None
        if isinstance(body, dict) and "error" in body:
            raise NodeError(node, f"{method} {path}: {body['error']}")
        return body

    async def _json_object(self, node: Node, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        body = await self._request(node, method, path, **kwargs)
        if not isinstance(body, dict):
            raise NodeError(node, f"{method} {path} answered {type(body).__name__}, expected an object")
        return body

    async def _json_list(self, node: Node, path: str, **kwargs: Any) -> list[Any]:
        body = await self._request(node, "GET", path, **kwargs)
        if not isinstance(body, list):
            raise NodeError(node, f"GET {path} answered {type(body).__name__}, expected a list")
        return body

    async def info(self, node: Node, timeout_s: float | None = None) -> dict[str, Any]:
        """GET /info."""
        return await self._json_object(node, "GET", "/info", timeout_s=timeout_s)

    async def options(self, node: Node) -> list[Any]:
        """GET /options (the option list the node accepts)."""
        return await self._json_list(node, "/options")

    async def task_list(self, node: Node) -> list[Any]:
        """GET /task/list (`[{"uuid": ...}]`)."""
        return await self._json_list(node, "/task/list")

    async def task_info(self, node: Node, uuid: str, with_output: int | str | None = None) -> dict[str, Any]:
        """GET /task/{uuid}/info; NodeError also when the node does not know the task."""
        params = {"with_output": str(with_output)} if with_output is not None else None
        return await self._json_object(node, "GET", f"/task/{uuid}/info", params=params)

    async def task_output(self, node: Node, uuid: str, line: int | str | None = None) -> list[Any]:
        """GET /task/{uuid}/output?line=N."""
        params = {"line": str(line)} if line is not None else None
        return await self._json_list(node, f"/task/{uuid}/output", params=params)
