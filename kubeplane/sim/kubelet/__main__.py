"""`python -m kubeplane.sim.kubelet`: the simulated kubelet API on its own.

    python -m kubeplane.sim.kubelet --kubeconfig data/kubeconfig --node hollow-1 --node hollow-2 \\
        --address 127.0.0.2 --port 10250 --register

Each `--node` gets its own loopback address, counting up from `--address` (127.0.0.2,
127.0.0.3, ...), all on `--port` (0: a free one). Pods are looked up in the API server
when a request names them. With `--register` the Nodes are created (if missing) and their
status says where their kubelet is, so `kubectl logs|exec|port-forward` reach pods bound
to them. It prints one line per node (`node NAME kubelet HOST:PORT`) and runs until
interrupted.
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal

from .apiclient import APIClient
from .server import KubeletServer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m kubeplane.sim.kubelet", description=__doc__.split("\n\n")[0])
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG", "data/kubeconfig"),
                   help="where pods are looked up (and nodes registered)")
    p.add_argument("--node", action="append", required=True, help="a node name (repeatable)")
    p.add_argument("--address", default="127.0.0.2", help="the first node's loopback address")
    p.add_argument("--port", type=int, default=0, help="the kubelet port of every node (0: a free one)")
    p.add_argument("--register", action="store_true", help="create the Nodes and publish their kubelet endpoint")
    p.add_argument("--allow-real-commands", action="store_true",
                   help="let pods annotated kubeplane.io/exec-real-commands=true run real commands on this host")
    p.add_argument("--client-ca", default=None, help="require API server client certificates signed by this CA")
    args = p.parse_args(argv)
    first = ipaddress.ip_address(args.address)
    if not first.is_loopback:
        p.error(f"--address {args.address} is not a loopback address")
    return args


async def run(args: argparse.Namespace) -> None:
    api = APIClient(args.kubeconfig)
    kubelet = KubeletServer(lookup=api.get_pod, client_ca=args.client_ca,
                            allow_real_commands=args.allow_real_commands)
    first = ipaddress.ip_address(args.address)
    port = args.port
    for i, name in enumerate(args.node):
        host, port = await kubelet.add_node(name, str(first + i), port)
        if args.register:
            await api.register_node(name, host, port)
        print(f"node {name} kubelet {host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await kubelet.close()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    main()
