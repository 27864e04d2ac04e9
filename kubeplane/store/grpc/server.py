"""``EtcdServer``: any ``Store`` served over etcd's v3 gRPC API; ``serve()``: the
``kubeplane store serve`` process (the embedded store, until SIGTERM/SIGINT).

Version.  Status reports ``EMULATED_VERSION`` ("3.5.17"): the etcd API level that
kubeplane's embedded store emulates.  Clients use the version to decide what they may
rely on; the one that matters is that a progress notification (RequestProgress) is
only sent once every event up to its revision was delivered, which etcd guarantees
from 3.4.31 / 3.5.8 on and this server guarantees for every store whose
``info.progress_requests_reliable`` is true.  Serving a store without that
guarantee (e.g. a proxied etcd 3.4.23), the server reports that store's own
version instead, so clients do not trust what it cannot promise.

Limits, as etcd: gRPC accepts messages up to ``max_request_bytes`` + 512 KiB so an
oversize request reaches the store and gets "etcdserver: request is too large"
instead of a transport error; responses are not size-limited.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys

import grpc
from etcd3aio._protobuf import rpc_pb2_grpc

from ...datadir import listen_error
from ..interface import Store
from .common import GRPC_OVERHEAD_BYTES, MAX_REQUEST_BYTES, MAX_TXN_OPS, Identity, derive_id
from .kv import KVServicer
from .lease import LeaseServicer
from .maintenance import ClusterServicer, MaintenanceServicer
from .watch import WatchServicer
from .wire import add_kv_servicer

log = logging.getLogger("kubeplane.store.grpc")

EMULATED_VERSION = "3.5.17"
_UNRELIABLE_FALLBACK_VERSION = "3.4.0"
_SHUTDOWN_GRACE = 5.0  # seconds in-flight unary RPCs get to finish on stop


def advertised_version(store: Store) -> str:
    info = store.info
    if info.progress_requests_reliable:
        return EMULATED_VERSION
    if re.fullmatch(r"3\.\d+\.\d+", info.version or ""):
        return info.version
    return _UNRELIABLE_FALLBACK_VERSION


class EtcdServer:
    """Serve ``store`` (already started; the caller closes it) on ``listen``.

    ``name`` names the single member MemberList reports (default: the store's own
    member name, else "kubeplane").  Use ``await start(listen)`` / ``await stop()``
    or ``async with``.
    """

    def __init__(
        self,
        store: Store,
        *,
        name: str | None = None,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        max_txn_ops: int = MAX_TXN_OPS,
        quota_bytes: int = 0,
        snapshot_spool_dir: str | None = None,
    ):
        self.store = store
        self._name = name
        self._max_request_bytes = max_request_bytes
        self._max_txn_ops = max_txn_ops
        self._quota_bytes = quota_bytes
        self._spool_dir = snapshot_spool_dir
        self._server: grpc.aio.Server | None = None
        self._watch: WatchServicer | None = None
        self._stopping = asyncio.Event()
        self.ident: Identity | None = None
        self.port = 0
        self.host = ""

    @property
    def endpoint(self) -> str:
        """``host:port`` actually bound (the port is known after ``start``)."""
        return f"{self.host}:{self.port}"

    async def start(self, listen: str = "127.0.0.1:0") -> int:
        """Bind and start serving; returns the bound port.  ``StartupError`` (one line:
        the address, why, what to do) if it cannot bind."""
        host, port = _split_listen(listen)
        self.ident = ident = await self._identity()
        server = grpc.aio.server(options=self._options())
        # gRPC's bind failure says neither why nor in one line (its C core logs its own):
        # try the address with a plain socket first, and again to explain a failure.
        busy = _bind_error(host, port) if port else None
        try:
            bound = 0 if busy else server.add_insecure_port(f"{host}:{port}")
        except RuntimeError:
            bound = 0
        if not bound:
            raise listen_error(listen, "--listen", busy or _bind_error(host, port)
                               or OSError(f"gRPC could not bind {host}:{port}"))
        self.host, self.port = host, bound
        ident.client_urls = [f"http://{self.endpoint}"]
        store = self.store
        self._watch = WatchServicer(store, ident, self._stopping)
        add_kv_servicer(KVServicer(store, ident, self._max_txn_ops), server)
        rpc_pb2_grpc.add_WatchServicer_to_server(self._watch, server)
        rpc_pb2_grpc.add_LeaseServicer_to_server(LeaseServicer(store, ident, self._stopping), server)
        maintenance = MaintenanceServicer(store, ident, quota_bytes=self._quota_bytes, spool_dir=self._spool_dir)
        rpc_pb2_grpc.add_MaintenanceServicer_to_server(maintenance, server)
        rpc_pb2_grpc.add_ClusterServicer_to_server(ClusterServicer(ident), server)
        await server.start()
        self._server = server
        return bound

    async def stop(self, grace: float = _SHUTDOWN_GRACE) -> None:
        """Refuse new RPCs, end open watch and keep-alive streams with UNAVAILABLE
        ("etcdserver: server stopped"), let in-flight unary RPCs finish (at most
        ``grace`` seconds).  The store stays open: its owner closes it afterwards, so
        every acknowledged write is durable."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        stopped = asyncio.ensure_future(server.stop(grace))
        if self._watch is not None:
            await self._watch.shutdown()
        await stopped

    async def __aenter__(self) -> "EtcdServer":
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def _options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.max_receive_message_length", self._max_request_bytes + GRPC_OVERHEAD_BYTES),
            ("grpc.max_send_message_length", 2**31 - 1),
            ("grpc.so_reuseport", 0),  # a port in use is an error, not a shared port
            # etcd's keepalive policy: clients may ping every 5 s, even without streams.
            ("grpc.keepalive_time_ms", 2 * 3600 * 1000),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
            ("grpc.http2.max_ping_strikes", 0),
        ]

    async def _identity(self) -> Identity:
        """Ids come from the store when it has them, else are derived from the name, so
        they stay the same across restarts of the same data directory."""
        status = await self.store.status()
        members = await self.store.members()
        only = members[0] if len(members) == 1 else None
        name = self._name or (only.name if only and only.name else "kubeplane")
        member_id = status.member_id or (only.id if only else 0) or derive_id("kubeplane-member", name)
        # The embedded store persists a cluster id; the interface does not require one.
        cluster_id = getattr(self.store, "cluster_id", 0) or derive_id("kubeplane-cluster", str(member_id))
        return Identity(
            cluster_id=cluster_id,
            member_id=member_id,
            raft_term=status.raft_term or 1,
            name=name,
            version=advertised_version(self.store),
            peer_urls=list(only.peer_urls) if only else [],
        )


def _bind_error(host: str, port: int) -> OSError | None:
    """Why ``host:port`` cannot be bound, tried with a plain socket (None: it can)."""
    import socket

    try:
        family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(addr)
    except OSError as exc:
        return exc
    return None


def _split_listen(listen: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or an etcd-style ``http://host:port``."""
    address = listen.split("://", 1)[-1].rstrip("/")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise OSError(f"cannot listen on {listen!r}: expected host:port")
    return host, int(port)


def member_name(data_dir: str) -> str:
    """The member name MemberList shows: the data directory's name."""
    return os.path.basename(os.path.normpath(os.path.abspath(data_dir))) or "kubeplane"


async def serve(
    listen: str,
    data_dir: str,
    quota_bytes: int = 2 * 1024**3,
    auto_compaction_mode: str = "periodic",
    auto_compaction_retention: str = "0",
    progress_notify_interval: float = 600.0,
    *,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    listen_metrics: str | None = None,
) -> None:
    """Open the embedded store in ``data_dir`` and serve it on ``listen`` until
    SIGTERM or SIGINT; then stop serving and close the store (everything that was
    acknowledged is durable).  Prints one line with the bound address once serving.

    ``listen_metrics`` (etcd's ``--listen-metrics-urls``: comma-separated URLs such as
    ``http://127.0.0.1:2381``) also serves ``GET /metrics`` (etcd's metric names,
    ``kubeplane.store.metrics``) and ``GET /health`` over plain HTTP on each."""
    from ..metrics import default_registry_for, serve_metrics, store_health
    from ..mvcc import EmbeddedStore

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        store = EmbeddedStore(
            data_dir,
            quota_bytes=quota_bytes,
            max_request_bytes=max_request_bytes,
            auto_compaction_mode=auto_compaction_mode,
            auto_compaction_retention=auto_compaction_retention,
            progress_notify_interval=progress_notify_interval,
        )
        await store.start()
        try:
            server = EtcdServer(
                store,
                name=member_name(data_dir),
                max_request_bytes=max_request_bytes,
                quota_bytes=quota_bytes,
            )
            await server.start(listen)
            metrics_servers: list[asyncio.AbstractServer] = []
            try:
                urls = [u.strip() for u in (listen_metrics or "").split(",") if u.strip()]
                if urls:
                    registry, health = default_registry_for(store), store_health(store)
                    for url in urls:
                        metrics_servers.append(await serve_metrics(url, registry, health))
                print(
                    f"kubeplane store: serving etcd v3 API on {server.endpoint} "
                    f"(data dir {data_dir}, {type(asyncio.get_running_loop()).__module__.split('.')[0]} loop)",
                    flush=True,
                )
                for ms in metrics_servers:
                    host, port = ms.sockets[0].getsockname()[:2]
                    print(f"kubeplane store: serving /metrics and /health on http://{host}:{port}", flush=True)
                log.info("serving %s on %s", data_dir, server.endpoint)
                await stop.wait()
                log.info("shutting down")
            finally:
                for ms in metrics_servers:
                    ms.close()
                await server.stop()
        finally:
            await store.close()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    print("kubeplane store: stopped", file=sys.stderr, flush=True)
