"""Crash safety of the embedded store: kill -9 during concurrent writes, many rounds.

Each round starts ``crash_writer.py`` on the same data dir (concurrent puts, updates,
deletes, txns, lease grants with attached puts, lease revokes, a compactor, and a watcher
on the whole key space; small WAL segments and snapshot threshold so both rotate during
the round), kills it with SIGKILL at a random moment, reopens the data dir in this
process and checks what the issue asks for:

* every acknowledged write is there with its value, lease, create/mod revision and
  version, unless a later acknowledged write of the same key replaced it; the one op
  per writer that was in flight is either wholly in or wholly out (txns are atomic);
* the store's revision >= every acknowledged or observed revision, revisions strictly
  increase (per writer, across rounds, and no acknowledged revision is ever reused),
  the acknowledged compaction floor survived;
* every revision above the compaction floor is in the history with exactly the content
  the client was told (watch from an old revision; range at that revision), and what
  the in-process watcher saw is exactly the start of that history;
* a watch resumed from the watcher's last revision + 1 yields exactly the events after
  it, in order, once each.

A few rounds kill the writer while it is still starting (recovering the previous
round's log) instead.  The seed is random; set ``KUBEPLANE_CRASH_SEED`` to replay one.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kubeplane.store.mvcc import EmbeddedStore
from kubeplane.store.types import KeyValue, prefix_end

WRITER = Path(__file__).with_name("crash_writer.py")
PREFIX = b"c/"
ROUNDS = 24
EARLY_KILL_ROUNDS = {4, 12, 19}  # killed during start-up/recovery, before or around "ready"
MIN_WRITE_ROUNDS = 20  # rounds killed during concurrent, acknowledged writes
READY_TIMEOUT = 10.0
KILL_AFTER = (0.05, 0.5)  # seconds of writing before the kill
LEASE_TTL = 3600  # as crash_writer.LEASE_TTL

pytestmark = pytest.mark.slow

# A key's state: (value, lease, create_revision, mod_revision, version); None: absent.
State = tuple[bytes, int, int, int, int] | None


def state_of(kv: KeyValue | None) -> State:
    if kv is None:
        return None
    return (kv.value, kv.lease, kv.create_revision, kv.mod_revision, kv.version)


@dataclass
class Op:
    w: int
    n: int
    kind: str
    eff: dict[bytes, tuple[bytes, int] | None]
    lease: int = 0
    rev: int | None = None  # None: never acknowledged


@dataclass
class RoundLog:
    ready: dict | None = None
    ops: dict[int, list[Op]] = field(default_factory=dict)  # writer -> ops in order
    watch: list[dict] = field(default_factory=list)
    compacts: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def parse(text: str) -> RoundLog:
    log = RoundLog()
    lines = text.split("\n")
    if lines and lines[-1]:
        lines.pop()  # a line cut by the kill (cannot happen with single writes, but be safe)
    for line in lines:
        if not line:
            continue
        rec = json.loads(line)
        t = rec["t"]
        if t == "ready":
            log.ready = rec
        elif t == "intent":
            eff = {k.encode(): (None if v is None else (v[0].encode(), v[1])) for k, v in rec["eff"].items()}
            ops = log.ops.setdefault(rec["w"], [])
            assert not ops or ops[-1].rev is not None, f"writer {rec['w']} sent an op before its last was acked"
            assert not ops or ops[-1].n + 1 == rec["n"]
            ops.append(Op(rec["w"], rec["n"], rec["op"], eff, rec.get("lease", 0)))
        elif t == "ack":
            op = log.ops[rec["w"]][-1]
            assert op.n == rec["n"] and op.rev is None, rec
            op.rev = rec["rev"]
        elif t == "watch":
            log.watch.append(rec)
        elif t == "compact":
            log.compacts.append(rec["rev"])
        elif t == "error":
            log.errors.append(rec["error"])
    return log


def run_writer(data_dir: Path, rnd: int, seed: int, early: bool, rng: random.Random, work: Path) -> RoundLog:
    """One writer process, killed with SIGKILL at a random moment; returns what it printed."""
    out_path = work / f"round{rnd}.out"
    err_path = work / f"round{rnd}.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(data_dir), str(rnd), str(seed)], stdout=out, stderr=err
        )
    try:
        if early:
            time.sleep(rng.uniform(0.0, 0.35))
        else:
            deadline = time.monotonic() + READY_TIMEOUT
            while b'"t":"ready"' not in out_path.read_bytes():
                assert proc.poll() is None, f"writer exited early: {err_path.read_text()[-3000:]}"
                assert time.monotonic() < deadline, "writer never became ready"
                time.sleep(0.01)
            time.sleep(rng.uniform(*KILL_AFTER))
        assert proc.poll() is None, f"writer died before the kill: {err_path.read_text()[-3000:]}"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    return parse(out_path.read_text())


def ev_tuple(e) -> list:
    kv = e.kv
    return [int(e.type), kv.key.decode(), kv.create_revision, kv.mod_revision, kv.version, kv.value.decode(), kv.lease]


async def events_from(store: EmbeddedStore, start: int, head: int) -> list[list]:
    """Every event with start <= revision <= head, then proof that nothing follows."""
    if start > head:
        return []
    out: list[list] = []
    w = await store.watch(PREFIX, prefix_end(PREFIX), start_revision=start)
    try:
        while not out or out[-1][3] < head:
            resp = await asyncio.wait_for(w.__anext__(), 5)
            out.extend(ev_tuple(e) for e in resp.events)
        await w.request_progress()
        resp = await asyncio.wait_for(w.__anext__(), 5)
        assert resp.events == [] and resp.revision == head, resp
    finally:
        await w.cancel()
    return out


class Checker:
    """The client-side model, carried across rounds."""

    def __init__(self) -> None:
        self.model: dict[bytes, State] = {}
        self.leases: set[int] = set()
        self.head = 1  # store revision after the last restart
        self.floor = 0  # compaction floor after the last restart
        self.acked_revs: set[int] = set()
        self.write_rounds = 0
        self.snapshot_revs: set[int] = set()
        self.max_segment = 0

    @staticmethod
    def apply(prev: State, new: tuple[bytes, int] | None, rev: int) -> State:
        if new is None:
            return None
        if prev is None:
            return (new[0], new[1], rev, rev, 1)
        return (new[0], new[1], prev[2], rev, prev[4] + 1)

    async def check_round(self, store: EmbeddedStore, log: RoundLog, data_dir: Path) -> None:
        assert not log.errors, log.errors
        status = await store.status()
        head, floor = status.revision, status.compact_revision
        if log.ready is None:  # killed while starting: nothing may have changed
            assert head == self.head, "revision moved although no write was sent"
            assert floor >= self.floor
            await self.resync(store)
            self.floor = floor
            return
        start = log.ready["rev"]
        assert start == self.head, f"writer started at {start}, the store was at {self.head} when it stopped"
        acked_floor = max([log.ready["compacted"], *log.compacts])
        assert floor >= self.floor and floor >= acked_floor, f"acknowledged compaction at {acked_floor} lost: {floor}"

        # --- revisions --------------------------------------------------------------------------
        writes = [op for ops in log.ops.values() for op in ops if op.rev is not None and op.kind in ("put", "del", "txn")]
        if writes:
            self.write_rounds += 1
        for ops in log.ops.values():
            revs = [op.rev for op in ops if op.rev is not None and op.kind in ("put", "del", "txn")]
            assert revs == sorted(set(revs)), "a writer's acknowledged revisions do not strictly increase"
        for op in writes:
            assert op.rev > start, f"acknowledged revision {op.rev} not above the round's start {start}"
            assert op.rev not in self.acked_revs, f"revision {op.rev} acknowledged twice"
            self.acked_revs.add(op.rev)
        last_seen = log.watch[-1]["rev"] if log.watch else start
        assert head >= max([last_seen, start, *(op.rev for op in writes)]), "store revision went backwards"

        # --- history: dense, as acknowledged, as observed ---------------------------------------
        # History is complete above the compaction floor (at the floor itself, deletes are
        # compacted away, as in etcd).
        w_start = max(start + 1, floor + 1)
        full = await events_from(store, w_start, head)
        assert sorted({e[3] for e in full}) == list(range(w_start, head + 1)), "revisions missing from history"
        assert [e[3] for e in full] == sorted(e[3] for e in full)
        assert len({(e[3], e[1]) for e in full}) == len(full), "a key changed twice in one revision"
        by_rev: dict[int, dict[bytes, tuple[bytes, int] | None]] = {}
        for typ, key, _create, mod, _version, value, lease in full:
            by_rev.setdefault(mod, {})[key.encode()] = None if typ == 1 else (value.encode(), lease)
        for op in writes:
            if op.rev >= w_start:
                assert by_rev[op.rev] == op.eff, f"revision {op.rev} holds {by_rev[op.rev]}, client was told {op.eff}"
                for key, new in op.eff.items():
                    kv = await store.get(key, revision=op.rev)
                    if new is None:
                        assert kv is None
                    else:
                        assert (kv.value, kv.lease, kv.mod_revision) == (new[0], new[1], op.rev)
        observed = []
        for resp in log.watch:
            assert not resp["events"] or resp["events"][-1][3] <= resp["rev"]
            observed.extend(resp["events"])
        assert [e[3] for e in observed] == sorted(e[3] for e in observed), "watcher saw revisions out of order"
        seen_tail = [e for e in observed if e[3] >= w_start]
        expect_seen = [e for e in full if e[3] <= last_seen]
        assert seen_tail == expect_seen, "what the watcher saw before the crash differs from the history after it"
        resumed = await events_from(store, last_seen + 1, head)
        assert resumed == [e for e in full if e[3] > last_seen], "resumed watch differs from the history"

        # --- current state: acknowledged writes, at most one in-flight op per writer ------------
        actual = await self.read_state(store)
        expected = dict(self.model)
        ambiguous: dict[bytes, tuple[Op, State]] = {}
        leases = set(self.leases)
        maybe_leases: set[int] = set()
        for ops in log.ops.values():
            for op in ops:
                if op.rev is None:
                    assert op is ops[-1]
                    for key in op.eff:
                        ambiguous[key] = (op, expected.get(key))
                    if op.kind in ("grant", "revoke"):
                        maybe_leases.add(op.lease)
                        leases.discard(op.lease)
                    continue
                for key, new in op.eff.items():
                    expected[key] = self.apply(expected.get(key), new, op.rev)
                if op.kind == "grant":
                    leases.add(op.lease)
                elif op.kind == "revoke":
                    leases.discard(op.lease)
        in_flight: dict[tuple[int, int], set[bool]] = {}
        for key in set(expected) | set(actual):
            got, want = actual.get(key), expected.get(key)
            if key not in ambiguous:
                assert got == want, f"{key!r}: store has {got}, acknowledged writes say {want}"
                continue
            op, before = ambiguous[key]
            new = op.eff[key]
            applied = got != before
            if applied:
                last_acked = max((o.rev for o in log.ops[op.w] if o.rev is not None), default=start)
                assert new is None or (got is not None and got[:2] == new and got[3] > last_acked), (
                    f"{key!r}: store has {got}, in-flight op {op} would give {new}"
                )
                if new is None:
                    assert got is None
            in_flight.setdefault((op.w, op.n), set()).add(applied)
        for (w, n), outcomes in in_flight.items():
            assert len(outcomes) == 1, f"in-flight op {n} of writer {w} was applied partially"

        # --- leases: acknowledged grants exist with a fresh TTL and their keys ------------------
        live_leases = set(await store.lease_leases())
        assert leases <= live_leases, f"acknowledged leases lost: {leases - live_leases}"
        assert live_leases <= leases | maybe_leases, f"unexpected leases: {live_leases - leases - maybe_leases}"
        for lease in live_leases:
            info = await store.lease_time_to_live(lease, keys=True)
            assert info.granted_ttl == LEASE_TTL and info.ttl >= LEASE_TTL - 5
            attached = sorted(k for k, s in actual.items() if s is not None and s[1] == lease)
            assert info.keys == attached
        for key, s in actual.items():
            if s is not None and s[1]:
                assert s[1] in live_leases, f"{key!r} attached to a lease that does not exist"

        self.model = actual
        self.leases = live_leases
        self.head, self.floor = head, floor

    async def read_state(self, store: EmbeddedStore) -> dict[bytes, State]:
        res = await store.range(PREFIX, prefix_end(PREFIX))
        return {kv.key: state_of(kv) for kv in res.kvs}

    async def resync(self, store: EmbeddedStore) -> None:
        actual = await self.read_state(store)
        assert actual == {k: v for k, v in self.model.items() if v is not None}
        assert set(await store.lease_leases()) == self.leases

    def note_files(self, data_dir: Path) -> None:
        for p in (data_dir / "snap").glob("*.snap"):
            self.snapshot_revs.add(int(p.stem))
        for p in (data_dir / "wal").glob("*.wal"):
            self.max_segment = max(self.max_segment, int(p.stem))


async def test_kill9_during_concurrent_writes(tmp_path: Path) -> None:
    seed = int(os.environ.get("KUBEPLANE_CRASH_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    checker = Checker()
    t0 = time.monotonic()
    for rnd in range(1, ROUNDS + 1):
        try:
            log = run_writer(data_dir, rnd, rng.randrange(2**32), rnd in EARLY_KILL_ROUNDS, rng, tmp_path)
            checker.note_files(data_dir)
            async with EmbeddedStore(data_dir) as store:
                await checker.check_round(store, log, data_dir)
        except BaseException as exc:
            exc.add_note(f"crash test: KUBEPLANE_CRASH_SEED={seed}, round {rnd}, logs in {tmp_path}")
            raise
    print(f"crash test: {len(checker.snapshot_revs)} snapshots, {checker.max_segment} segments seen")
    assert checker.write_rounds >= MIN_WRITE_ROUNDS
    # The rounds really crossed segment rotations and snapshots (and recovered from them).
    assert checker.max_segment >= 3 * ROUNDS
    assert len(checker.snapshot_revs) >= ROUNDS // 4
    assert time.monotonic() - t0 < 60
