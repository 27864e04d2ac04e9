"""Fair queuing for one priority level (upstream's fairqueuing/queueset, asyncio-based).

A `QueueSet` runs in one of three modes:

- EXEMPT: every request executes at once; only counted.
- REJECT (Limited, limitResponse Reject): a request executes if its seats fit in the
  free seats, else it is rejected with reason "concurrency-limit".
- QUEUE (Limited, limitResponse Queue): requests wait in `queues` FIFO queues and are
  dispatched by fair queuing.

Fair queuing (QUEUE mode), as upstream:

- Each flow (FlowSchema name + flow distinguisher) is shuffle-sharded onto a hand of
  `handSize` queues (`deal`, seeded by `hash_flow_id`). A request joins the queue of
  its hand with the least waiting work, the hand being visited from a rotating offset
  so ties spread. When the level's seats are all in use and that queue already holds
  `queueLengthLimit` requests, the request is rejected ("queue-full").
- Virtual time R (seat-seconds given to each active queue) advances at
  min(seats requested, CL) / (number of queues with waiting or executing requests)
  per real second. A queue that becomes active starts at the current R.
- A request's work is seats x G, G = 3 ms (upstream's estimated service duration).
  Dispatch picks, among queues with waiting requests, the one whose head would finish
  first in virtual time (next-dispatch R + head's work), ties broken round-robin; it
  executes if its seats fit (a request wider than CL only when nothing executes), else
  dispatching stops until seats are freed ("no accommodation"). The queue's
  next-dispatch R then advances by the head's work and is never let below the arrival R
  of its new head (upstream's anti-windup bound).
- On finish, the queue's next-dispatch R is corrected by seats x (G - actual service
  time), so a flow pays for what it really used.
- A waiting request leaves its queue on its wait limit ("time-out") or when its waiter
  is cancelled ("cancelled"); both count as rejections.

Invariants: tot_waiting / seats_waiting sum the queues' waiting requests; tot_executing
/ seats_in_use count every executing request (q_seats only those dispatched from a
queue); `active` counts queues with waiting or executing requests; `nonempty` holds
exactly the queues with waiting requests. Everything runs on the event loop thread.
"""
from __future__ import annotations

import asyncio
import hashlib
import math
from collections import deque
from typing import Callable

from .metrics import GRANULARITY, LevelStats, PairStats, ReadWriteStats

G = 0.003                  # estimated service time of one seat-request, seconds
R_DECREMENT = 5e8          # R is wound back by this when it reaches HIGH_R (float precision)
HIGH_R = 1e9
MAX_RETRY_AFTER = 32

EXEMPT, REJECT, QUEUE = 0, 1, 2
WAITING, EXECUTING, DONE = 1, 2, 3


class Rejected(Exception):
    """A request flow control turned away (answer 429 with Retry-After: retry_after)."""

    def __init__(self, flow_schema: str, flow_schema_uid: str, priority_level: str, priority_level_uid: str,
                 reason: str, retry_after: int):
        super().__init__(f"rejected by priority level {priority_level!r} (flow schema {flow_schema!r}): {reason}")
        self.flow_schema = flow_schema
        self.flow_schema_uid = flow_schema_uid
        self.priority_level = priority_level
        self.priority_level_uid = priority_level_uid
        self.reason = reason
        self.retry_after = retry_after


# --- shuffle sharding ------------------------------------------------------------------------
MAX_HASH_BITS = 60


def hash_flow_id(flow_schema: str, distinguisher: str) -> int:
    """Upstream's flow hash: the first 8 bytes, little-endian, of
    sha256(flow schema name, NUL, distinguisher)."""
    digest = hashlib.sha256(flow_schema.encode() + b"\x00" + distinguisher.encode()).digest()
    return int.from_bytes(digest[:8], "little")


def check_dealer(deck_size: int, hand_size: int) -> str | None:
    """Why (deck_size, hand_size) cannot shuffle-shard, or None."""
    if deck_size <= 0 or hand_size <= 0:
        return f"deckSize {deck_size} or handSize {hand_size} is not positive"
    if hand_size > deck_size:
        return f"handSize {hand_size} is greater than deckSize {deck_size}"
    if deck_size > 1 << 26:
        return f"deckSize {deck_size} is impractically large"
    if math.ceil(math.log2(deck_size) * hand_size) > MAX_HASH_BITS:
        return (f"required entropy bits of deckSize {deck_size} and handSize {hand_size} is greater than "
                f"{MAX_HASH_BITS}")
    return None


def deal(hash_value: int, deck_size: int, hand_size: int) -> list[int]:
    """The hand of distinct cards (queue indices) a hash value deals (upstream's Dealer).
    The i-th digit of the hash in the mixed radix (deck, deck-1, ...) picks the i-th card
    among those not yet dealt, counted against the earlier raw digits."""
    digits = []
    for i in range(hand_size):
        hash_value, d = divmod(hash_value, deck_size - i)
        digits.append(d)
    hand = []
    for i, card in enumerate(digits):
        for j in range(i, 0, -1):
            if card >= digits[j - 1]:
                card += 1
        hand.append(card)
    return hand


# --- retry-after -----------------------------------------------------------------------------
class RetryAfter:
    """Adaptive Retry-After of one priority level (upstream's dropped-requests tracker):
    starts at 1 s. When a rejection opens a new second, the rejections of the previous
    `value` seconds are counted: at least 3 x value doubles it (at most 32 s, at most
    once per `value` seconds), fewer than value decrements it by 1."""
    __slots__ = ("value", "second", "count", "history", "raised_at")

    def __init__(self) -> None:
        self.value = 1
        self.second: int | None = None
        self.count = 0
        self.history: deque[tuple[int, int]] = deque()
        self.raised_at = -math.inf

    def record(self, now: float) -> int:
        sec = int(now)
        if sec == self.second:
            self.count += 1
            return self.value
        if self.second is not None:
            self.history.append((self.second, self.count))
            keep = min(2 * self.value, MAX_RETRY_AFTER)
            while self.history and self.second - self.history[0][0] > keep:
                self.history.popleft()
        self.second, self.count = sec, 1
        dropped = sum(n for s, n in self.history if sec - s <= self.value and s < sec)
        if sec - self.raised_at >= self.value and dropped >= 3 * self.value:
            self.value = min(2 * self.value, MAX_RETRY_AFTER)
            self.raised_at = sec
        elif dropped < self.value and self.value > 1:
            self.value -= 1
        return self.value


# --- requests ----------------------------------------------------------------------------------
class Route:
    """What classification yields for one kind of request: the flow schema, the level's
    queue set, the metrics pair, the flow's hand of queues (QUEUE mode), the request
    kind (0 read-only, 1 mutating) and whether it is a watch. Immutable; rebuilt when
    the configuration changes."""
    __slots__ = ("fs_name", "fs_uid", "pl_name", "pl_uid", "exempt", "distinguisher", "qs", "pair", "hand",
                 "kind", "watch")

    def __init__(self, fs_name: str, fs_uid: str, pl_name: str, pl_uid: str, distinguisher: str,
                 qs: "QueueSet", pair: PairStats, hand: tuple["Queue", ...] | None, kind: int, watch: bool):
        self.fs_name, self.fs_uid, self.pl_name, self.pl_uid = fs_name, fs_uid, pl_name, pl_uid
        self.exempt = qs.mode == EXEMPT
        self.distinguisher = distinguisher
        self.qs, self.pair, self.hand, self.kind, self.watch = qs, pair, hand, kind, watch


class Ticket:
    """An admitted request. Call `release()` when it is done (idempotent); for a watch,
    once its initial events are sent."""
    __slots__ = ("_route", "seats", "_qs", "_queue", "_state", "_start", "_arrival", "_arrival_r", "_work",
                 "_future", "_timer")

    def __init__(self, route: Route, qs: "QueueSet", seats: int, now: float, state: int):
        self._route = route
        self._qs = qs
        self.seats = seats
        self._queue: Queue | None = None
        self._state = state
        self._start = now
        self._arrival = now
        self._arrival_r = 0.0
        self._work = 0.0
        self._future: asyncio.Future | None = None
        self._timer: asyncio.TimerHandle | None = None

    flow_schema_name = property(lambda self: self._route.fs_name)
    flow_schema_uid = property(lambda self: self._route.fs_uid)
    priority_level_name = property(lambda self: self._route.pl_name)
    priority_level_uid = property(lambda self: self._route.pl_uid)
    exempt = property(lambda self: self._route.exempt)

    def release(self) -> None:
        if self._state == EXECUTING:
            self._qs.finish(self)

    def note_watch_count(self, count: int) -> None:
        """For a mutating request: how many watchers it will notify (watch_count_samples)."""
        self._route.pair.watch_count.observe(count)

    def __repr__(self) -> str:
        state = {WAITING: "waiting", EXECUTING: "executing", DONE: "done"}[self._state]
        return f"Ticket({self._route.fs_name}/{self._route.pl_name}, seats={self.seats}, {state})"


class Queue:
    __slots__ = ("index", "waiting", "waiting_work", "next_r", "executing", "seats_in_use")

    def __init__(self, index: int):
        self.index = index
        self.waiting: deque[Ticket] = deque()
        self.waiting_work = 0.0
        self.next_r = 0.0
        self.executing = 0
        self.seats_in_use = 0


class QueueSet:
    def __init__(self, name: str, clock: Callable[[], float], stats: LevelStats, rw: ReadWriteStats):
        self.name = name
        self.clock = clock
        self.stats = stats
        self.rw = rw
        stats.source = self
        self.retry = RetryAfter()
        self.on_idle: Callable[[QueueSet], None] | None = None
        # configuration
        self.mode = REJECT
        self.cl = 1
        self.cl_den = 1
        self.wait_den = 1
        self.desired = 0
        self.hand_size = 1
        self.qll = 0
        # state
        self.queues: list[Queue] = []
        self.nonempty: dict[Queue, None] = {}
        self.r = 0.0
        self.last_sync = clock()
        self.robin = -1
        self.enqueues = 0
        self.active = 0
        self.tot_waiting = 0
        self.seats_waiting = 0
        self.tot_executing = 0
        self.seats_in_use = 0
        self.q_seats = 0

    def idle(self) -> bool:
        return not self.tot_waiting and not self.tot_executing

    def configure(self, mode: int, cl: int, cl_den: int, desired: int, hand_size: int, qll: int) -> None:
        """Apply a (new) configuration, keeping waiting and executing requests. Queues
        beyond `desired` stay until they drain."""
        now = self.clock()
        self._tick(now)
        self._sync(now)
        self.mode, self.cl, self.cl_den = mode, cl, cl_den
        if mode == QUEUE:
            self.desired, self.hand_size, self.qll = desired, hand_size, qll
            while len(self.queues) < desired:
                self.queues.append(Queue(len(self.queues)))
            self.wait_den = max(1, qll) * desired
        else:
            self.desired = 0
            self.wait_den = 1
        self._trim()
        if self.tot_waiting:
            self._dispatch(now)

    # --- the request path ------------------------------------------------------------------
    def _tick(self, now: float) -> None:
        st = self.stats
        if now - st.last >= GRANULARITY:
            st.integrate(now)
        rw = self.rw
        if now - rw.last >= GRANULARITY:
            rw.integrate(now)

    def _sync(self, now: float) -> None:
        """Advance R to `now` under the state in force since the last sync."""
        dt = now - self.last_sync
        self.last_sync = now
        if self.active and dt > 0:
            want = self.q_seats + self.seats_waiting
            self.r += dt * (want if want < self.cl else self.cl) / self.active
            self.stats.current_r = self.r
            if self.r >= HIGH_R:
                self._advance_epoch()

    def start(self, route: Route, seats: int) -> Ticket:
        """Admit, queue or reject a request. Returns a Ticket that is executing, or
        (QUEUE mode) waiting: then the caller awaits `wait()`. Raises Rejected."""
        now = self.clock()
        st = self.stats
        if now - st.last >= GRANULARITY:
            st.integrate(now)
        rw = self.rw
        if now - rw.last >= GRANULARITY:
            rw.integrate(now)
        pair = route.pair
        mode = self.mode
        if mode == EXEMPT:
            if seats < 1:
                seats = 1
            t = Ticket(route, self, seats, now, EXECUTING)
            self.tot_executing += 1
            self.seats_in_use += seats
            pair.dispatched += 1
            pair.executing_requests += 1
            pair.executing_seats += seats
            rw.executing[route.kind] += 1
            return t
        cl = self.cl
        if seats > cl:
            seats = cl if cl > 0 else 1
        elif seats < 1:
            seats = 1
        pair.work_seats.observe(seats)
        if self.active:
            self._sync(now)
        else:
            self.last_sync = now
        if mode == QUEUE:
            if not self.tot_waiting and self.seats_in_use + seats <= cl:
                # Nothing waits and the seats are free: enqueue-and-dispatch at once.
                hand = route.hand
                q = hand[self.enqueues % len(hand)]
                self.enqueues += 1
                if not q.executing and not q.waiting:
                    q.next_r = self.r
                    self.active += 1
                t = Ticket(route, self, seats, now, EXECUTING)
                t._queue = q
                q.executing += 1
                q.seats_in_use += seats
                self.q_seats += seats
                self.tot_executing += 1
                self.seats_in_use += seats
                st.dispatch_r = self.r
                st.latest_s = q.next_r
                q.next_r += seats * G
                self.robin = q.index
                h = pair.queue_length           # observe(1): bucket le=10
                h.counts[1] += 1
                h.sum += 1
                pair.wait_executed.counts[0] += 1   # observe(0.0): bucket le=0
                pair.dispatched += 1
                pair.executing_requests += 1
                pair.executing_seats += seats
                rw.executing[route.kind] += 1
                return t
            return self._enqueue(route, seats, now)
        if self._fits(seats):
            t = Ticket(route, self, seats, now, EXECUTING)
            self.tot_executing += 1
            self.seats_in_use += seats
            pair.wait_executed.observe(0.0)
            pair.dispatched += 1
            pair.executing_requests += 1
            pair.executing_seats += seats
            rw.executing[route.kind] += 1
            return t
        pair.wait_rejected.observe(0.0)
        raise self._rejection(route, "concurrency-limit", now)

    def _fits(self, seats: int) -> bool:
        if seats > self.cl:
            return not self.tot_executing
        return self.seats_in_use + seats <= self.cl

    def _rejection(self, route: Route, reason: str, now: float) -> Rejected:
        route.pair.reject(reason)
        return Rejected(route.fs_name, route.fs_uid, route.pl_name, route.pl_uid, reason, self.retry.record(now))

    def _enqueue(self, route: Route, seats: int, now: float) -> Ticket:
        hand = route.hand
        n = len(hand)
        off = self.enqueues % n
        self.enqueues += 1
        q = hand[off]
        least = q.waiting_work
        for i in range(1, n):
            c = hand[(off + i) % n]
            if c.waiting_work < least:
                q, least = c, c.waiting_work
        pair = route.pair
        if self.seats_in_use >= self.cl and len(q.waiting) >= self.qll:
            pair.wait_rejected.observe(0.0)
            raise self._rejection(route, "queue-full", now)
        if not q.waiting and not q.executing:
            q.next_r = self.r
            self.active += 1
        t = Ticket(route, self, seats, now, WAITING)
        t._queue = q
        t._arrival_r = self.r
        t._work = seats * G
        if not q.waiting:
            self.nonempty[q] = None
        q.waiting.append(t)
        q.waiting_work += t._work
        self.tot_waiting += 1
        self.seats_waiting += seats
        pair.inqueue_requests += 1
        pair.inqueue_seats += seats
        self.rw.waiting[route.kind] += 1
        pair.queue_length.observe(len(q.waiting))
        self._bound(q)
        self._dispatch(now)
        return t

    async def wait(self, t: Ticket, wait_limit: float) -> Ticket:
        """Wait until `t` is dispatched (returns it), times out (raises Rejected) or the
        caller is cancelled (the request leaves its queue, or gives its seats back if it
        was dispatched meanwhile)."""
        loop = asyncio.get_running_loop()
        fut = t._future = loop.create_future()
        t._timer = loop.call_later(max(0.0, wait_limit), self._expire, t)
        try:
            await fut
        except asyncio.CancelledError:
            self.cancel(t)
            raise
        return t

    def _expire(self, t: Ticket) -> None:
        if t._state != WAITING:
            return
        now = self.clock()
        self._tick(now)
        self._sync(now)
        self._leave(t, now)
        err = self._rejection(t._route, "time-out", now)
        t._route.pair.wait_rejected.observe(now - t._arrival)
        fut = t._future
        if fut is not None and not fut.done():
            fut.set_exception(err)
        self._maybe_idle()

    def cancel(self, t: Ticket) -> None:
        """The waiter went away: leave the queue ("cancelled"), or give the seats back."""
        if t._state == WAITING:
            now = self.clock()
            self._tick(now)
            self._sync(now)
            self._leave(t, now)
            if t._timer is not None:
                t._timer.cancel()
            t._route.pair.reject("cancelled")      # (no 429 goes out: Retry-After not affected)
            t._route.pair.wait_rejected.observe(now - t._arrival)
            self._maybe_idle()
        elif t._state == EXECUTING:
            self.finish(t)

    def _leave(self, t: Ticket, now: float) -> None:
        """Take a waiting ticket out of its queue (not dispatched)."""
        q = t._queue
        assert q is not None
        q.waiting.remove(t)
        q.waiting_work -= t._work
        if not q.waiting:
            del self.nonempty[q]
            if not q.executing:
                self.active -= 1
        else:
            self._bound(q)
        t._state = DONE
        self.tot_waiting -= 1
        self.seats_waiting -= t.seats
        pair = t._route.pair
        pair.inqueue_requests -= 1
        pair.inqueue_seats -= t.seats
        self.rw.waiting[t._route.kind] -= 1
        if len(self.queues) > self.desired:
            self._trim()

    def _dispatch(self, now: float) -> None:
        while self.tot_waiting and self.seats_in_use < self.cl:
            if not self._dispatch_one(now):
                return

    def _dispatch_one(self, now: float) -> bool:
        nq = len(self.queues)
        first = self.robin + 1
        best: Queue | None = None
        best_f = math.inf
        best_rank = nq
        s_min = ds_min = math.inf
        s_max = ds_max = -math.inf
        for q in self.nonempty:
            nr = q.next_r
            f = nr + q.waiting[0]._work
            rank = (q.index - first) % nq
            if f < best_f or (f == best_f and rank < best_rank):
                best, best_f, best_rank = q, f, rank
            if nr < s_min:
                s_min = nr
            if nr > s_max:
                s_max = nr
            ds = nr - q.seats_in_use * G
            if ds < ds_min:
                ds_min = ds
            if ds > ds_max:
                ds_max = ds
        if best is None:
            return False
        head = best.waiting[0]
        if not self._fits(head.seats):
            head._route.pair.no_accommodation += 1
            return False
        best.waiting.popleft()
        best.waiting_work -= head._work
        if not best.waiting:
            del self.nonempty[best]
        seats = head.seats
        self.tot_waiting -= 1
        self.seats_waiting -= seats
        route = head._route
        pair = route.pair
        pair.inqueue_requests -= 1
        pair.inqueue_seats -= seats
        rw = self.rw
        rw.waiting[route.kind] -= 1
        self.robin = best.index
        fut = head._future
        if fut is not None and fut.done():
            # Its waiter was cancelled and has not run its handler yet: drop it.
            head._state = DONE
            if head._timer is not None:
                head._timer.cancel()
            if not best.waiting and not best.executing:
                self.active -= 1
            pair.reject("cancelled")
            pair.wait_rejected.observe(now - head._arrival)
            return True
        st = self.stats
        st.dispatch_r = self.r
        st.latest_s = best.next_r
        st.s_bounds = (s_min, s_max)
        st.ds_bounds = (ds_min, ds_max)
        head._state = EXECUTING
        head._start = now
        best.executing += 1
        best.seats_in_use += seats
        self.q_seats += seats
        self.tot_executing += 1
        self.seats_in_use += seats
        pair.wait_executed.observe(now - head._arrival)
        pair.dispatched += 1
        pair.executing_requests += 1
        pair.executing_seats += seats
        rw.executing[route.kind] += 1
        best.next_r += head._work
        self._bound(best)
        if fut is not None:
            if head._timer is not None:
                head._timer.cancel()
            fut.set_result(None)
        return True

    def finish(self, t: Ticket) -> None:
        now = self.clock()
        st = self.stats
        if now - st.last >= GRANULARITY:
            st.integrate(now)
        rw = self.rw
        if now - rw.last >= GRANULARITY:
            rw.integrate(now)
        if self.active:
            self._sync(now)
        t._state = DONE
        seats = t.seats
        self.tot_executing -= 1
        self.seats_in_use -= seats
        route = t._route
        pair = route.pair
        pair.executing_requests -= 1
        pair.executing_seats -= seats
        rw.executing[route.kind] -= 1
        served = now - t._start
        if route.watch:
            pair.exec_watch.observe(served)
        else:
            pair.exec_regular.observe(served)
        q = t._queue
        if q is not None:
            q.executing -= 1
            q.seats_in_use -= seats
            self.q_seats -= seats
            q.next_r -= seats * (G - served)
            if q.waiting:
                self._bound(q)
            elif not q.executing:
                self.active -= 1
                if len(self.queues) > self.desired:
                    self._trim()
        if self.tot_waiting:
            self._dispatch(now)
        if self.on_idle is not None and not self.tot_executing and not self.tot_waiting:
            self.on_idle(self)

    def _maybe_idle(self) -> None:
        if self.on_idle is not None and not self.tot_executing and not self.tot_waiting:
            self.on_idle(self)

    @staticmethod
    def _bound(q: Queue) -> None:
        """Anti-windup: a queue's next dispatch is never before its head's arrival."""
        if q.waiting:
            arrival = q.waiting[0]._arrival_r
            if q.next_r < arrival:
                q.next_r = arrival

    def _trim(self) -> None:
        """Drop drained queues beyond the desired number (renumbering the rest)."""
        d = self.desired
        if len(self.queues) <= d:
            return
        keep = self.queues[:d] + [q for q in self.queues[d:] if q.waiting or q.executing]
        if len(keep) == len(self.queues):
            return
        for i, q in enumerate(keep):
            q.index = i
        self.queues = keep
        self.robin = self.robin % len(keep) if keep else -1

    def _advance_epoch(self) -> None:
        """Wind R and every reading taken from it back by R_DECREMENT (float precision)."""
        self.r -= R_DECREMENT
        for q in self.queues:
            if not q.waiting and not q.executing:
                q.next_r = 0.0
                continue
            q.next_r -= R_DECREMENT
            for t in q.waiting:
                t._arrival_r -= R_DECREMENT
        self.stats.current_r = self.r
        self.stats.epochs[True] += 1
