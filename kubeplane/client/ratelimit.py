"""Token buckets and jittered exponential backoff.

`TokenBucket` is golang.org/x/time/rate's limiter as client-go uses it: `qps` tokens a
second, at most `burst` saved up. `reserve()` takes a token now and says how long the
caller must wait for it (tokens may go negative: later callers queue up behind earlier
ones in order, so waiting never starves anyone); `wait()` sleeps that long.
qps <= 0 means no limit.

`Backoff` is "full jitter" exponential backoff: attempt n sleeps uniform(0, min(cap,
base * 2**n)) — a thousand clients that fail together spread their retries over the
whole window instead of retrying in lockstep (the relist storm). It resets after
`reset_after` seconds without failure, like client-go's backoff manager.
"""
from __future__ import annotations

import asyncio
import random
import time


class TokenBucket:
    def __init__(self, qps: float, burst: int, clock=time.monotonic):
        self.qps = float(qps)
        self.burst = max(1, int(burst))
        self._clock = clock
        self._tokens = float(self.burst)
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now

    def reserve(self) -> float:
        """Take one token; return the seconds until it is really ours (0 when available now)."""
        if self.qps <= 0:
            return 0.0
        self._refill()
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def try_take(self) -> bool:
        """Take a token only if one is there now (the event recorder's spam filter)."""
        if self.qps <= 0:
            return True
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    async def wait(self) -> float:
        """Wait for a token; returns how long we waited."""
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)
        return delay


class Backoff:
    def __init__(self, base: float = 0.8, cap: float = 30.0, reset_after: float = 120.0,
                 rng: random.Random | None = None, clock=time.monotonic):
        self.base = base
        self.cap = cap
        self.reset_after = reset_after
        self.attempt = 0
        self._rng = rng or random.Random()
        self._clock = clock
        self._last_failure = 0.0

    def next_delay(self) -> float:
        """The delay before the next retry (and count this failure)."""
        now = self._clock()
        if self.attempt and now - self._last_failure > self.reset_after:
            self.attempt = 0
        self._last_failure = now
        window = min(self.cap, self.base * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return self._rng.uniform(0, window)

    def reset(self) -> None:
        self.attempt = 0

    async def sleep(self) -> float:
        d = self.next_delay()
        await asyncio.sleep(d)
        return d
