"""Hollow nodes: thousands of simulated nodes and kubelets in one process, against any
Kubernetes API server (docs/sim.md).

    simulator.py  Simulator: registers the nodes, runs heartbeats, pod watches, the kubelet API
    objects.py    what a hollow node writes: its Node, Lease, pod statuses
    stages.py     pod timings and outcomes as data (stages.yaml, rules, per-pod annotations)
    pods.py       the per-pod lifecycle a kubelet drives (start, run, exit, restart, stop)
    heartbeat.py  Lease renewals and node status posts on the event loop's timer heap
    metrics.py    the simulator's /metrics and /debug/stats
    main.py       `kubeplane sim nodes`: options, progress on the terminal, the summary line
"""
from .simulator import Simulator, SimOptions

__all__ = ["Simulator", "SimOptions"]
