"""The balancer's choices, with a fake clock: least in flight with random ties, down
servers left out for a doubling window, one watch moved per call."""
from __future__ import annotations

import random

from kubeplane.client.balancer import Balancer


def test_least_in_flight_and_random_ties():
    b = Balancer(["http://a", "http://b", "http://c"], rng=random.Random(1))
    first = {b.pick().url for _ in range(60)}
    assert first == {"http://a", "http://b", "http://c"}          # ties spread
    b.servers[0].in_flight = 3
    b.servers[1].in_flight = 1
    b.servers[2].in_flight = 2
    assert {b.pick().url for _ in range(20)} == {"http://b"}
    assert b.pick(exclude={"http://b"}).url == "http://c"


def test_down_servers_are_skipped_for_a_doubling_window():
    now = [0.0]
    b = Balancer(["http://a", "http://b"], rng=random.Random(2), clock=lambda: now[0])
    a = b.servers[0]
    b.failed(a)
    first = a.down_until
    assert 0.5 <= first <= 1.0
    assert {b.pick().url for _ in range(20)} == {"http://b"}
    b.failed(a)
    assert 1.0 <= a.down_until - now[0] <= 2.0
    for _ in range(10):
        b.failed(a)
    assert a.down_until - now[0] <= 30.0
    b.failed(b.servers[1])                                           # all down: the first back is tried
    assert b.pick().url == "http://b"
    now[0] = 100.0
    assert {b.pick().url for _ in range(40)} == {"http://a", "http://b"}
    b.succeeded(a)
    assert a.failures == 0


def test_rebalance_moves_one_movable_watch_from_the_busiest():
    b = Balancer(["http://a", "http://b"], rng=random.Random(3))
    closed: list[int] = []
    a = b.servers[0]
    handles = []
    for i in range(4):
        b.watch_reserved(a)
        handles.append(b.watch_opened(a, lambda i=i: closed.append(i), movable=i != 0))
    assert b.rebalance_once() and closed == [1]                     # the oldest movable one
    assert handles[1].moved
    b.watch_closed(handles[1])
    b.watch_reserved(b.servers[1])
    assert (a.watches, b.servers[1].watches) == (3, 1)
    assert b.rebalance_once() and closed == [1, 2]
    b.watch_closed(handles[2])
    b.watch_reserved(b.servers[1])
    assert not b.rebalance_once()                                   # 2 / 2: balanced
    b.make_movable(handles[0])
    assert handles[0] in a.movable
