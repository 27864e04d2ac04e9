"""Upstream's scheduling failure messages (framework.FitError.Error()).

    0/<nodes> nodes are available: <n> <reason>, <n> <reason>[. <post-filter message>].

The "<n> <reason>" strings are sorted as strings (so "10 ..." sorts before "4990 ..."),
as upstream's sortReasonsHistogram does; a node failing for several resources counts
once per reason. Preemption adds its own sentence ("preemption: 0/N nodes are
available: ...", ending in ".." as upstream's does). The pod condition gets reason `Unschedulable` (or `SchedulerError`).
"""
from __future__ import annotations

NO_NODES = "no nodes available to schedule pods"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"
NEVER = "not eligible due to preemptionPolicy=Never."
TERMINATING = "not eligible due to a terminating pod on the nominated node."


def histogram(counts: dict[str, int]) -> str:
    return ", ".join(sorted(f"{n} {reason}" for reason, n in counts.items() if n))


def fit_error(num_nodes: int, counts: dict[str, int], prefilter: str = "", postfilter: str = "") -> str:
    msg = f"0/{num_nodes} nodes are available:"
    if prefilter:
        msg += f" {prefilter}."
    hist = histogram(counts)
    if hist:
        msg += f" {hist}."
    if postfilter:
        msg += f" {postfilter}."
    return msg


def preemption_failure(num_nodes: int, counts: dict[str, int]) -> str:
    """The message DefaultPreemption returns when no node has victims worth evicting: its
    own FitError text, prefixed "preemption: ". The outer message then adds its own ".",
    so real kube-scheduler messages end in ".." ("... for incoming pod.."): kept."""
    return "preemption: " + fit_error(num_nodes, counts)
