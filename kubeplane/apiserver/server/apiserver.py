"""Assemble and run the API server: store, registry, REST handlers, HTTP listeners.

`APIServer` is what `kubeplane serve` runs and what tests start in process. It also runs
the two pieces of upstream's controller-manager that the API's own semantics need:
namespace deletion (a terminating namespace's contents are deleted, then the namespace)
and CRD cleanup (deleting a CRD deletes its objects).
"""
from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import orjson

from ...datadir import StartupError, listen_error
from ...store.errors import StoreUnavailableError
from ...store.interface import Store
from ..machinery import errors
from .app import App, status_body
from ..registry.strategy_kinds import SYSTEM_PRIORITY_CLASSES
from .authn import Authenticator, read_token_file
from .filters import Admission
from .health import HealthChecks, all_set
from .metrics import APIServerMetrics
from ..cache.manager import CacheManager, parse_sizes
from ..endpoints.handlers import RESTHandlers, Route, now_rfc3339
from ..transport.http import HTTPServer, Limits
from ..registry.registry import Registry
from ..registry.storage import ObjectStore, decode, key_of

log = logging.getLogger("kubeplane.apiserver")

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass
class ServerConfig:
    data_dir: str = "data"
    etcd_servers: list[str] = field(default_factory=list)
    bind_address: str = "127.0.0.1"
    secure_port: int = 6443            # 0: pick a free port; -1: no HTTPS listener
    http_listen: str | None = None     # "127.0.0.1:8080": plain HTTP without auth (tests)
    kubeconfig: str | None = None      # default: <data_dir>/kubeconfig
    max_body: int = 3 * 1024 * 1024
    watch_cache: bool = True           # --watch-cache
    watch_cache_sizes: str = ""        # --watch-cache-sizes pods#0,...
    enable_priority_and_fairness: bool = True
    max_requests_inflight: int = 400
    max_mutating_requests_inflight: int = 200
    request_timeout: float = 60.0      # seconds, non-long-running requests
    min_request_timeout: float = 1800.0  # seconds; a watch's default timeout is random in [min, 2*min]
    token_auth_file: str | None = None
    metrics: bool = True               # --enable-metrics=false: no /metrics, nothing recorded (A/B benchmarks)
    read_header_timeout: float = 32.0  # seconds for a request's head (and a TLS handshake); 0: none
    idle_timeout: float = 90.0         # seconds a keep-alive connection may wait for its next request
    write_stall_timeout: float = 60.0  # seconds a client may leave a full write buffer unread
    store_options: dict[str, Any] = field(default_factory=dict)


class APIServer:
    def __init__(self, config: ServerConfig, store: Store | None = None):
        self.config = config
        self._own_store = store is None
        self.store = store
        self.registry = Registry()
        self.http = None
        self.secure_port = 0
        self.http_port = 0
        self.pki = None
        self.kubeconfig_path: str | None = None
        self.lock = None  # the data dir's DirLock, held while a server that owns its store runs

    def _make_store(self) -> Store:
        if self.config.etcd_servers:
            from ...store.etcd import EtcdStore

            return EtcdStore(self.config.etcd_servers)
        from ...store.mvcc import EmbeddedStore

        return EmbeddedStore(os.path.join(self.config.data_dir, "store"), **self.config.store_options)

    async def start(self) -> None:
        cfg = self.config
        if self._own_store:
            # One server per data dir (its store, PKI and kubeconfig), and a private dir,
            # before anything in it is read or written (kubeplane.datadir).
            from ...datadir import LOCK_NAME, DirLock, tighten

            self.lock = DirLock(cfg.data_dir).acquire()
            tighten(cfg.data_dir, ("store", "pki", "kubeconfig", LOCK_NAME))
        if self.store is None:
            self.store = self._make_store()
        try:
            await self.store.start()
            await self.store.current_revision()
        except StoreUnavailableError as exc:
            if not cfg.etcd_servers:
                raise
            raise StartupError(f"cannot reach etcd at {','.join(cfg.etcd_servers)} (--etcd-servers): "
                               f"{str(exc).removeprefix('etcdserver: ')}; start etcd or fix --etcd-servers") from None
        self.metrics = APIServerMetrics()
        self.objects = ObjectStore(self.store, registry=self.metrics.registry if cfg.metrics else None)
        self.handlers = RESTHandlers(self.objects, self.registry)
        self.handlers.namespace_deleter = self._delete_namespace_contents
        self.handlers.crd_deleter = self._delete_crd_objects
        await self._load_crds()
        await self._bootstrap()
        self.caches = CacheManager(self.store, parse_sizes(cfg.watch_cache_sizes), enabled=cfg.watch_cache)
        self.handlers.caches = self.caches
        cachers = [c for c in (self.caches.cacher(info) for info in self.registry.resources()) if c is not None]
        # serve only once every cache holds its state (upstream's readyz waits for the caches too)
        await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in cachers)), 300)
        self.handlers.min_request_timeout = cfg.min_request_timeout
        # metrics, flow control
        if cfg.metrics:
            self.handlers.metrics = self.metrics
        collector = self.store.metrics_collector() if hasattr(self.store, "metrics_collector") else None
        if collector is not None:
            self.metrics.registry.register(collector)
        from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

        for c in (ProcessCollector, PlatformCollector, GCCollector):
            c(registry=self.metrics.registry)
        self.flow = None
        self.apf = None
        if cfg.enable_priority_and_fairness:
            from .apf_config import APFConfig
            from ..flowcontrol import FlowController

            self.flow = FlowController(cfg.max_requests_inflight + cfg.max_mutating_requests_inflight,
                                       registry=self.metrics.registry)
            self.apf = APFConfig(self, self.flow)
            await self.apf.ensure()
            await self.apf.apply_now()
            self.apf.start()
        self.admission = Admission(self.flow, cfg.max_requests_inflight, cfg.max_mutating_requests_inflight,
                                   cfg.request_timeout, count_objects=self._count_objects)
        self.metrics.inflight = lambda: self.admission.published
        self.metrics.caches = lambda: [c for c in list(self.caches.cachers.values()) if c.ready.is_set()]
        self.metrics.object_counts = self._object_counts
        self.health = HealthChecks()
        self.health.add("etcd", self.store.current_revision)
        self.health.add("etcd-readiness", self.store.current_revision, endpoints=("readyz",))
        self.health.add("informer-sync", all_set({c.info.qualified: c.ready for c in cachers}),
                        endpoints=("readyz",))
        if self.apf is not None:
            self.health.add_poststarthook("priority-and-fairness-config-consumer")()
            self.health.add_poststarthook("priority-and-fairness-filter")()
        self.health.add_poststarthook("storage-object-count-tracker-hook")()
        self.health.add_poststarthook("start-apiextensions-controllers")()
        bootstrap_done = self.health.add_poststarthook("bootstrap-controller")
        tokens = read_token_file(cfg.token_auth_file) if cfg.token_auth_file else {}
        token = None
        if cfg.secure_port >= 0:
            from ..transport.certs import ensure_pki, write_kubeconfig

            self.pki = ensure_pki(os.path.join(cfg.data_dir, "pki"), [cfg.bind_address])
            token = self.pki.token
        # service account tokens (serviceaccounts/token): signed with a key kept in the data dir
        from ..transport.satoken import TokenSigner

        self.handlers.token_signer = TokenSigner.load_or_create(os.path.join(cfg.data_dir, "pki"))
        self.metrics.before_scrape = self.objects.refresh_storage_size
        app = App(self.handlers, self.registry, token, health=self.health,
                  authn=Authenticator(token, tokens, sa_tokens=self.handlers.token_signer, sa_uid=self._sa_uid),
                  admission=self.admission, metrics=self.handlers.metrics)
        self.app = app
        if self.pki is not None:       # the identity kubelets see (pods/log, exec, nodes/proxy, ...)
            app.connect.use_client_certificate(self.pki.kubelet_client_cert, self.pki.kubelet_client_key)
        limits = Limits(header_timeout=cfg.read_header_timeout, idle_timeout=cfg.idle_timeout,
                        body_timeout=cfg.request_timeout, write_stall_timeout=cfg.write_stall_timeout)
        self.http = HTTPServer(app, status_body, max_body=cfg.max_body, limits=limits)
        # Plain HTTP (tests and benchmarks): loopback only, no authentication.
        self.http_plain = None
        if cfg.http_listen:
            host, _, port = cfg.http_listen.rpartition(":")
            host = host.strip("[]") or "127.0.0.1"
            if host not in ("127.0.0.1", "::1", "localhost"):
                raise StartupError(f"--http-listen {cfg.http_listen}: plain HTTP serves without authentication "
                                   "and is limited to loopback; use 127.0.0.1:PORT")
            if not port.isdigit() or int(port) > 65535:
                raise StartupError(f"--http-listen {cfg.http_listen}: expected HOST:PORT, e.g. 127.0.0.1:8080")
            plain_app = App(self.handlers, self.registry, None, health=self.health,
                            authn=Authenticator(None, unsecured=True), admission=self.admission,
                            metrics=self.handlers.metrics)
            if self.pki is not None:
                plain_app.connect.tls = app.connect.tls
            self.http_plain = HTTPServer(plain_app, status_body, max_body=cfg.max_body, limits=limits)
            try:
                self.http_port = await self.http_plain.listen(host, int(port))
            except OSError as exc:
                raise listen_error(cfg.http_listen, "--http-listen", exc) from None
        if cfg.secure_port >= 0:
            try:
                self.secure_port = await self.http.listen(cfg.bind_address, cfg.secure_port,
                                                          ssl_context=self.pki.ssl_context())
            except (OSError, OverflowError) as exc:
                raise listen_error(f"{cfg.bind_address}:{cfg.secure_port}", "--bind-address/--secure-port",
                                   exc) from None
            host = cfg.bind_address if ":" not in cfg.bind_address else f"[{cfg.bind_address}]"
            self.kubeconfig_path = cfg.kubeconfig or os.path.join(cfg.data_dir, "kubeconfig")
            write_kubeconfig(self.kubeconfig_path, f"https://{host}:{self.secure_port}", self.pki)
        if self.secure_port:
            await self._bootstrap_kubernetes_service()
        bootstrap_done()
        # resume deletions that were in flight when the server stopped
        await self._resume_terminating()

    def _count_objects(self, ri) -> int | None:
        """Objects the watch cache holds for a request's resource (flow control's seats)."""
        info = self.registry.get(ri.api_group, ri.api_version, ri.resource)
        c = self.caches.cacher(info) if info is not None else None
        return len(c.items) if c is not None and c.ready.is_set() else None

    def _object_counts(self) -> list[tuple[str, str, int]]:
        return [(c.info.group, c.info.plural, len(c.items)) for c in list(self.caches.cachers.values())
                if c.ready.is_set()]

    async def close(self) -> None:
        if getattr(self, "health", None) is not None:
            self.health.set_shutting_down()
        for srv in (self.http, getattr(self, "http_plain", None)):
            if srv is not None:
                await srv.close()
        if getattr(self, "apf", None) is not None:
            await self.apf.stop()
        if getattr(self, "admission", None) is not None:
            self.admission.close()
        for t in list(getattr(self, "handlers", None).background if getattr(self, "handlers", None) else []):
            t.cancel()
        if getattr(self, "caches", None) is not None:
            await self.caches.stop()
        if self.store is not None and self._own_store:
            await self.store.close()
        if self.lock is not None:
            self.lock.release()

    async def __aenter__(self) -> "APIServer":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def _sa_uid(self, namespace: str, name: str) -> str | None:
        """A service account's uid from the watch cache ("" when it does not exist), None
        when the cache cannot tell (disabled, or not synced yet)."""
        info = self.registry.get("", "v1", "serviceaccounts")
        cacher = self.caches.cacher(info) if info is not None and self.caches is not None else None
        if cacher is None or not cacher.ready.is_set():
            return None
        entry = cacher.get(key_of(info, namespace, name))
        if entry is None:
            return ""
        return str((orjson.loads(entry.raw).get("metadata") or {}).get("uid") or "")

    # --- bootstrap ------------------------------------------------------------------------
    async def _bootstrap(self) -> None:
        for name in SYSTEM_NAMESPACES:
            await self._ensure("", "namespaces", None, {"apiVersion": "v1", "kind": "Namespace",
                                                         "metadata": {"name": name}})
        # the built-in PriorityClasses, as upstream's scheduling post-start hook creates them
        for name, (value, description) in SYSTEM_PRIORITY_CLASSES.items():
            await self._ensure("scheduling.k8s.io", "priorityclasses", None, {
                "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
                "value": value, "description": description})

    async def _ensure(self, group: str, plural: str, namespace: str | None, obj: dict[str, Any],
                      replace: bool = False) -> None:
        """Create `obj` unless it exists; with `replace`, also overwrite one that differs in
        the fields `obj` sets (used for the endpoints of the `kubernetes` service)."""
        info = self.registry.get(group, "v1", plural)
        kv = await self.objects.get_kv(key_of(info, namespace, obj["metadata"]["name"]))
        if kv is not None:
            if not replace:
                return
            cur = decode(kv)
            if all(cur.get(k) == v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind")):
                return
            await self.handlers.guaranteed_update(
                info, Route(info, namespace, obj["metadata"]["name"], None),
                lambda c: {**c, **{k: v for k, v in obj.items() if k != "metadata"}},
                "kube-apiserver", False, precondition=None, op="Update")
            return
        new = await self.handlers.prepare_create(info, namespace, obj, "kube-apiserver")
        try:
            await self.handlers.store_create(info, new, False)
        except errors.APIError as e:
            if e.reason != "AlreadyExists":
                raise

    async def _bootstrap_kubernetes_service(self) -> None:
        """The `kubernetes` service in `default` and its endpoints, as every cluster has
        (in-cluster clients find the API server through them): ClusterIP 10.96.0.1:443,
        pointing at this server's HTTPS address."""
        ip = self.config.bind_address if self.config.bind_address not in ("0.0.0.0", "::") else "127.0.0.1"
        labels = {"component": "apiserver", "provider": "kubernetes"}
        await self._ensure("", "services", "default", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes", "labels": labels},
            "spec": {"clusterIP": "10.96.0.1", "type": "ClusterIP", "sessionAffinity": "None",
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": self.secure_port}]}})
        await self._ensure("", "endpoints", "default", {
            "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "kubernetes", "labels": labels},
            "subsets": [{"addresses": [{"ip": ip}],
                         "ports": [{"name": "https", "port": self.secure_port, "protocol": "TCP"}]}]},
            replace=True)

    async def _load_crds(self) -> None:
        info = self.registry.get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        kvs, _, _, _ = await self.objects.list(info, None)
        for kv in kvs:
            try:
                self.registry.set_crd(decode(kv))
            except Exception:
                log.exception("cannot serve CRD %s", kv.key)

    async def _resume_terminating(self) -> None:
        for plural, group, fn in (("namespaces", "", self._delete_namespace_contents),
                                  ("customresourcedefinitions", "apiextensions.k8s.io", None)):
            info = self.registry.get(group, "v1", plural)
            kvs, _, _, _ = await self.objects.list(info, None)
            for kv in kvs:
                obj = decode(kv)
                if obj["metadata"].get("deletionTimestamp"):
                    if fn is not None:
                        self.handlers.spawn(fn(obj["metadata"]["name"]))
                    else:
                        self.handlers.spawn(self._delete_crd_objects(obj))

    # --- namespace deletion ---------------------------------------------------------------
    async def _delete_namespace_contents(self, namespace: str) -> None:
        """Delete everything in a terminating namespace, then drop the `kubernetes`
        finalizer so the namespace itself goes (upstream's namespace controller)."""
        try:
            for _ in range(600):
                left = 0
                seen = set()
                for info in self.registry.resources():
                    if not info.namespaced or info.key_prefix in seen:
                        continue
                    seen.add(info.key_prefix)
                    kvs, _, _, _ = await self.objects.list(info, namespace)
                    for kv in kvs:
                        left += 1
                        obj = decode(kv)
                        if obj["metadata"].get("deletionTimestamp"):
                            # waiting on finalizers or a kubelet; pods are then removed outright
                            if info.plural == "pods" and info.group == "" and not obj["metadata"].get("finalizers"):
                                try:
                                    await self.handlers.delete_one(info, namespace, obj["metadata"]["name"],
                                                                   {"gracePeriodSeconds": 0})
                                except errors.APIError:
                                    pass
                            continue
                        try:
                            await self.handlers.delete_one(info, namespace, obj["metadata"]["name"],
                                                           {"propagationPolicy": "Background"})
                        except errors.APIError:
                            pass
                if left == 0:
                    break
                await asyncio.sleep(0.5)
            await self._drop_finalizer("", "namespaces", namespace, "kubernetes", "namespace-controller")
        except errors.APIError as e:
            if e.code != 404:
                log.warning("namespace %s deletion: %s", namespace, e.message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("namespace %s deletion failed", namespace)

    async def _drop_finalizer(self, group: str, plural: str, name: str, finalizer: str, manager: str) -> None:
        """Remove one finalizer from a cluster-scoped object (a namespace's also from
        spec.finalizers, through /finalize); the object goes once none is left."""
        info = self.registry.get(group, "v1", plural)
        sub = "finalize" if plural == "namespaces" else None

        def drop(cur: dict[str, Any]) -> dict[str, Any]:
            if sub == "finalize":
                spec = cur.setdefault("spec", {})
                spec["finalizers"] = [f for f in spec.get("finalizers") or [] if f != finalizer]
            cur["metadata"]["finalizers"] = [f for f in cur["metadata"].get("finalizers") or [] if f != finalizer]
            return cur

        await self.handlers.guaranteed_update(info, Route(info, None, name, sub), drop, manager, False,
                                              precondition=None, op="Update")

    # --- CRD deletion ---------------------------------------------------------------------
    async def _delete_crd_objects(self, crd: dict[str, Any]) -> None:
        name = crd["metadata"]["name"]
        try:
            infos = self.registry.crd_resources(name)
            if infos:
                prefix = infos[0].key_prefix.encode()
                await self.objects.delete_prefix(prefix)
            await self._drop_finalizer("apiextensions.k8s.io", "customresourcedefinitions", name,
                                       "customresourcecleanup.apiextensions.k8s.io", "apiextensions-controller")
        except errors.APIError as e:
            if e.code != 404:
                log.warning("CRD %s cleanup: %s", name, e.message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("CRD %s cleanup failed", name)


def tune_gc() -> None:
    """The API server allocates many short-lived acyclic objects (decoded JSON); with the
    default thresholds the cyclic collector runs every 700 allocations and costs about a
    quarter of a create or patch (py-spy, `python -m bench api`). Collect the young
    generation every 100,000 allocations instead, and freeze what start-up created."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)


async def serve_forever(config: ServerConfig) -> None:
    import signal

    server = APIServer(config)
    try:
        await server.start()
    except BaseException:
        # a failed start still closes what it opened: the store flushes, the lock goes
        await server.close()
        raise
    tune_gc()
    if server.http_port:
        print(f"kubeplane: plain HTTP (no auth) on port {server.http_port}", flush=True)
    if server.kubeconfig_path:
        print(f"kubeplane: serving https://{config.bind_address}:{server.secure_port}", flush=True)
        print(f"export KUBECONFIG={os.path.abspath(server.kubeconfig_path)}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.close()


_ = (orjson, now_rfc3339)
