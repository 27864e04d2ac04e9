"""Which member a client talks to: random start, periodic re-shuffle, failover.

The pool keeps the endpoints in an order; calls go to the head.  A failed head is
moved to the tail (the next member takes over).  Every ``reshuffle_interval`` seconds
the order is shuffled again, so a fleet of clients started together does not pile
onto one member, and clients that failed over drift back to an even spread once the
dead member returns.  One lazily created ``grpc.aio`` channel per endpoint.
"""

from __future__ import annotations

import random

import grpc

from etcd3aio._protobuf import rpc_pb2_grpc

# etcd answers large ranges in one message: lift gRPC's 4 MiB receive limit.  Keepalive
# pings find dead TCP peers; etcd's default enforcement (5 s minimum) is respected.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    # A fresh subchannel per endpoint: never share a connection with another client.
    ("grpc.use_local_subchannel_pool", 1),
]


def normalize(endpoint: str) -> str:
    """``http://host:port`` or ``host:port`` -> ``host:port`` (gRPC target)."""
    for scheme in ("http://", "https://"):
        if endpoint.startswith(scheme):
            endpoint = endpoint[len(scheme):]
    return endpoint.rstrip("/")


class Endpoint:
    """One member address with its channel and stubs (created on first use)."""

    def __init__(self, target: str):
        self.target = target
        self._channel: grpc.aio.Channel | None = None
        self._stubs: dict[str, object] = {}

    @property
    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        return self._channel

    def stub(self, service: str):
        """``service`` is one of KV, Watch, Lease, Maintenance, Cluster."""
        stub = self._stubs.get(service)
        if stub is None:
            stub = getattr(rpc_pb2_grpc, f"{service}Stub")(self.channel)
            self._stubs[service] = stub
        return stub

    async def close(self) -> None:
        channel, self._channel, self._stubs = self._channel, None, {}
        if channel is not None:
            await channel.close()

    def __repr__(self) -> str:
        return f"Endpoint({self.target})"


class EndpointPool:
    def __init__(self, endpoints: list[str], rng: random.Random | None = None):
        if not endpoints:
            raise ValueError("EtcdStore needs at least one endpoint")
        targets = list(dict.fromkeys(normalize(e) for e in endpoints))
        self._rng = rng or random.Random()
        self._all = [Endpoint(t) for t in targets]
        self._order = list(self._all)
        self.shuffle()

    def __len__(self) -> int:
        return len(self._all)

    @property
    def order(self) -> list[str]:
        return [e.target for e in self._order]

    @property
    def all(self) -> list[Endpoint]:
        return list(self._all)

    def current(self) -> Endpoint:
        return self._order[0]

    def shuffle(self) -> None:
        self._rng.shuffle(self._order)

    def failed(self, endpoint: Endpoint) -> None:
        """``endpoint`` failed: if it is still the head, the next one takes over.

        Concurrent calls failing on the same head rotate only once.
        """
        if self._order[0] is endpoint:
            self._order.append(self._order.pop(0))

    async def close(self) -> None:
        for e in self._all:
            await e.close()
