"""The ``etcdserverpb.Watch`` service: many watchers multiplexed on one stream.

One ``WatchStream`` per client stream.  Its parts:

* the *reader* task handles the client's requests in order: create (answered with a
  ``created`` response, or ``created`` + ``canceled`` with etcd's cancel reason),
  cancel (answered with ``canceled`` if the id existed, silently ignored otherwise),
  progress requests, and silently ignores anything else, as etcd does;
* one *pump* task per watcher moves the store's ``WatchResponse`` batches into the
  stream's single output queue;
* the *progress* task answers progress requests.

Invariants:

* Responses of one watcher leave in the store's order, after its ``created`` response
  and before its ``canceled`` response.
* ``entry.delivered`` is a revision up to which every event of that watcher is already
  in the output queue (an under-estimate is safe, never an over-estimate).
* A progress request is answered (``watch_id`` -1, header revision T, T the store
  revision read when the request was handled) only once every watcher of the stream
  has delivered up to T.  While that answer is pending, pumps hold back anything past
  T (splitting a batch at T if needed), so no response with a revision above T leaves
  before it: header revisions seen by the client never go backwards, which is how
  etcd >= 3.4.31 / 3.5.8 behaves and what Kubernetes' consistent reads rely on.
* Pumps run independently, so one may queue a batch after a newer batch of another
  watcher: a batch held back behind an answer at T is released when the answer is
  queued, and a pump the store woke meanwhile may run first (a catching-up watcher,
  too, reads old history while others are live).  So every response is queued by
  ``_queue``, which decides its header revision as it enters the queue (under a lock:
  a full queue does not let a later response overtake it) and never below one queued
  before.  An events response is raised to that, as etcd stamps a catching-up batch
  with the current revision: its header promises nothing about the events that follow
  (clients resume from its last event's mod_revision).  A progress notification and
  ``created`` do make that promise, so they are never raised: a watcher's notification
  older than one already queued is dropped (the next one tells more), and ``created``
  / ``canceled`` (current revision) are answered only while no progress answer is
  pending.
"""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

from etcd3aio._protobuf import rpc_pb2, rpc_pb2_grpc
from google.protobuf.message import DecodeError

from ..errors import CompactedError, InvalidWatchRangeError, StoreError
from ..interface import Store, Watcher
from ..types import Event, WatchResponse
from . import convert
from .common import Identity, MalformedRequestError, ServerStoppedError, abort, abort_internal, status_code

log = logging.getLogger("kubeplane.store.grpc.watch")

PROGRESS_WATCH_ID = -1  # etcd's clientv3.InvalidWatchID, used for stream-wide progress
DUPLICATE_WATCH_ID = "mvcc: duplicate watch ID provided on the WatchStream"
OUTPUT_QUEUE = 1024  # responses buffered per stream before pumps wait for the client
# A store batch bigger than this goes out as several responses, cut between revisions
# (never inside one), so clients with gRPC's default 4 MiB receive limit can read it.
RESPONSE_BYTES = 1 << 20
PROGRESS_RETRY = 1.0  # seconds before asking a silent watcher for progress again
_READING = -1  # barrier value while the progress task reads the current revision
_NOPUT, _NODELETE = 0, 1  # WatchCreateRequest.FilterType


class _Entry:
    __slots__ = ("watch_id", "watcher", "notify", "delivered", "asked", "pump")

    def __init__(self, watch_id: int, watcher: Watcher, notify: bool, delivered: int):
        self.watch_id = watch_id
        self.watcher = watcher
        self.notify = notify  # the client asked for progress_notify
        self.delivered = delivered
        self.asked = 0  # barrier revision we last asked this watcher's progress for
        self.pump: asyncio.Task | None = None


class WatchStream:
    """The state of one Watch RPC; ``out`` holds what the RPC handler sends."""

    def __init__(self, store: Store, ident: Identity, progress_retry: float = PROGRESS_RETRY):
        self._store = store
        self._ident = ident
        self._progress_retry = progress_retry
        # Items are WatchResponse messages, or an exception that ends the RPC.
        self.out: asyncio.Queue[rpc_pb2.WatchResponse | BaseException] = asyncio.Queue(OUTPUT_QUEUE)
        self._entries: dict[int, _Entry] = {}
        self._next_id = 0
        self._barrier = 0  # 0: no progress answer pending; else its revision (or _READING)
        self._header = 0  # the highest header revision queued so far
        self._queueing = asyncio.Lock()  # held while a response is stamped and queued
        self._moved = asyncio.Event()  # replaced each time the barrier moves
        self._advanced = asyncio.Event()  # a watcher delivered more, or went away
        self._progress_wanted = asyncio.Event()
        self._progress_task: asyncio.Task | None = None
        self._reader: asyncio.Task | None = None
        self._closed = False

    # --- lifecycle ------------------------------------------------------------------

    def start(self, requests: AsyncIterator[rpc_pb2.WatchRequest]) -> None:
        self._reader = asyncio.create_task(self._read(requests))

    async def close(self, reason: BaseException | None = None) -> None:
        """Stop every task and watcher; with ``reason``, end the RPC with it."""
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in (self._reader, self._progress_task) if t is not None]
        tasks += [e.pump for e in self._entries.values() if e.pump is not None]
        current = asyncio.current_task()
        for task in tasks:
            if task is not current:
                task.cancel()
        entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            await _cancel_quietly(entry.watcher)
        if reason is not None:
            while not self.out.empty():
                self.out.get_nowait()
            self.out.put_nowait(reason)

    # --- requests -------------------------------------------------------------------

    async def _read(self, requests: AsyncIterator[rpc_pb2.WatchRequest]) -> None:
        """Handle requests in order.  A client half-close leaves the watchers running,
        as on etcd; the RPC ends when the client cancels it."""
        try:
            async for request in requests:
                kind = request.WhichOneof("request_union")
                if kind == "create_request":
                    await self._create(request.create_request)
                elif kind == "cancel_request":
                    await self._cancel(request.cancel_request.watch_id)
                elif kind == "progress_request":
                    self._request_progress()
        except asyncio.CancelledError:
            raise
        except StoreError as err:
            await self.close(err)
        except DecodeError as exc:
            await self.close(MalformedRequestError(f"grpc: error unmarshalling request: {exc}"))
        except Exception as exc:  # noqa: BLE001 - end this RPC, never the server
            log.exception("watch stream failed")
            await self.close(exc)

    async def _create(self, req: rpc_pb2.WatchCreateRequest) -> None:
        key = req.key or b"\0"  # etcd: an empty key means the smallest key
        range_end = req.range_end
        if req.watch_id != 0 and req.watch_id in self._entries:
            return await self._refuse(DUPLICATE_WATCH_ID)
        if range_end not in (b"", b"\0") and key >= range_end:
            return await self._refuse(InvalidWatchRangeError.message)
        start = req.start_revision if req.start_revision >= 0 else 1
        await self._until_no_barrier()
        revision = await self._store.current_revision()
        try:
            watcher = await self._store.watch(
                key,
                range_end,
                start_revision=start,
                prev_kv=req.prev_kv,
                progress_notify=req.progress_notify,
                filter_put=_NOPUT in req.filters,
                filter_delete=_NODELETE in req.filters,
            )
        except StoreError as err:
            return await self._refuse(err.text)
        watch_id = req.watch_id or self._allocate_id()
        # Nothing before `revision` (start 0) or before `start` concerns this watcher.
        entry = _Entry(watch_id, watcher, req.progress_notify, revision if start == 0 else start - 1)
        self._entries[watch_id] = entry
        await self._queue(rpc_pb2.WatchResponse(watch_id=watch_id, created=True), revision, exact=True)
        entry.pump = asyncio.create_task(self._pump(entry))
        self._advanced.set()

    def _allocate_id(self) -> int:
        while self._next_id in self._entries:
            self._next_id += 1
        watch_id = self._next_id
        self._next_id += 1
        return watch_id

    async def _refuse(self, reason: str) -> None:
        resp = rpc_pb2.WatchResponse(watch_id=-1, created=True, canceled=True, cancel_reason=reason)
        await self._until_no_barrier()
        await self._queue(resp, await self._store.current_revision())

    async def _cancel(self, watch_id: int) -> None:
        entry = self._entries.pop(watch_id, None)
        if entry is None:
            return  # etcd answers nothing for an unknown id
        if entry.pump is not None:
            entry.pump.cancel()  # from here on the pump enqueues nothing more
        await _cancel_quietly(entry.watcher)
        self._advanced.set()
        await self._until_no_barrier()  # (this watcher no longer holds the answer up)
        resp = rpc_pb2.WatchResponse(watch_id=watch_id, canceled=True)
        await self._queue(resp, await self._store.current_revision())

    async def _until_no_barrier(self) -> None:
        """Until no progress answer is pending: a response at the current revision,
        past the answer's, must not leave before it."""
        while self._barrier:
            await self._moved.wait()

    async def _queue(self, resp: rpc_pb2.WatchResponse, revision: int, *, exact: bool = False) -> None:
        """Queue ``resp`` with header ``revision``, or the highest one queued before if
        that is higher and not ``exact``; an ``exact`` watcher progress notification
        that would go backwards is dropped (see the module docstring)."""
        async with self._queueing:
            if revision < self._header:
                if not exact:
                    revision = self._header
                elif not (resp.created or resp.watch_id == PROGRESS_WATCH_ID):
                    return
            self._header = max(self._header, revision)
            self._ident.fill(resp.header, revision)
            await self.out.put(resp)

    # --- pumps ----------------------------------------------------------------------

    async def _pump(self, entry: _Entry) -> None:
        resp = rpc_pb2.WatchResponse(watch_id=entry.watch_id, canceled=True)
        try:
            async for batch in entry.watcher:
                await self._deliver(entry, batch)
            resp = None  # the store closed the watch: the RPC is about to end anyway
        except asyncio.CancelledError:
            raise
        except CompactedError as err:
            # etcd: canceled with compact_revision, no cancel_reason, header revision 0
            resp.compact_revision = err.compact_revision
            self._ident.fill(resp.header)
        except StoreError as err:
            resp.cancel_reason = err.text
            self._ident.fill(resp.header, await self._current_revision_or_zero())
        except Exception as exc:  # noqa: BLE001
            log.exception("watch %d failed", entry.watch_id)
            resp.cancel_reason = f"kubeplane: internal error: {exc!r}"
            self._ident.fill(resp.header)
        if self._entries.get(entry.watch_id) is entry:
            del self._entries[entry.watch_id]
        self._advanced.set()
        await _cancel_quietly(entry.watcher)
        if resp is not None:  # (its header is etcd's, 0 or the current revision)
            async with self._queueing:
                await self.out.put(resp)

    async def _deliver(self, entry: _Entry, batch: WatchResponse) -> None:
        """Queue one store batch, holding back whatever lies past a pending progress
        answer until that answer is queued (see the module docstring)."""
        events = batch.events
        forward_empty = entry.notify and not events  # a progress notification the client asked for
        while True:
            barrier, moved = self._barrier, self._moved
            if barrier == _READING:
                await moved.wait()
                continue
            if barrier == 0 or batch.revision <= barrier:
                if events or forward_empty:
                    await self._send_events(entry.watch_id, batch.revision, events)
                if batch.revision > entry.delivered:
                    entry.delivered = batch.revision
                if barrier:
                    self._advanced.set()
                return
            if entry.delivered < barrier:
                cut = 0
                while cut < len(events) and events[cut].kv.mod_revision <= barrier:
                    cut += 1
                if cut:
                    await self._send_events(entry.watch_id, barrier, events[:cut])
                    events = events[cut:]
                entry.delivered = barrier
                self._advanced.set()
            await moved.wait()

    async def _send_events(self, watch_id: int, revision: int, events: list[Event]) -> None:
        """Queue ``events`` (all of them up to ``revision``).  A part cut off a large
        batch carries its last event's revision: everything up to it is delivered."""
        start = size = 0
        for i, ev in enumerate(events):
            if size >= RESPONSE_BYTES and ev.kv.mod_revision != events[i - 1].kv.mod_revision:
                await self._queue(self._events_response(watch_id, events[start:i]), events[i - 1].kv.mod_revision)
                start, size = i, 0
            size += _event_size(ev)
        await self._queue(self._events_response(watch_id, events[start:]), revision, exact=not events)

    def _events_response(self, watch_id: int, events: list[Event]) -> rpc_pb2.WatchResponse:
        resp = rpc_pb2.WatchResponse(watch_id=watch_id)
        convert.add_events(resp.events, events)
        return resp

    # --- progress requests ----------------------------------------------------------

    def _request_progress(self) -> None:
        """Requests that arrive while one is being answered share the next answer."""
        self._progress_wanted.set()
        if self._progress_task is None:
            self._progress_task = asyncio.create_task(self._answer_progress())

    def _move_barrier(self, value: int) -> None:
        self._barrier = value
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    async def _answer_progress(self) -> None:
        while True:
            await self._progress_wanted.wait()
            self._progress_wanted.clear()
            self._move_barrier(_READING)
            try:
                target = await self._store.current_revision()
            except StoreError as err:  # like etcd, an unanswerable request gets no answer
                log.warning("progress request dropped: %s", err)
                self._move_barrier(0)
                continue
            self._move_barrier(target)
            await self._wait_delivered(target)
            await self._queue(rpc_pb2.WatchResponse(watch_id=PROGRESS_WATCH_ID), target, exact=True)
            self._move_barrier(0)

    async def _wait_delivered(self, target: int) -> None:
        """Until every watcher has delivered up to ``target``; asks the lagging ones
        for a progress notification (again after ``progress_retry``, since a store may
        drop such requests, as etcd before 3.4.31 does)."""
        while True:
            self._advanced.clear()
            lagging = [e for e in self._entries.values() if e.delivered < target]
            if not lagging:
                return
            for entry in lagging:
                if entry.asked < target:
                    entry.asked = target
                    try:
                        await entry.watcher.request_progress()
                    except StoreError as err:
                        log.warning("watch %d: progress request failed: %s", entry.watch_id, err)
            try:
                await asyncio.wait_for(self._advanced.wait(), self._progress_retry)
            except asyncio.TimeoutError:
                for entry in lagging:
                    entry.asked = 0

    async def _current_revision_or_zero(self) -> int:
        try:
            return await self._store.current_revision()
        except StoreError:
            return 0


def _event_size(ev: Event) -> int:
    size = 32 + len(ev.kv.key) + len(ev.kv.value)
    if ev.prev_kv is not None:
        size += len(ev.prev_kv.key) + len(ev.prev_kv.value)
    return size


async def _cancel_quietly(watcher: Watcher) -> None:
    try:
        await watcher.cancel()
    except Exception:  # noqa: BLE001 - the watcher is going away either way
        log.debug("watcher cancel failed", exc_info=True)


class WatchServicer(rpc_pb2_grpc.WatchServicer):
    def __init__(self, store: Store, ident: Identity, stopping: asyncio.Event):
        self._store = store
        self._ident = ident
        self._stopping = stopping
        self._streams: set[WatchStream] = set()

    async def Watch(
        self, request_iterator: AsyncIterator[rpc_pb2.WatchRequest], context
    ) -> AsyncIterator[rpc_pb2.WatchResponse]:
        if self._stopping.is_set():
            err = ServerStoppedError()
            await context.abort(status_code(err), err.text)
        stream = WatchStream(self._store, self._ident)
        self._streams.add(stream)
        stream.start(request_iterator)
        try:
            while True:
                item = await stream.out.get()
                if isinstance(item, rpc_pb2.WatchResponse):
                    yield item
                elif isinstance(item, StoreError):
                    await abort(context, item)
                else:
                    await abort_internal(context, "Watch", item)
        finally:
            self._streams.discard(stream)
            await stream.close()

    async def shutdown(self) -> None:
        """End every open Watch RPC with UNAVAILABLE ("etcdserver: server stopped"),
        as a stopping etcd does: clients reconnect elsewhere and resume."""
        for stream in list(self._streams):
            await stream.close(ServerStoppedError())

