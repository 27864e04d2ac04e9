"""``WatchStream`` (the gRPC Watch service's per-stream state) over a scripted store,
so races between its tasks can be replayed deterministically."""

from __future__ import annotations

import asyncio

from etcd3aio._protobuf import rpc_pb2

from kubeplane.store.grpc.common import Identity
from kubeplane.store.grpc.watch import OUTPUT_QUEUE, WatchStream
from kubeplane.store.interface import Watcher
from kubeplane.store.types import Event, EventType, KeyValue, WatchResponse

pb = rpc_pb2


class _ScriptedWatcher(Watcher):
    """Hands out exactly the batches the test feeds it."""

    def __init__(self, watch_id: int):
        self.watch_id = watch_id
        self.batches: asyncio.Queue = asyncio.Queue()
        self.progress_asked = 0

    def feed(self, revision: int, *mod_revisions: int) -> None:
        events = [Event(EventType.PUT, KeyValue(b"k%d" % m, m, m, 1, b"v")) for m in mod_revisions]
        self.batches.put_nowait(WatchResponse(revision, events))

    async def __anext__(self) -> WatchResponse:
        batch = await self.batches.get()
        if batch is None:
            raise StopAsyncIteration
        return batch

    async def request_progress(self) -> None:
        self.progress_asked += 1

    async def cancel(self) -> None:
        self.batches.put_nowait(None)


class _ScriptedStore:
    def __init__(self, revision: int):
        self.revision = revision
        self.watchers: list[_ScriptedWatcher] = []

    async def current_revision(self) -> int:
        return self.revision

    async def watch(self, key: bytes, range_end: bytes = b"", **_) -> _ScriptedWatcher:
        w = _ScriptedWatcher(len(self.watchers) + 1)
        self.watchers.append(w)
        return w


class _Output(asyncio.Queue):
    """The stream's output queue, calling ``on_progress`` as a progress answer enters it."""

    on_progress = None

    def put_nowait(self, item) -> None:
        super().put_nowait(item)
        if self.on_progress is not None and isinstance(item, pb.WatchResponse) and item.watch_id == -1:
            self.on_progress()


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_batch_held_for_a_progress_answer_is_not_overtaken():
    """A batch held back behind a pending progress answer at T is released when the
    answer is queued; another watcher's newer batch arriving at that very moment must
    not make header revisions go backwards on the stream (it did: the fresh pump ran
    before the released one, so the client saw P(12), 14, 13)."""
    store = _ScriptedStore(10)
    stream = WatchStream(store, Identity(1, 2, 3, "unit", "3.5.0"))
    out = stream.out = _Output(OUTPUT_QUEUE)
    requests: asyncio.Queue = asyncio.Queue()

    async def request_stream():
        while True:
            yield await requests.get()

    stream.start(request_stream())
    try:
        for key in (b"a", b"b"):
            requests.put_nowait(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=key)))
        received = [await asyncio.wait_for(out.get(), 1) for _ in range(2)]
        a, b = store.watchers

        store.revision = 12
        requests.put_nowait(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))
        await _settle()
        assert a.progress_asked and b.progress_asked  # both lag behind T = 12
        store.revision = 13
        a.feed(13, 13)  # past T: held back until the answer is queued
        await _settle()
        assert out.empty()
        store.revision = 14
        out.on_progress = lambda: b.feed(14, 14)  # the store hands b a newer batch just then
        b.feed(12)  # b's progress: everything up to T delivered
        while sum(len(r.events) for r in received) < 2:
            received.append(await asyncio.wait_for(out.get(), 1))
    finally:
        await stream.close()

    revisions = [r.header.revision for r in received]
    assert revisions == sorted(revisions), [(r.watch_id, r.header.revision) for r in received]
    ida, idb = (r.watch_id for r in received[:2])
    assert [(r.watch_id, [e.kv.mod_revision for e in r.events]) for r in received[2:]] in (
        [(-1, []), (ida, [13]), (idb, [14])],
        [(-1, []), (idb, [14]), (ida, [13])],
    )


async def test_created_and_canceled_wait_for_a_pending_progress_answer():
    """``created`` and ``canceled`` carry the current revision, which may be past a
    pending progress answer at T: they leave after it, not before (before, the client
    saw canceled(13), created(13), P(12))."""
    store = _ScriptedStore(10)
    stream = WatchStream(store, Identity(1, 2, 3, "unit", "3.5.0"))
    requests: asyncio.Queue = asyncio.Queue()

    async def request_stream():
        while True:
            yield await requests.get()

    stream.start(request_stream())
    try:
        for key in (b"a", b"c"):
            requests.put_nowait(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=key)))
        received = [await asyncio.wait_for(stream.out.get(), 1) for _ in range(2)]
        a, c = store.watchers
        store.revision = 12
        requests.put_nowait(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))
        await _settle()
        c.feed(12)  # c is caught up; a holds the answer up
        store.revision = 13
        requests.put_nowait(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=received[1].watch_id)))
        requests.put_nowait(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"b")))
        await _settle()
        a.feed(12)
        while len(received) < 5:
            received.append(await asyncio.wait_for(stream.out.get(), 1))
    finally:
        await stream.close()

    summary = [(r.watch_id, r.created, r.canceled, r.header.revision) for r in received[2:]]
    assert summary == [(-1, False, False, 12), (1, False, True, 13), (2, True, False, 13)]
