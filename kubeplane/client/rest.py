"""The REST client: JSON over aiohttp, one connection pool per client.

Every request takes a token from the client's bucket (Config.qps/burst, as client-go's
rest client) and goes to the server the balancer picks. Retries:

- 429 Too Many Requests (API Priority and Fairness rejected it before any work): every
  verb is retried, after the server's Retry-After (default 1 s), up to max_retries.
- A refused connection (nothing was sent): every verb fails over to another server.
- Anything else that may have reached the handler (5xx, a reset, a timeout): only
  idempotent verbs (GET, HEAD, OPTIONS) are retried, with jittered exponential backoff,
  preferring another server. A POST/PATCH/PUT/DELETE that may have happened is never
  repeated behind the caller's back.

`watch()` streams `(type, object)` pairs from newline-delimited JSON; lines are split by
hand (aiohttp's readline caps a line at 128 KiB, objects may reach 1.5 MiB) and bounded
by MAX_EVENT_BYTES so a broken server cannot make the client grow without limit.
"""
from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from .balancer import Balancer, ServerState
from .config import Config
from .errors import ApiConnectionError, ApiError
from .ratelimit import Backoff, TokenBucket

PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
RETRY_5XX = frozenset({500, 502, 503, 504})
MAX_EVENT_BYTES = 64 * 1024 * 1024


def _params(params: dict[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (params or {}).items():
        if v is None:
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    v = resp.headers.get("Retry-After")
    if v is None:
        return None
    try:
        return max(0.0, float(v))
    except ValueError:
        return None


class Client:
    """An async Kubernetes API client. Use as `async with Client(cfg) as c:` or call
    `await c.close()`. One Client per process is the norm; it is safe to share between
    tasks (not threads)."""

    def __init__(self, config: Config, *, rebalance_interval: float = 30.0):
        self.config = config
        self.balancer = Balancer(config.servers, rebalance_interval=rebalance_interval)
        self.limiter = TokenBucket(config.qps, config.burst)
        self._session: aiohttp.ClientSession | None = None
        self._ssl = config.ssl_context()
        self._rebalancer: asyncio.Task[None] | None = None
        self._closed = False

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        if self._rebalancer is not None:
            self._rebalancer.cancel()
            self._rebalancer = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _ensure(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("client is closed")
        if self._session is None:
            conn = aiohttp.TCPConnector(limit=0, limit_per_host=self.config.max_connections_per_server,
                                        ssl=self._ssl if self._ssl is not None else False,
                                        keepalive_timeout=60)
            self._session = aiohttp.ClientSession(connector=conn, auto_decompress=True,
                                                  headers={"User-Agent": self.config.user_agent,
                                                           "Accept": "application/json"})
            if len(self.balancer.servers) > 1 and self.balancer.rebalance_interval > 0:
                self._rebalancer = asyncio.get_running_loop().create_task(self._rebalance_loop())
        return self._session

    async def _rebalance_loop(self) -> None:
        while True:
            await asyncio.sleep(self.balancer.rebalance_interval * random.uniform(0.8, 1.2))
            self.balancer.rebalance_once()

    def _headers(self, extra: dict[str, str] | None, content_type: str | None) -> dict[str, str]:
        h: dict[str, str] = {}
        tok = self.config.bearer_token()
        if tok:
            h["Authorization"] = f"Bearer {tok}"
        if content_type:
            h["Content-Type"] = content_type
        if extra:
            h.update(extra)
        return h

    def _kw(self) -> dict[str, Any]:
        return {"server_hostname": self.config.tls_server_name} if self.config.tls_server_name else {}

    # --- requests --------------------------------------------------------------------------
    async def request(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None,
                      headers: dict[str, str] | None = None, *, content_type: str | None = None,
                      timeout: float | None = None) -> dict[str, Any]:
        """One API call; the decoded JSON answer (`{}` for an empty body). Raises ApiError
        for a non-2xx answer, ApiConnectionError when no server answered."""
        session = self._ensure()
        method = method.upper()
        data: bytes | None
        if body is None:
            data = None
        elif isinstance(body, (bytes, bytearray)):
            data = bytes(body)
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = orjson.dumps(body)
        if data is not None and content_type is None:
            content_type = "application/json"
        hdrs = self._headers(headers, content_type)
        q = _params(params)
        to = aiohttp.ClientTimeout(total=timeout or self.config.timeout, sock_connect=self.config.connect_timeout)
        backoff = Backoff(base=0.2, cap=5.0)
        tried: set[str] = set()
        attempt = 0
        while True:
            await self.limiter.wait()
            s = self.balancer.pick(exclude=tried)
            s.in_flight += 1
            s.requests += 1
            try:
                async with session.request(method, s.url + path, params=q, data=data, headers=hdrs,
                                           timeout=to, **self._kw()) as resp:
                    payload = await resp.read()
                    status = resp.status
                    wait = _retry_after(resp)
            except aiohttp.ClientConnectorError as e:    # refused / unreachable: nothing was sent
                self.balancer.failed(s)
                tried.add(s.url)
                if len(tried) >= len(self.balancer.servers):
                    tried.clear()
                    if attempt >= self.config.max_retries:
                        raise ApiConnectionError(f"{method} {path}: no API server reachable: {e}") from e
                    await backoff.sleep()
                attempt += 1
                continue
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                if isinstance(e, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
                    self.balancer.failed(s)
                if method not in IDEMPOTENT or attempt >= self.config.max_retries:
                    raise ApiConnectionError(f"{method} {s.url}{path}: {e!r}") from e
                tried = {s.url} if len(self.balancer.servers) > 1 else set()
                attempt += 1
                await backoff.sleep()
                continue
            finally:
                s.in_flight -= 1
            self.balancer.succeeded(s)
            if 200 <= status < 300:
                return orjson.loads(payload) if payload else {}
            retry = attempt < self.config.max_retries and (
                status == 429 or (status in RETRY_5XX and method in IDEMPOTENT))
            if retry:
                attempt += 1
                if status == 429:
                    await asyncio.sleep(wait if wait is not None else 1.0)
                else:
                    tried = {s.url} if len(self.balancer.servers) > 1 else set()
                    await asyncio.sleep(wait if wait is not None else backoff.next_delay())
                continue
            raise _error(status, payload, wait)

    async def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.request("GET", path, params)

    async def list(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.request("GET", path, params)

    async def list_all(self, path: str, params: dict[str, Any] | None = None, *, limit: int = 500) -> dict[str, Any]:
        """Every page of a LIST (limit/continue), as one List: items joined, the
        metadata.resourceVersion of the snapshot all pages were read at."""
        q = dict(params or {})
        q["limit"] = limit
        items: list[dict[str, Any]] = []
        while True:
            page = await self.list(path, q)
            items.extend(page.get("items") or [])
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                page["items"] = items
                page.setdefault("metadata", {}).pop("continue", None)
                return page
            q["continue"] = cont
            q.pop("resourceVersion", None)
            q.pop("resourceVersionMatch", None)

    async def create(self, path: str, obj: Any, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.request("POST", path, params, obj)

    async def update(self, path: str, obj: Any, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.request("PUT", path, params, obj)

    async def patch(self, path: str, patch: Any, patch_type: str = "merge",
                    params: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            ct = PATCH_TYPES[patch_type]
        except KeyError:
            raise ValueError(f"patch_type must be one of {', '.join(PATCH_TYPES)}, not {patch_type!r}") from None
        return await self.request("PATCH", path, params, patch, content_type=ct)

    async def delete(self, path: str, body: Any = None, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.request("DELETE", path, params, body)

    # --- watch -----------------------------------------------------------------------------
    async def watch(self, path: str, params: dict[str, Any] | None = None, *,
                    movable: bool | None = None) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Stream `(type, object)` of a watch: ADDED, MODIFIED, DELETED, BOOKMARK, and
        ERROR (object = the Status; the server ends the stream after it). The iterator
        ends when the server ends the stream (timeoutSeconds) or when the balancer moves
        the watch to another server; a broken connection raises ApiConnectionError; a
        non-2xx answer to the watch request raises ApiError.

        `movable` (default: yes, except a WatchList stream until its initial-events-end
        bookmark) lets the balancer close this watch to move it; the caller must then
        resume from its last resourceVersion. Break out of `async for` only inside
        `contextlib.aclosing(...)` (or call `aclose()`), so the connection is released
        at once rather than when the generator is collected."""
        session = self._ensure()
        q = _params(params)
        q.setdefault("watch", "true")
        if movable is None:
            movable = q.get("sendInitialEvents") != "true"
        hdrs = self._headers(None, None)
        to = aiohttp.ClientTimeout(total=None, sock_connect=self.config.connect_timeout, sock_read=None)
        tried: set[str] = set()
        backoff = Backoff(base=0.2, cap=5.0)
        attempt = 0
        while True:
            await self.limiter.wait()
            s = self.balancer.pick_for_watch(exclude=tried)
            s.requests += 1
            self.balancer.watch_reserved(s)
            try:
                resp = await session.get(s.url + path, params=q, headers=hdrs, timeout=to, **self._kw())
                break
            except aiohttp.ClientConnectorError as e:
                self.balancer.watch_failed(s)
                self.balancer.failed(s)
                tried.add(s.url)
                if len(tried) >= len(self.balancer.servers):
                    tried.clear()
                    if attempt >= self.config.max_retries:
                        raise ApiConnectionError(f"WATCH {path}: no API server reachable: {e}") from e
                    await backoff.sleep()
                attempt += 1
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                self.balancer.watch_failed(s)
                self.balancer.failed(s)
                raise ApiConnectionError(f"WATCH {s.url}{path}: {e!r}") from e
            except BaseException:
                self.balancer.watch_failed(s)
                raise
        handle = self.balancer.watch_opened(s, resp.close, movable)
        try:
            if resp.status != 200:
                payload = await resp.read()
                raise _error(resp.status, payload, _retry_after(resp))
            self.balancer.succeeded(s)
            buf = bytearray()
            while True:
                try:
                    chunk = await resp.content.readany()
                except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                    if handle.moved:
                        return
                    raise ApiConnectionError(f"WATCH {s.url}{path}: stream broke: {e!r}") from e
                if not chunk:
                    if handle.moved:
                        return
                    if buf.strip():
                        raise ApiConnectionError(f"WATCH {s.url}{path}: stream ended inside an event")
                    return
                start = 0
                buf += chunk
                while True:
                    nl = buf.find(b"\n", start)
                    if nl < 0:
                        break
                    line = bytes(buf[start:nl])
                    start = nl + 1
                    if line.strip():
                        ev = orjson.loads(line)
                        etype, obj = ev.get("type", ""), ev.get("object") or {}
                        if not movable and etype == "BOOKMARK" and _initial_end(obj):
                            movable = True
                            self.balancer.make_movable(handle)
                        yield etype, obj
                if start:
                    del buf[:start]
                if len(buf) > MAX_EVENT_BYTES:
                    raise ApiConnectionError(f"WATCH {s.url}{path}: an event over {MAX_EVENT_BYTES} bytes")
        finally:
            self.balancer.watch_closed(handle)
            resp.close()


def _initial_end(obj: dict[str, Any]) -> bool:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get("k8s.io/initial-events-end") == "true"


def _error(status: int, payload: bytes, retry_after: float | None = None) -> ApiError:
    try:
        body: Any = orjson.loads(payload) if payload else {}
    except orjson.JSONDecodeError:
        body = payload.decode(errors="replace")
    e = ApiError.from_status(status, body)
    e.retry_after_header = retry_after
    return e
