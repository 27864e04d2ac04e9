"""Full-jitter backoff: a thousand clients failing together spread their retries over
the whole window, the window doubles up to the cap, and resets after a quiet spell."""
from __future__ import annotations

import random

from kubeplane.client import Backoff


def test_a_thousand_clients_do_not_retry_in_lockstep():
    rng = random.Random(7)
    first = [Backoff(base=0.8, rng=random.Random(rng.random())).next_delay() for _ in range(1000)]
    assert all(0 <= d < 0.8 for d in first)
    bins = [0] * 10
    for d in first:
        bins[int(d / 0.08)] += 1
    assert max(bins) < 150 and min(bins) > 50          # about 100 per tenth of the window


def test_window_doubles_to_the_cap_and_resets():
    now = [0.0]
    b = Backoff(base=1.0, cap=8.0, reset_after=60.0, rng=random.Random(1), clock=lambda: now[0])
    windows = []
    for _ in range(6):
        windows.append(b.base * 2 ** min(b.attempt, 30))
        assert b.next_delay() <= min(8.0, windows[-1])
    assert [min(8.0, w) for w in windows] == [1, 2, 4, 8, 8, 8]
    now[0] = 100.0                                       # quiet for longer than reset_after
    b.next_delay()
    assert b.attempt == 1
