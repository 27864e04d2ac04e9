"""The ``kubeplane`` command."""

from __future__ import annotations

import argparse
import sys

from .runtime import raise_open_file_limit, run


def _store_serve(args: argparse.Namespace) -> int:
    from .store.errors import StoreError
    from .store.grpc_server import serve

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
    except (OSError, StoreError) as exc:
        print(f"kubeplane store serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _add_store_serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="127.0.0.1:2379", help="host:port (default %(default)s)")
    parser.add_argument("--data-dir", default="data/store", help="directory for WAL and snapshots")
    parser.add_argument(
        "--quota-backend-bytes", type=int, default=2 * 1024**3, help="NOSPACE above this many bytes"
    )
    parser.add_argument(
        "--max-request-bytes", type=int, default=1572864, help="largest accepted request (default %(default)s)"
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
        type=float,
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
    parser.add_argument("--secure-port", type=int, default=6443, help="HTTPS port (default %(default)s; 0: any free)")
    parser.add_argument("--http-listen", default=None, metavar="HOST:PORT",
                        help="also serve plain HTTP without authentication, loopback only (tests, benchmarks)")
    parser.add_argument("--kubeconfig", default=None,
                        help="where to write the admin kubeconfig (default DATA_DIR/kubeconfig)")
    parser.add_argument("--max-request-body-bytes", type=int, default=3 * 1024 * 1024)
    parser.add_argument("--http-read-header-timeout", type=float, default=32.0, metavar="SECONDS",
                        help="a request's head, and a TLS handshake, must arrive within this (default %(default)s)")
    parser.add_argument("--http-idle-timeout", type=float, default=90.0, metavar="SECONDS",
                        help="close keep-alive connections idle this long (default %(default)s)")
    parser.add_argument("--http-write-stall-timeout", type=float, default=60.0, metavar="SECONDS",
                        help="abort a connection whose client reads nothing of a full write buffer "
                             "this long (default %(default)s)")
    parser.add_argument("--quota-backend-bytes", type=int, default=2 * 1024**3)
    parser.add_argument("--auto-compaction-mode", choices=("periodic", "revision"), default="periodic")
    parser.add_argument("--auto-compaction-retention", default="5m",
                        help="embedded store compaction (default %(default)s, as kube-apiserver compacts every 5m)")
    parser.add_argument("--watch-progress-notify-interval", type=float, default=5.0, metavar="SECONDS")
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


def _duration(text: str, flag: str) -> float:
    from .apiserver.filters import parse_go_duration

    try:
        return parse_go_duration(text) if not text.isdigit() else float(text)
    except ValueError:
        raise SystemExit(f"kubeplane serve: {flag}: invalid duration {text!r}") from None


def _apiserver_serve(args: argparse.Namespace) -> int:
    from .apiserver.server import ServerConfig, serve_forever
    from .store.errors import StoreError

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
        run(serve_forever(config))
    except (OSError, StoreError, ValueError) as exc:
        print(f"kubeplane serve: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubeplane", description=__doc__)
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
    top_serve.set_defaults(func=_apiserver_serve)
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
