"""The ``kubeplane`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys


def _store_serve(args: argparse.Namespace) -> int:
    from .store.grpc_server import serve

    asyncio.run(
        serve(
            listen=args.listen,
            data_dir=args.data_dir,
            quota_bytes=args.quota_backend_bytes,
            auto_compaction_mode=args.auto_compaction_mode,
            auto_compaction_retention=args.auto_compaction_retention,
        )
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubeplane", description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(dest="command", required=True)

    store = sub.add_parser("store", help="the embedded MVCC store")
    store_sub = store.add_subparsers(dest="store_command", required=True)
    for name in ("serve",):
        serve = store_sub.add_parser(name, help="serve the embedded store over etcd's v3 gRPC API")
        serve.add_argument("--listen", default="127.0.0.1:2379", help="host:port (default %(default)s)")
        serve.add_argument("--data-dir", default="data/store", help="directory for WAL and snapshots")
        serve.add_argument(
            "--quota-backend-bytes", type=int, default=2 * 1024**3, help="NOSPACE above this many bytes"
        )
        serve.add_argument(
            "--auto-compaction-mode", choices=("periodic", "revision"), default="periodic"
        )
        serve.add_argument(
            "--auto-compaction-retention",
            default="0",
            help="periodic: a duration like 5m or 1h (0 = off); revision: revisions to keep",
        )
        serve.set_defaults(func=_store_serve)

    # Until the API server exists (issue 3), `kubeplane serve` serves the store.
    top_serve = sub.add_parser("serve", help="start kubeplane (for now: the embedded store endpoint)")
    top_serve.add_argument("--listen", default="127.0.0.1:2379")
    top_serve.add_argument("--data-dir", default="data/store")
    top_serve.add_argument("--quota-backend-bytes", type=int, default=2 * 1024**3)
    top_serve.add_argument("--auto-compaction-mode", choices=("periodic", "revision"), default="periodic")
    top_serve.add_argument("--auto-compaction-retention", default="0")
    top_serve.set_defaults(func=_store_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
