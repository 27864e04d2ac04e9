"""Crash-test driver: concurrent writers on an EmbeddedStore until SIGKILL arrives.

Run as ``python crash_writer.py DATA_DIR ROUND SEED`` by tests/store/test_crash.py,
which kills it with SIGKILL at a random moment and then checks the data dir.

Every line on stdout is one JSON object, written with a single ``os.write`` (so a kill
never leaves half a line behind a complete one):

* ``{"t": "ready", "rev": R, "compacted": C}``: the store is open; every write of this
  round has a revision > R.
* ``{"t": "intent", "w": W, "n": N, ...op}``: writer W is about to send its N-th op;
* ``{"t": "ack", "w": W, "n": N, "rev": R}``: that op was acknowledged (durable) at R.
  An op is printed as ``{"op": "put"|"del"|"txn"|"grant"|"revoke", "eff": {key:
  [value, lease] | null}, "lease": id}``: ``eff`` is what it does to each key it touches.
* ``{"t": "watch", "rev": R, "events": [[type, key, create, mod, version, value, lease]]}``:
  one WatchResponse seen by the in-process watcher on the whole key space.
* ``{"t": "compact", "rev": R}``: a compaction at R was acknowledged.  A compactor keeps
  the store small (so snapshots are taken: they are only worth it once the log outgrows
  the data) but never compacts past the watcher's position minus ``KEEP_REVISIONS``, so a
  watch resumed from the watcher's last revision after the crash is never compacted.

Each writer owns its keys (``c/w<W>/k<j>``) and its leases (ids ``ROUND*10**6 + W*10**4
+ i``), and sends one op at a time, so per key the order of acks is the order of writes
and at most one op per writer is in flight when the kill comes.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from kubeplane.store.mvcc import EmbeddedStore  # noqa: E402
from kubeplane.store.types import Compare, DeleteOp, PutOp, RangeOp, prefix_end  # noqa: E402

PREFIX = b"c/"
WRITERS = 6
KEYS_PER_WRITER = 10
LEASE_TTL = 3600  # never expires during the test: every key change is a client write
KEEP_REVISIONS = 300
COMPACT_EVERY = 0.05  # seconds
MAX_SECONDS = 15.0  # a writer that was never killed stops by itself
# Small enough that every round rotates segments and takes snapshots.
STORE_SETTINGS = dict(snapshot_min_bytes=8 * 1024, segment_bytes=8 * 1024)


def emit(obj: dict) -> None:
    os.write(1, (json.dumps(obj, separators=(",", ":")) + "\n").encode())


def lease_owner(lease_id: int) -> int:
    return (lease_id // 10_000) % 100


class Writer:
    """One sequential client with its own keys and leases and a model of them."""

    def __init__(self, store: EmbeddedStore, w: int, rnd: int, rng: random.Random) -> None:
        self.store = store
        self.w = w
        self.rnd = rnd
        self.rng = rng
        self.n = 0
        self.keys = [f"c/w{w}/k{j}".encode() for j in range(KEYS_PER_WRITER)]
        self.mod: dict[bytes, int] = {}  # live key -> mod revision
        self.lease_of: dict[bytes, int] = {}  # live key -> lease (0: none)
        self.leases: list[int] = []
        self.lease_seq = 0

    async def load(self) -> None:
        """Learn the current state (the last round's in-flight op may or may not be in)."""
        res = await self.store.range(f"c/w{self.w}/".encode(), prefix_end(f"c/w{self.w}/".encode()))
        for kv in res.kvs:
            self.mod[kv.key] = kv.mod_revision
            self.lease_of[kv.key] = kv.lease
        self.leases = [i for i in await self.store.lease_leases() if lease_owner(i) == self.w]

    def value(self) -> bytes:
        return f"{self.rnd}.{self.w}.{self.n}.{self.rng.randrange(10**6)}".encode()

    def pick_lease(self) -> int:
        if self.leases and self.rng.random() < 0.3:
            return self.rng.choice(self.leases)
        return 0

    async def op(self, desc: dict, coro_factory) -> int:
        self.n += 1
        emit({"t": "intent", "w": self.w, "n": self.n, **desc})
        rev = await coro_factory()
        emit({"t": "ack", "w": self.w, "n": self.n, "rev": rev})
        return rev

    def applied(self, eff: dict[bytes, tuple[bytes, int] | None], rev: int | None) -> None:
        for key, new in eff.items():
            if new is None:
                self.mod.pop(key, None)
                self.lease_of.pop(key, None)
            else:
                self.mod[key] = rev
                self.lease_of[key] = new[1]

    @staticmethod
    def wire(eff: dict[bytes, tuple[bytes, int] | None]) -> dict:
        return {k.decode(): (None if v is None else [v[0].decode(), v[1]]) for k, v in eff.items()}

    async def step(self) -> None:
        rng, store = self.rng, self.store
        live = list(self.mod)
        r = rng.random()
        if r < 0.35 or not live:
            key, value, lease = rng.choice(self.keys), self.value(), self.pick_lease()
            eff = {key: (value, lease)}

            async def put():
                return (await store.put(key, value, lease=lease)).revision

            rev = await self.op({"op": "put", "eff": self.wire(eff)}, put)
            self.applied(eff, rev)
        elif r < 0.50:
            key = rng.choice(live)
            eff = {key: None}

            async def delete():
                res = await store.delete(key)
                if res.deleted != 1:
                    raise AssertionError(f"delete of own live key {key!r} deleted {res.deleted}")
                return res.revision

            rev = await self.op({"op": "del", "eff": self.wire(eff)}, delete)
            self.applied(eff, rev)
        elif r < 0.75:
            a, b, c = rng.sample(self.keys, 3)
            eff = {a: (self.value(), self.pick_lease()), b: (self.value(), 0)}
            ops = [PutOp(a, eff[a][0], lease=eff[a][1]), PutOp(b, eff[b][0]), RangeOp(a)]
            if c in self.mod:
                eff[c] = None
                ops.append(DeleteOp(c))
            guard = Compare.mod_revision(a, "=", self.mod.get(a, 0))

            async def txn():
                res = await store.txn([guard], ops, [RangeOp(a)])
                if not res.succeeded:
                    raise AssertionError(f"txn guard on own key {a!r} failed: model is stale")
                return res.revision

            rev = await self.op({"op": "txn", "eff": self.wire(eff)}, txn)
            self.applied(eff, rev)
        elif r < 0.85 and len(self.leases) < 4:
            self.lease_seq += 1
            lease_id = self.rnd * 1_000_000 + self.w * 10_000 + self.lease_seq

            async def grant():
                await store.lease_grant(LEASE_TTL, lease_id)
                return await store.current_revision()

            await self.op({"op": "grant", "eff": {}, "lease": lease_id}, grant)
            self.leases.append(lease_id)
        elif r < 0.90 and self.leases:
            lease_id = rng.choice(self.leases)
            eff = {k: None for k, l in self.lease_of.items() if l == lease_id}

            async def revoke():
                return await store.lease_revoke(lease_id)

            await self.op({"op": "revoke", "eff": self.wire(eff), "lease": lease_id}, revoke)
            self.leases.remove(lease_id)
            self.applied(eff, None)
        else:
            key, value, lease = rng.choice(self.keys), self.value(), self.pick_lease()
            eff = {key: (value, lease)}

            async def put_prev():
                return (await store.put(key, value, lease=lease, prev_kv=True)).revision

            rev = await self.op({"op": "put", "eff": self.wire(eff)}, put_prev)
            self.applied(eff, rev)


class Seen:
    rev = 0  # the newest revision the watcher has delivered


async def watch_all(store: EmbeddedStore, start: int) -> None:
    w = await store.watch(PREFIX, prefix_end(PREFIX), start_revision=start)
    async for resp in w:
        Seen.rev = resp.revision
        events = [
            [int(e.type), e.kv.key.decode(), e.kv.create_revision, e.kv.mod_revision, e.kv.version,
             e.kv.value.decode(), e.kv.lease]
            for e in resp.events
        ]
        emit({"t": "watch", "rev": resp.revision, "events": events})


async def main(data_dir: str, rnd: int, seed: int) -> None:
    rng = random.Random(seed)
    store = EmbeddedStore(data_dir, **STORE_SETTINGS)
    await store.start()
    # Keep the store small so snapshots (taken when the log outgrows the data) happen.
    status = await store.status()
    if status.revision > status.compact_revision:
        await store.compact(status.revision)
    status = await store.status()
    writers = [Writer(store, w, rnd, random.Random(rng.random())) for w in range(WRITERS)]
    for wr in writers:
        await wr.load()
    emit({"t": "ready", "rev": status.revision, "compacted": status.compact_revision})
    watcher = asyncio.create_task(watch_all(store, status.revision + 1))

    async def run(wr: Writer) -> None:
        while True:
            await wr.step()

    async def compactor() -> None:
        compacted = status.compact_revision
        while True:
            await asyncio.sleep(COMPACT_EVERY)
            target = Seen.rev - KEEP_REVISIONS
            if target > compacted:
                await store.compact(target)
                compacted = target
                emit({"t": "compact", "rev": target})

    tasks = [asyncio.create_task(run(wr)) for wr in writers]
    tasks.append(asyncio.create_task(compactor()))
    done, _ = await asyncio.wait([watcher, *tasks], timeout=MAX_SECONDS, return_when=asyncio.FIRST_EXCEPTION)
    for t in done:
        if t.exception() is not None:
            emit({"t": "error", "error": repr(t.exception())})
            os._exit(3)
    os._exit(0)  # not killed in time: the test will notice the missing kill


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
