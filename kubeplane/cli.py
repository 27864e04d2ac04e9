"""The ``kubeplane`` command."""

from __future__ import annotations

import argparse
import asyncio
import sys

from .runtime import raise_open_file_limit, run


class _Parser(argparse.ArgumentParser):
    """A bad flag is one line, as every other start-up failure (argparse would print the
    whole usage first)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _int_in(low: int, high: int | None = None):
    def parse(text: str) -> int:
        value = int(text)
        if value < low or (high is not None and value > high):
            raise ValueError(text)
        return value

    parse.__name__ = (f"port ({low}-{high})" if high == 65535 else f"integer ({low}-{high})" if high is not None
                      else "positive integer" if low == 1 else f"integer (at least {low})")
    return parse


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


_positive_float.__name__ = "positive number"


def _check_retention(command: str, args: argparse.Namespace) -> None:
    from .store.mvcc.store import parse_retention

    try:
        parse_retention(args.auto_compaction_mode, args.auto_compaction_retention)
    except ValueError:
        want = "a number of revisions" if args.auto_compaction_mode == "revision" else "a duration like 5m or 1h"
        raise SystemExit(f"kubeplane {command}: --auto-compaction-retention {args.auto_compaction_retention!r}: "
                          f"expected {want}") from None


def _startup_failure(command: str, exc: BaseException, verbose: int) -> int:
    """Print one line for a failed start (what, where, what to do) and return the exit
    status; the traceback only at -v=2 and above (upstream's klog keeps it for V(2))."""
    from .datadir import StartupError
    from .store.errors import CorruptionError, StoreError

    text = str(exc).removeprefix("kubeplane: ") or type(exc).__name__
    if isinstance(exc, StartupError):
        line = text
    elif isinstance(exc, CorruptionError):
        line = (f"{text}; the data dir is damaged: restore a backup into a new dir with `kubeplane restore`, "
                "or move it away to start empty")
    elif isinstance(exc, PermissionError):
        line = f"{exc.filename or ''}: {exc.strerror}; check the owner and permissions of the data dir"
    elif isinstance(exc, (OSError, StoreError, ValueError)):
        line = text
    else:
        line = f"unexpected error: {type(exc).__name__}: {text} (run with -v=2 for the traceback)"
    print(f"kubeplane {command}: {line}", file=sys.stderr, flush=True)
    if verbose >= 2:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    return 1


def _private_files() -> None:
    """Whatever a server creates is for its user only (dirs 0700, files 0600), whichever
    code creates it; kubeplane.datadir also sets these modes explicitly."""
    import os

    os.umask(0o077)


def _store_serve(args: argparse.Namespace) -> int:
    from .store.grpc_server import serve

    _private_files()
    _check_retention("store serve", args)
    raise_open_file_limit()
    try:
        run(
            serve(
                listen=args.listen,
                data_dir=args.data_dir,
                quota_bytes=args.quota_backend_bytes,
                auto_compaction_mode=args.auto_compaction_mode,
                auto_compaction_retention=args.auto_compaction_retention,
                progress_notify_interval=args.watch_progress_notify_interval,
                max_request_bytes=args.max_request_bytes,
                listen_metrics=args.listen_metrics_urls or None,
            )
        )
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # noqa: BLE001 - every start-up failure is one line
        return _startup_failure("store serve", exc, args.verbose or 0)
    return 0


def _add_store_serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="127.0.0.1:2379", help="host:port (default %(default)s)")
    parser.add_argument("--data-dir", default="data/store", help="directory for WAL and snapshots")
    parser.add_argument(
        "--quota-backend-bytes", type=_int_in(1), default=2 * 1024**3, help="NOSPACE above this many bytes"
    )
    parser.add_argument(
        "--max-request-bytes", type=_int_in(1), default=1572864, help="largest accepted request (default %(default)s)"
    )
    parser.add_argument("--listen-metrics-urls", default="", metavar="URL",
                        help="also serve /metrics and /health over plain HTTP here, e.g. http://127.0.0.1:2381")
    parser.add_argument("--auto-compaction-mode", choices=("periodic", "revision"), default="periodic")
    parser.add_argument(
        "--auto-compaction-retention",
        default="0",
        help="periodic: a duration like 5m or 1h (0 = off); revision: revisions to keep",
    )
    parser.add_argument(
        "--watch-progress-notify-interval",
        type=_positive_float,
        default=600.0,
        metavar="SECONDS",
        help="progress notifications for idle watches that asked for them (default %(default)s)",
    )


def _add_apiserver_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default="data",
                        help="store (data-dir/store), PKI and kubeconfig live here (default %(default)s)")
    parser.add_argument("--etcd-servers", default="",
                        help="comma-separated etcd endpoints; when set, run on that etcd instead of the embedded store")
    parser.add_argument("--bind-address", default="127.0.0.1", help="HTTPS address (default %(default)s)")
    parser.add_argument("--secure-port", type=_int_in(0, 65535), default=6443, help="HTTPS port (default %(default)s; 0: any free)")
    parser.add_argument("--http-listen", default=None, metavar="HOST:PORT",
                        help="also serve plain HTTP without authentication, loopback only (tests, benchmarks)")
    parser.add_argument("--kubeconfig", default=None,
                        help="where to write the admin kubeconfig (default DATA_DIR/kubeconfig)")
    parser.add_argument("--max-request-body-bytes", type=_int_in(1), default=3 * 1024 * 1024)
    parser.add_argument("--http-read-header-timeout", type=_positive_float, default=32.0, metavar="SECONDS",
                        help="a request's head, and a TLS handshake, must arrive within this (default %(default)s)")
    parser.add_argument("--http-idle-timeout", type=_positive_float, default=90.0, metavar="SECONDS",
                        help="close keep-alive connections idle this long (default %(default)s)")
    parser.add_argument("--http-write-stall-timeout", type=_positive_float, default=60.0, metavar="SECONDS",
                        help="abort a connection whose client reads nothing of a full write buffer "
                             "this long (default %(default)s)")
    parser.add_argument("--quota-backend-bytes", type=_int_in(1), default=2 * 1024**3)
    parser.add_argument("--auto-compaction-mode", choices=("periodic", "revision"), default="periodic")
    parser.add_argument("--auto-compaction-retention", default="5m",
                        help="embedded store compaction (default %(default)s, as kube-apiserver compacts every 5m)")
    parser.add_argument("--watch-progress-notify-interval", type=_positive_float, default=5.0, metavar="SECONDS")
    parser.add_argument("--watch-cache", default="true", choices=("true", "false"),
                        help="serve reads and watches from per-resource watch caches (default %(default)s)")
    parser.add_argument("--watch-cache-sizes", default="", metavar="RESOURCE#SIZE,...",
                        help="per-resource event buffer caps; RESOURCE#0 disables that resource's cache")
    parser.add_argument("--enable-priority-and-fairness", default="true", choices=("true", "false"),
                        help="API Priority and Fairness (default %(default)s); false: the max-inflight limits")
    parser.add_argument("--max-requests-inflight", type=int, default=400,
                        help="read-only requests at once (with APF: part of the total seats) (default %(default)s)")
    parser.add_argument("--max-mutating-requests-inflight", type=int, default=200,
                        help="mutating requests at once (with APF: part of the total seats) (default %(default)s)")
    parser.add_argument("--request-timeout", default="60s", metavar="DURATION",
                        help="deadline of non-long-running requests, e.g. 60s or 1m0s (default %(default)s)")
    parser.add_argument("--min-request-timeout", type=int, default=1800, metavar="SECONDS",
                        help="a watch's default timeout is random in [this, 2x this] (default %(default)s)")
    parser.add_argument("--token-auth-file", default=None, metavar="FILE",
                        help="static bearer tokens, upstream's CSV format: token,user,uid[,\"group1,group2\"]")
    parser.add_argument("--enable-metrics", default="true", choices=("true", "false"),
                        help="serve /metrics and record them (default %(default)s; false only for A/B benchmarks)")
    parser.add_argument("--logging-format", default="text", choices=("text", "json"),
                        help="log format (default %(default)s)")
    parser.add_argument("-v", action="count", dest="verbose", default=argparse.SUPPRESS,
                        help="more logs (-vvv: one line per request)")
    parser.add_argument("--v", type=int, dest="verbose", default=argparse.SUPPRESS,
                        help="klog verbosity (2: more, 3: one line per request)")


def _add_serve_scheduler_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scheduler", default="true", choices=("true", "false"),
                        help="run the scheduler in a child process, over loopback HTTPS as "
                             "system:kube-scheduler (default %(default)s)")
    parser.add_argument("--scheduler-metrics-bind-address", default="127.0.0.1:10259", metavar="HOST:PORT",
                        help="the scheduler's /metrics (default %(default)s; 0 = off)")
    parser.add_argument("--scheduler-kube-api-qps", type=_positive_float, default=50.0,
                        help="the scheduler's client QPS (default %(default)s)")
    parser.add_argument("--scheduler-kube-api-burst", type=_int_in(1), default=100,
                        help="the scheduler's client burst (default %(default)s)")


def _add_serve_controller_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--controller-manager", default="true", choices=("true", "false"),
                        help="run the controller manager in a child process, over loopback HTTPS as "
                             "system:kube-controller-manager (default %(default)s)")
    parser.add_argument("--controllers", default="*", metavar="LIST",
                        help="the controller manager's --controllers: '*' (all), 'name' on, '-name' off; "
                             "'false' = no controller manager (default %(default)s)")
    parser.add_argument("--controller-manager-bind-address", default="127.0.0.1:10257", metavar="HOST:PORT",
                        help="the controller manager's /metrics and /healthz (default %(default)s; 0 = off)")


def _add_controller_manager_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", default=None,
                        help="the API server and credentials (default $KUBECONFIG, else ~/.kube/config)")
    parser.add_argument("--context", default=None, help="kubeconfig context (default: its current-context)")
    parser.add_argument("--controllers", default="*", metavar="LIST",
                        help="'*' = every controller on by default, 'name' turns one on, '-name' one off "
                             "(default %(default)s)")
    parser.add_argument("--kube-api-qps", type=_positive_float, default=20.0,
                        help="client requests per second (default %(default)s, as kube-controller-manager)")
    parser.add_argument("--kube-api-burst", type=_int_in(1), default=30, help="client burst (default %(default)s)")
    parser.add_argument("--bind-address", default="127.0.0.1:10257", metavar="HOST:PORT",
                        help="serve /metrics and /healthz here over HTTP (default %(default)s; 0 = off)")
    parser.add_argument("--leader-elect", default="true", choices=("true", "false"),
                        help="run the controllers only while holding the Lease (default %(default)s)")
    parser.add_argument("--leader-elect-resource-namespace", default="kube-system")
    parser.add_argument("--leader-elect-resource-name", default="kube-controller-manager")
    parser.add_argument("--leader-elect-lease-duration", type=_positive_float, default=15.0, metavar="SECONDS")
    parser.add_argument("--leader-elect-renew-deadline", type=_positive_float, default=10.0, metavar="SECONDS")
    parser.add_argument("--leader-elect-retry-period", type=_positive_float, default=2.0, metavar="SECONDS")
    parser.add_argument("--root-ca-file", default=None,
                        help="the CA published as kube-root-ca.crt (default: the kubeconfig's CA)")
    parser.add_argument("--concurrent-deployment-syncs", type=_int_in(1), default=5)
    parser.add_argument("--node-monitor-grace-period", default="50s", metavar="DURATION",
                        help="a node not heard from for this long is Ready=Unknown (default %(default)s)")
    parser.add_argument("--node-monitor-period", default="5s", metavar="DURATION")
    parser.add_argument("--node-eviction-rate", type=float, default=0.1, help="nodes per second per zone")
    parser.add_argument("--secondary-node-eviction-rate", type=float, default=0.01)
    parser.add_argument("--unhealthy-zone-threshold", type=float, default=0.55)
    parser.add_argument("--large-cluster-size-threshold", type=_int_in(0), default=50)
    parser.add_argument("--terminated-pod-gc-threshold", type=_int_in(0), default=12500,
                        help="terminated pods kept before the pod GC deletes the oldest (0 = off; default %(default)s)")
    parser.add_argument("--pod-gc-orphan-quarantine-seconds", type=_positive_float, default=40.0,
                        help="kubeplane's: how long a node must be missing before the pod GC deletes its pods "
                             "(upstream's fixed 40 s; default %(default)s)")
    parser.add_argument("--concurrent-replicaset-syncs", type=_int_in(1), default=5)
    parser.add_argument("--concurrent-rc-syncs", type=_int_in(1), default=5)
    parser.add_argument("--concurrent-serviceaccount-token-syncs", type=_int_in(1), default=5,
                        help="workers of the serviceaccount controller")


def _controller_manager(args: argparse.Namespace) -> int:
    from .controllers.manager import Options, OptionError, enabled_controllers, main as cm_main

    try:
        enabled_controllers(args.controllers)
    except OptionError as exc:
        print(f"kubeplane controller-manager: --controllers: {exc}", file=sys.stderr)
        return 2
    opts = Options(kubeconfig=args.kubeconfig, context=args.context, controllers=args.controllers,
                   qps=args.kube_api_qps, burst=args.kube_api_burst, bind_address=args.bind_address,
                   leader_elect=args.leader_elect == "true", lease_namespace=args.leader_elect_resource_namespace,
                   lease_name=args.leader_elect_resource_name, lease_duration=args.leader_elect_lease_duration,
                   renew_deadline=args.leader_elect_renew_deadline, retry_period=args.leader_elect_retry_period,
                   root_ca_file=args.root_ca_file, terminated_pod_gc_threshold=args.terminated_pod_gc_threshold,
                   pod_gc_orphan_quarantine=args.pod_gc_orphan_quarantine_seconds,
                   node_monitor_grace_period=_duration(args.node_monitor_grace_period, "--node-monitor-grace-period"),
                   node_monitor_period=_duration(args.node_monitor_period, "--node-monitor-period"),
                   node_eviction_rate=args.node_eviction_rate,
                   secondary_node_eviction_rate=args.secondary_node_eviction_rate,
                   unhealthy_zone_threshold=args.unhealthy_zone_threshold,
                   large_cluster_size_threshold=args.large_cluster_size_threshold,
                   workers={"deployment": args.concurrent_deployment_syncs,
                            "replicaset": args.concurrent_replicaset_syncs,
                            "replicationcontroller": args.concurrent_rc_syncs,
                            "serviceaccount": args.concurrent_serviceaccount_token_syncs})
    try:
        return cm_main(opts)
    except Exception as exc:  # noqa: BLE001 - every start-up failure is one line
        return _startup_failure("controller-manager", exc, args.verbose or 0)


CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
SCHEDULER_USER = "system:kube-scheduler"
HOLLOW_USER = "kubeplane:hollow-nodes"


def _controllers_on(args: argparse.Namespace) -> bool:
    return args.controller_manager == "true" and args.controllers not in ("false", "")


def _add_serve_sim_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hollow-nodes", type=_int_in(0, 49152), default=3, metavar="N",
                        help="start N simulated (hollow) nodes (kubeplane sim nodes, a child process over "
                             "loopback HTTPS): pods bound to them report Running, no container runs; "
                             "0 = a bare control plane (default %(default)s)")
    parser.add_argument("--hollow-nodes-metrics-bind-address", default="127.0.0.1:10255", metavar="HOST:PORT",
                        help="the simulator's /metrics (default %(default)s; 0 = off)")


def _sim_nodes(args: argparse.Namespace) -> int:
    from .sim.nodes.main import main as sim_main
    from .sim.nodes.stages import StagesError

    raise_open_file_limit()       # a listener and a watch per node
    try:
        return sim_main(args)
    except (StagesError, ValueError, OSError) as exc:
        return _startup_failure("sim nodes", exc, args.verbose or 0)


def _add_scheduler_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", default=None,
                        help="the API server and credentials (default $KUBECONFIG, else ~/.kube/config)")
    parser.add_argument("--context", default=None, help="kubeconfig context (default: its current-context)")
    parser.add_argument("--kube-api-qps", type=_positive_float, default=50.0,
                        help="client requests per second (default %(default)s, as kube-scheduler)")
    parser.add_argument("--kube-api-burst", type=_int_in(1), default=100, help="client burst (default %(default)s)")
    parser.add_argument("--metrics-bind-address", default="127.0.0.1:10259", metavar="HOST:PORT",
                        help="serve /metrics and /healthz here over HTTP (default %(default)s; 0 = off)")
    parser.add_argument("--leader-elect", default="true", choices=("true", "false"),
                        help="schedule only while holding the Lease (default %(default)s)")
    parser.add_argument("--leader-elect-resource-namespace", default="kube-system")
    parser.add_argument("--leader-elect-resource-name", default="kube-scheduler")
    parser.add_argument("--percentage-of-nodes-to-score", type=_int_in(0, 100), default=0,
                        help="0 = adaptive as upstream: max(5, 50 - nodes/125) percent, at least 100 nodes")
    parser.add_argument("--parallel-binds", type=_int_in(1), default=64,
                        help="bindings in flight at once (default %(default)s)")
    parser.add_argument("--scheduler-name", default="default-scheduler",
                        help="schedule pods with this spec.schedulerName (default %(default)s)")
    parser.add_argument("--scheduled-events", default="true", choices=("true", "false"),
                        help="a Normal/Scheduled event per bound pod, as upstream (default %(default)s)")


def _scheduler(args: argparse.Namespace) -> int:
    from .scheduler.app import Options, main as scheduler_main

    opts = Options(kubeconfig=args.kubeconfig, context=args.context, qps=args.kube_api_qps,
                   burst=args.kube_api_burst, metrics_bind_address=args.metrics_bind_address,
                   leader_elect=args.leader_elect == "true", lease_namespace=args.leader_elect_resource_namespace,
                   lease_name=args.leader_elect_resource_name,
                   percentage_of_nodes_to_score=args.percentage_of_nodes_to_score,
                   parallel_binds=args.parallel_binds, scheduler_name=args.scheduler_name,
                   scheduled_events=args.scheduled_events == "true")
    try:
        return scheduler_main(opts)
    except Exception as exc:  # noqa: BLE001 - every start-up failure is one line
        return _startup_failure("scheduler", exc, args.verbose or 0)


async def _serve_with_scheduler(config, args: argparse.Namespace) -> None:
    """serve_forever, plus the child components (kubeplane.children: the scheduler, the
    controller manager, hollow nodes) once the server listens; they stop before the server closes."""
    import os
    import signal
    import tempfile

    from .apiserver.server.apiserver import APIServer, tune_gc
    from .apiserver.server.authn import read_token_file
    from . import children

    token = children.new_token()
    sim_token = children.new_token()
    cm_token = children.new_token()
    # the scheduler's identity: a token file of the user's lines plus the scheduler's,
    # in a private temporary dir, read once by the server's start
    tmpdir = tempfile.mkdtemp(prefix="kubeplane-tokens-")
    tokens = os.path.join(tmpdir, "tokens.csv")
    with open(tokens, "w") as f:
        if config.token_auth_file:
            read_token_file(config.token_auth_file)     # its own errors name its own path
            with open(config.token_auth_file) as user_file:
                text = user_file.read()
            f.write(text if text.endswith("\n") or not text else text + "\n")
        f.write(children.token_line(token, SCHEDULER_USER))
        # group system:nodes: flow control treats the simulator's Lease renewals as node heartbeats
        f.write(children.token_line(sim_token, HOLLOW_USER, ("system:nodes",)))
        f.write(children.token_line(cm_token, CONTROLLER_MANAGER_USER))
    config.token_auth_file = tokens
    server = APIServer(config)
    try:
        await server.start()
    except BaseException:
        await server.close()
        raise
    finally:
        os.unlink(tokens)
        os.rmdir(tmpdir)
    tune_gc()
    if server.http_port:
        print(f"kubeplane: plain HTTP (no auth) on port {server.http_port}", flush=True)
    child = sim_child = cm_child = None
    if server.kubeconfig_path:
        host = "127.0.0.1" if config.bind_address in ("0.0.0.0", "::", "127.0.0.1", "localhost") else \
            config.bind_address if ":" not in config.bind_address else f"[{config.bind_address}]"
        verbosity = [f"--v={args.verbose}"] if getattr(args, "verbose", 0) else []
        if args.scheduler == "true":
            kubeconfig = os.path.join(config.data_dir, "scheduler.kubeconfig")
            children.write_kubeconfig(kubeconfig, f"https://{host}:{server.secure_port}", server.pki.ca_pem(),
                                      token, SCHEDULER_USER, "kube-scheduler")
            argv = [sys.executable, "-m", "kubeplane.cli", *verbosity, "scheduler", "--kubeconfig", kubeconfig,
                    "--metrics-bind-address", args.scheduler_metrics_bind_address,
                    "--kube-api-qps", str(args.scheduler_kube_api_qps),
                    "--kube-api-burst", str(args.scheduler_kube_api_burst)]
            child = children.Supervisor(argv, "scheduler", f"kubeplane: scheduler running (pid {{pid}}, user "
                                        f"{SCHEDULER_USER}); --scheduler=false turns it off")
            child.start()
        if _controllers_on(args):
            from .controllers.manager import enabled_controllers

            enabled_controllers(args.controllers)              # a bad list fails the start, in one line
            cm_kubeconfig = os.path.join(config.data_dir, "controller-manager.kubeconfig")
            children.write_kubeconfig(cm_kubeconfig, f"https://{host}:{server.secure_port}", server.pki.ca_pem(),
                                      cm_token, CONTROLLER_MANAGER_USER, CONTROLLER_MANAGER_USER)
            cm_child = children.Supervisor(
                [sys.executable, "-m", "kubeplane.cli", *verbosity, "controller-manager", "--kubeconfig",
                 cm_kubeconfig, "--controllers", args.controllers,
                 "--bind-address", args.controller_manager_bind_address], what="controller manager")
            cm_child.start()
            print(f"kubeplane: controller manager starting (user {CONTROLLER_MANAGER_USER}, controllers "
                  f"{args.controllers}); --controller-manager=false turns it off", flush=True)
        if args.hollow_nodes:
            sim_kubeconfig = os.path.join(config.data_dir, "hollow-nodes.kubeconfig")
            children.write_kubeconfig(sim_kubeconfig, f"https://{host}:{server.secure_port}",
                                      server.pki.ca_pem(), sim_token, HOLLOW_USER, "hollow-nodes")
            sim_child = children.Supervisor(
                [sys.executable, "-m", "kubeplane.cli", *verbosity, "sim", "nodes", "--kubeconfig", sim_kubeconfig,
                 "--count", str(args.hollow_nodes), "--summary-interval", "0", "--progress", "never",
                 "--metrics-bind-address", args.hollow_nodes_metrics_bind_address], "hollow nodes")
            sim_child.start()
            print(f"kubeplane: {args.hollow_nodes} hollow nodes starting (simulated nodes: pods bound to them "
                  "report Running but no container runs; --hollow-nodes 0 turns them off)", flush=True)
        print(f"kubeplane: serving https://{config.bind_address}:{server.secure_port}", flush=True)
        print(f"export KUBECONFIG={os.path.abspath(server.kubeconfig_path)}", flush=True)
    else:
        print("kubeplane: no HTTPS port: the scheduler and hollow nodes do not run", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for c in (cm_child, sim_child, child):
            if c is not None:
                await c.stop()
        await server.close()


def _duration(text: str, flag: str) -> float:
    from .apiserver.server.filters import parse_go_duration

    try:
        return parse_go_duration(text) if not text.isdigit() else float(text)
    except ValueError:
        raise SystemExit(f"kubeplane serve: {flag}: invalid duration {text!r}") from None


def _apiserver_serve(args: argparse.Namespace) -> int:
    from .apiserver.server.apiserver import ServerConfig, serve_forever

    _private_files()
    _check_retention("serve", args)
    config = ServerConfig(
        data_dir=args.data_dir,
        etcd_servers=[s.strip() for s in args.etcd_servers.split(",") if s.strip()],
        bind_address=args.bind_address,
        secure_port=args.secure_port,
        http_listen=args.http_listen,
        kubeconfig=args.kubeconfig,
        max_body=args.max_request_body_bytes,
        watch_cache=args.watch_cache == "true",
        watch_cache_sizes=args.watch_cache_sizes,
        enable_priority_and_fairness=args.enable_priority_and_fairness == "true",
        max_requests_inflight=args.max_requests_inflight,
        max_mutating_requests_inflight=args.max_mutating_requests_inflight,
        request_timeout=_duration(args.request_timeout, "--request-timeout"),
        min_request_timeout=float(args.min_request_timeout),
        token_auth_file=args.token_auth_file,
        metrics=args.enable_metrics == "true",
        read_header_timeout=args.http_read_header_timeout,
        idle_timeout=args.http_idle_timeout,
        write_stall_timeout=args.http_write_stall_timeout,
        store_options=dict(
            quota_bytes=args.quota_backend_bytes,
            auto_compaction_mode=args.auto_compaction_mode,
            auto_compaction_retention=args.auto_compaction_retention,
            progress_notify_interval=args.watch_progress_notify_interval,
        ),
    )
    raise_open_file_limit()
    try:
        run(serve_forever(config) if args.scheduler == "false" and not args.hollow_nodes and not _controllers_on(args)
            else _serve_with_scheduler(config, args))
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # noqa: BLE001 - every start-up failure is one line
        return _startup_failure("serve", exc, args.verbose or 0)
    return 0


def _kubeconfig_target(path: str) -> tuple[str, str | None, bytes | None, bool]:
    """(server URL, bearer token, CA PEM, skip TLS verification) of a kubeconfig's current context."""
    import base64

    import yaml

    from .store.backup import BackupError

    try:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
        ctx = next(c["context"] for c in doc["contexts"] if c["name"] == doc["current-context"])
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
        user = next((u["user"] for u in doc.get("users") or [] if u["name"] == ctx.get("user")), {})
    except OSError as exc:
        raise BackupError(f"cannot read kubeconfig {path}: {exc.strerror or exc}; give --kubeconfig, "
                          "--server or --endpoints") from None
    except (KeyError, StopIteration, TypeError, yaml.YAMLError):
        raise BackupError(f"kubeconfig {path}: no usable current context") from None
    ca = None
    if cluster.get("certificate-authority-data"):
        ca = base64.b64decode(cluster["certificate-authority-data"])
    elif cluster.get("certificate-authority"):
        with open(cluster["certificate-authority"], "rb") as f:
            ca = f.read()
    return cluster["server"], user.get("token"), ca, bool(cluster.get("insecure-skip-tls-verify"))


def _backup(args: argparse.Namespace) -> int:
    import os

    from .store.backup import BackupError, backup_from_apiserver, backup_from_etcd_api

    _private_files()
    try:
        if args.endpoints:
            endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
            snap = run(backup_from_etcd_api(endpoints, args.output))
            source = ",".join(endpoints)
        else:
            if args.server:
                server, token, ca, insecure = args.server, args.token, None, False
                if args.certificate_authority:
                    try:
                        with open(args.certificate_authority, "rb") as f:
                            ca = f.read()
                    except OSError as exc:
                        raise BackupError(f"cannot read --certificate-authority {args.certificate_authority}: "
                                          f"{exc.strerror or exc}") from None
            else:
                path = args.kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "data/kubeconfig"
                server, token, ca, insecure = _kubeconfig_target(path)
                token = args.token or token
            snap = backup_from_apiserver(server, args.output, token=token, ca_pem=ca, insecure=insecure)
            source = server
    except BackupError as exc:
        print(f"kubeplane backup: {exc}", file=sys.stderr)
        return 1
    size = os.path.getsize(args.output)
    print(f"kubeplane backup: saved {args.output} ({size} bytes, revision {snap.revision}) from {source}")
    return 0


def _restore(args: argparse.Namespace) -> int:
    import os

    from .store.backup import BackupError, restore

    _private_files()
    store_dir = args.store_dir or os.path.join(args.data_dir, "store")
    if args.data_dir and os.path.isdir(args.data_dir) and os.listdir(args.data_dir):
        print(f"kubeplane restore: {args.data_dir} is not empty: restore into a new directory", file=sys.stderr)
        return 1
    try:
        r = restore(args.snapshot, store_dir, args.bump_revision)
    except BackupError as exc:
        print(f"kubeplane restore: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"kubeplane restore: cannot write {store_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    how = f"kubeplane serve --data-dir {args.data_dir}" if args.data_dir else \
        f"kubeplane store serve --data-dir {store_dir}"
    print(f"kubeplane restore: {r.keys} keys at revision {r.revision} restored into {store_dir}, "
          f"now at revision {r.new_revision} (compacted there); start it with: {how}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kubeplane", description=__doc__)
    parser.add_argument("-v", action="count", dest="verbose", default=0,
                        help="more logs (-vvv: one line per request)")
    parser.add_argument("--v", type=int, dest="verbose", help="klog verbosity (3: one line per request)")
    sub = parser.add_subparsers(dest="command", required=True)

    store = sub.add_parser("store", help="the embedded MVCC store")
    store_sub = store.add_subparsers(dest="store_command", required=True)
    serve = store_sub.add_parser("serve", help="serve the embedded store over etcd's v3 gRPC API")
    _add_store_serve_options(serve)
    serve.set_defaults(func=_store_serve)

    top_serve = sub.add_parser("serve", help="start the API server (HTTPS on 127.0.0.1:6443, embedded store)")
    _add_apiserver_options(top_serve)
    _add_serve_scheduler_options(top_serve)
    _add_serve_controller_options(top_serve)
    _add_serve_sim_options(top_serve)
    top_serve.set_defaults(func=_apiserver_serve)

    cm = sub.add_parser("controller-manager",
                        help="the controllers (Deployment, ReplicaSet, ...), against any Kubernetes API server "
                             "(--kubeconfig; docs/controllers.md)")
    _add_controller_manager_options(cm)
    cm.set_defaults(func=_controller_manager)

    sched = sub.add_parser("scheduler", help="the scheduler, against any Kubernetes API server (--kubeconfig)")
    _add_scheduler_options(sched)
    sched.set_defaults(func=_scheduler)

    sim = sub.add_parser("sim", help="simulators against any Kubernetes API server")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    sim_nodes = sim_sub.add_parser("nodes", help="hollow nodes: simulated nodes and kubelets (docs/sim.md)")
    from .sim.nodes.main import add_options as _add_sim_nodes_options

    _add_sim_nodes_options(sim_nodes)
    sim_nodes.set_defaults(func=_sim_nodes)

    backup = sub.add_parser("backup", help="save a consistent snapshot of a running server (writes go on)")
    backup.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write the snapshot")
    backup.add_argument("--kubeconfig", default=None,
                        help="kubeplane serve to back up (default $KUBECONFIG, else data/kubeconfig)")
    backup.add_argument("--server", default=None, metavar="URL",
                        help="kubeplane serve's URL instead of a kubeconfig (e.g. its --http-listen address)")
    backup.add_argument("--token", default=None, help="bearer token of a system:masters user")
    backup.add_argument("--certificate-authority", default=None, metavar="FILE",
                        help="CA certificate to verify an https --server with (e.g. DATA_DIR/pki/ca.crt)")
    backup.add_argument("--endpoints", default=None, metavar="HOST:PORT,...",
                        help="back up kubeplane store serve through etcd's API instead")
    backup.set_defaults(func=_backup)

    restore = sub.add_parser("restore", help="build a new data dir from a snapshot (kubeplane backup, "
                                             "or etcdctl snapshot save against kubeplane store serve)")
    restore.add_argument("snapshot", metavar="SNAPSHOT")
    where = restore.add_mutually_exclusive_group(required=True)
    where.add_argument("--data-dir", default=None, help="new data dir for kubeplane serve (the store goes "
                                                        "in DATA_DIR/store; PKI and kubeconfig are made anew)")
    where.add_argument("--store-dir", default=None, help="new data dir for kubeplane store serve")
    restore.add_argument("--bump-revision", type=_int_in(1), default=1_000_000_000, metavar="N",
                         help="start N revisions above the snapshot's, compacted there, so clients that "
                              "saw later revisions relist (default %(default)s; at least 1)")
    restore.set_defaults(func=_restore)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .logs import setup_logging

    setup_logging(args.verbose, getattr(args, "logging_format", "text"))
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
