"""A scripted HTTP server on loopback for what a healthy kubeplane will not do on demand
(429 with Retry-After, 503, a watch that ignores sendInitialEvents). Real HTTP, real
sockets; each route answers from a list of canned replies and records what it got."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp.web

Handler = Callable[[aiohttp.web.Request], Awaitable[aiohttp.web.StreamResponse]]


class FakeServer:
    def __init__(self) -> None:
        self.app = aiohttp.web.Application()
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.url = ""
        self._runner: aiohttp.web.AppRunner | None = None

    def route(self, method: str, path: str, handler: Handler) -> None:
        async def wrapped(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
            self.seen.append((request.method, request.path, dict(request.query)))
            return await handler(request)
        self.app.router.add_route(method, path, wrapped)

    def script(self, method: str, path: str, replies: list[tuple[int, Any, dict[str, str]]]) -> None:
        """Answer the n-th request with replies[n] (the last one repeats)."""
        n = [0]

        async def handler(request: aiohttp.web.Request) -> aiohttp.web.Response:
            status, body, headers = replies[min(n[0], len(replies) - 1)]
            n[0] += 1
            return aiohttp.web.json_response(body, status=status, headers=headers)
        self.route(method, path, handler)

    async def start(self) -> "FakeServer":
        self._runner = aiohttp.web.AppRunner(self.app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": code,
            "reason": reason, "message": message}


def proxy_to(target: str, *, drop_params: tuple[str, ...] = (),
             reject_param: tuple[str, int, dict[str, Any]] | None = None) -> Handler:
    """A handler forwarding every request to `target` (a kubeplane over plain HTTP),
    streaming the answer. `drop_params` are removed from the query (a server that does
    not know them ignores them); `reject_param` = (name, code, body) answers requests
    carrying that parameter with that Status instead."""
    import aiohttp

    async def handler(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        if reject_param and reject_param[0] in request.query:
            return aiohttp.web.json_response(reject_param[2], status=reject_param[1])
        q = {k: v for k, v in request.query.items() if k not in drop_params}
        body = await request.read()
        async with aiohttp.ClientSession() as s:
            async with s.request(request.method, target + request.path, params=q, data=body or None,
                                 headers={k: v for k, v in request.headers.items()
                                          if k.lower() in ("content-type", "accept")}) as r:
                out = aiohttp.web.StreamResponse(status=r.status, headers={
                    "Content-Type": r.headers.get("Content-Type", "application/json")})
                await out.prepare(request)
                async for chunk in r.content.iter_any():
                    await out.write(chunk)
                await out.write_eof()
                return out
    return handler
