"""One etcd Watch stream per ``Watcher``, re-established on another member on failure.

Invariants:

* ``_next_rev`` is the smallest revision not yet delivered.  Every event delivered has
  ``mod_revision >= _next_rev`` at the time (older ones, re-sent after a reconnect, are
  dropped), and a reconnect creates the new watch from ``_next_rev``: so no event is
  lost or delivered twice across member failures.  etcd never splits one revision's
  events across responses (without fragmenting, which we do not ask for).
* A response's ``revision`` is the last event's ``mod_revision`` (etcd's header
  revision on a catching-up watcher can be ahead of the events in the batch), or for a
  progress notification the header revision.  Revisions handed out never go backwards
  (a stale progress notification from a lagging member after failover is dropped).
* A progress notification advances ``_next_rev`` only when it is trustworthy: a
  periodic one (etcd sends those only for synced watchers, in order with events), or a
  requested one when ``progress_requests_reliable``.
* A background reader task feeds a bounded queue (back-pressure to gRPC); the consumer
  iterates the queue.  Errors travel through the queue and end iteration.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import grpc
from etcd3aio._protobuf import rpc_pb2

from ..errors import CompactedError, StoreError, StoreUnavailableError
from ..interface import Watcher
from ..types import WatchResponse
from . import _convert
from ._errors import error_from_status, map_rpc_error, may_fail_over, not_sent, stream_write

if TYPE_CHECKING:  # pragma: no cover
    from ._endpoints import Endpoint
    from .client import EtcdStore

_END = object()
QUEUE_SIZE = 1024


class _StreamLost(Exception):
    """The stream ended or the member gave the watch up: continue elsewhere."""


class EtcdWatcher(Watcher):
    def __init__(self, store: "EtcdStore", create: rpc_pb2.WatchCreateRequest, next_rev: int):
        self._store = store
        self._create = create
        self._next_rev = next_rev
        self._last_revision = next_rev - 1
        self._queue: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        self._call: grpc.aio.StreamStreamCall | None = None
        self._endpoint: Endpoint | None = None
        self._write_lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._progress_pending = False
        self._pending: rpc_pb2.WatchResponse | None = None  # handled before the next read
        self._closed = False
        self._done = False
        self.watch_id = -1

    # --- connecting -------------------------------------------------------------

    async def start(self) -> None:
        """Create the watch (raising its creation error), then read in the background."""
        await self._connect()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _connect(self) -> None:
        """Open a stream on the current member and create the watch from ``_next_rev``.

        Fails over across members (bounded); raises a StoreError when the watch cannot
        be created (bad range, no member reachable).
        """
        store = self._store
        timeout = store._request_timeout
        retry = store._retry()
        while True:
            endpoint = store._pool.current()
            call = endpoint.stub("Watch").Watch(metadata=store._metadata)
            try:
                create = rpc_pb2.WatchCreateRequest()
                create.CopyFrom(self._create)
                create.start_revision = self._next_rev
                await asyncio.wait_for(stream_write(call, rpc_pb2.WatchRequest(create_request=create)), timeout)
                resp = await asyncio.wait_for(call.read(), timeout)
                if resp is grpc.aio.EOF:
                    raise _StreamLost("watch stream closed before the watch was created")
                if resp.compact_revision:
                    pass  # created, but compacted: iteration reports it (via _pending)
                elif resp.canceled:
                    reason = resp.cancel_reason
                    if not reason or not_sent(reason):
                        raise _StreamLost(reason or "watch canceled on creation")
                    raise error_from_status(None, reason)
                if not resp.created:
                    raise _StreamLost(f"unexpected first watch response: {resp}")
            except (grpc.aio.AioRpcError, _StreamLost, asyncio.TimeoutError) as exc:
                call.cancel()
                if isinstance(exc, grpc.aio.AioRpcError) and not may_fail_over(exc, idempotent=True):
                    raise map_rpc_error(exc) from None
                store._pool.failed(endpoint)
                if not await retry.again():
                    raise StoreUnavailableError(
                        f"{StoreUnavailableError.message}: watch: {_describe(exc)}"
                    ) from None
                continue
            except BaseException:
                call.cancel()
                raise
            self._call, self._endpoint = call, endpoint
            self.watch_id = resp.watch_id
            if resp.compact_revision:
                self._pending = resp
            if self._progress_pending:
                await self._send_progress_request()
            return

    # --- reading ----------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                try:
                    if self._pending is not None:
                        resp, self._pending = self._pending, None
                    else:
                        resp = await self._call.read()
                    if resp is grpc.aio.EOF:
                        raise _StreamLost("watch stream ended")
                    await self._handle(resp)
                except (grpc.aio.AioRpcError, _StreamLost) as exc:
                    if isinstance(exc, grpc.aio.AioRpcError) and not may_fail_over(exc, idempotent=True):
                        raise map_rpc_error(exc) from None
                    self._call.cancel()
                    self._store._pool.failed(self._endpoint)
                    await self._connect()
        except StoreError as exc:
            if self._call is not None:
                self._call.cancel()
            await self._queue.put(exc)
        except Exception as exc:  # a bug must end iteration, not hang the consumer
            if self._call is not None:
                self._call.cancel()
            await self._queue.put(StoreError(f"watch failed: {exc!r}"))

    async def _handle(self, resp: rpc_pb2.WatchResponse) -> None:
        if resp.compact_revision:
            raise CompactedError(resp.compact_revision)
        if resp.canceled:
            reason = resp.cancel_reason
            if not reason or not_sent(reason):
                raise _StreamLost(reason or "watch canceled by the server")
            raise error_from_status(None, reason)
        if resp.created:
            return
        if resp.events:
            events = [_convert.event(e) for e in resp.events if e.kv.mod_revision >= self._next_rev]
            if not events:
                return
            revision = events[-1].kv.mod_revision
            self._next_rev = revision + 1
            self._last_revision = max(self._last_revision, revision)
            await self._queue.put(WatchResponse(revision, events))
            return
        # A progress notification: periodic (our watch_id) or requested (watch_id -1).
        revision = resp.header.revision
        requested = resp.watch_id == -1
        if requested:
            self._progress_pending = False
        if revision < self._last_revision:
            return
        if not requested or self._store._progress_reliable:
            self._next_rev = max(self._next_rev, revision + 1)
        self._last_revision = revision
        await self._queue.put(WatchResponse(revision, []))

    # --- the Watcher interface --------------------------------------------------

    async def __anext__(self) -> WatchResponse:
        if self._done:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is _END:
            self._done = True
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._done = True
            raise item
        return item

    async def _send_progress_request(self) -> None:
        call = self._call
        if call is None or call.done():
            return
        req = rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest())
        try:
            async with self._write_lock:
                await asyncio.wait_for(call.write(req), self._store._request_timeout)
        except (grpc.RpcError, asyncio.InvalidStateError, asyncio.TimeoutError, grpc.aio.UsageError):
            pass  # the reader reconnects and sends it again (_progress_pending)

    async def request_progress(self) -> None:
        if self._closed:
            return
        self._progress_pending = True
        await self._send_progress_request()

    async def cancel(self) -> None:
        """Stop the watch; buffered responses are dropped and iteration ends."""
        if self._closed:
            return
        self._closed = True
        self._store._watchers.discard(self)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._call is not None:
            self._call.cancel()  # closing the stream cancels the watch on the member
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_END)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return str(exc)
