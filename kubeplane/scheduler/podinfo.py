"""PodInfo: what the scheduler needs from a pod, computed once per pod version.

Requests, priority, tolerations and the parsed affinity / spread terms are derived from
the pod dict when the PodInfo is built; plugins read these fields and never re-parse the
pod. A PodInfo is immutable once built: a new pod version gets a new PodInfo.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .resources import pod_non_zero_requests, pod_requests
from ..client.selectors import Matcher, label_selector, node_selector


def pod_key(pod: dict[str, Any]) -> str:
    md = pod.get("metadata") or {}
    return f"{md.get('namespace', '')}/{md.get('name', '')}"


@dataclass(slots=True)
class AffinityTerm:
    """A PodAffinityTerm with its selector parsed; `namespaces` None means "the pod's own"
    when no namespaceSelector is given, else the union of the list and the selector."""
    matches_labels: Matcher
    namespaces: frozenset[str]
    ns_selector: Matcher | None
    topology_key: str
    weight: int = 1

    def matches(self, other: "PodInfo") -> bool:
        if other.namespace not in self.namespaces and not (self.ns_selector and self.ns_selector_matches(other)):
            return False
        return self.matches_labels(other.labels)

    def ns_selector_matches(self, other: "PodInfo") -> bool:
        # namespace labels are not watched; a namespaceSelector matches by namespace name
        # label (kubernetes.io/metadata.name, which every namespace carries)
        assert self.ns_selector is not None
        return self.ns_selector({"kubernetes.io/metadata.name": other.namespace})


def _terms(pod_ns: str, raw: list[dict[str, Any]] | None, weighted: bool) -> list[AffinityTerm]:
    out = []
    for t in raw or ():
        weight = 1
        if weighted:
            weight = int(t.get("weight") or 0)
            t = t.get("podAffinityTerm") or {}
        sel = t.get("labelSelector")
        nss = t.get("namespaces") or []
        nsel = t.get("namespaceSelector")
        namespaces = frozenset(nss) if (nss or nsel is not None) else frozenset([pod_ns])
        ns_matcher = label_selector(nsel) if nsel is not None else None
        out.append(AffinityTerm(label_selector(sel), namespaces, ns_matcher, t.get("topologyKey") or "", weight))
    return out


@dataclass(slots=True)
class SpreadConstraint:
    max_skew: int
    topology_key: str
    hard: bool
    selector: Matcher
    min_domains: int
    honor_affinity: bool
    honor_taints: bool


def _spread(pod: dict[str, Any], labels: dict[str, str]) -> list[SpreadConstraint]:
    out = []
    for c in (pod.get("spec") or {}).get("topologySpreadConstraints") or ():
        sel = c.get("labelSelector")
        keys = c.get("matchLabelKeys") or ()
        if keys and sel is not None:
            sel = dict(sel)
            sel["matchExpressions"] = list(sel.get("matchExpressions") or ()) + [
                {"key": k, "operator": "In", "values": [labels[k]]} for k in keys if k in labels]
        out.append(SpreadConstraint(int(c.get("maxSkew") or 1), c.get("topologyKey") or "",
                                    c.get("whenUnsatisfiable", "DoNotSchedule") == "DoNotSchedule",
                                    label_selector(sel), int(c.get("minDomains") or 1),
                                    c.get("nodeAffinityPolicy", "Honor") == "Honor",
                                    c.get("nodeTaintsPolicy", "Ignore") == "Honor"))
    return out


@dataclass(slots=True)
class PodInfo:
    pod: dict[str, Any]
    key: str
    namespace: str
    name: str
    uid: str
    labels: dict[str, str]
    priority: int
    requests: dict[str, int]
    non_zero: tuple[int, int]
    tolerations: list[dict[str, Any]]
    node_name: str
    node_selector: dict[str, str]
    required_node: Callable[[dict[str, str], str], bool] | None
    preferred_node: list[tuple[int, Callable[[dict[str, str], str], bool]]]
    affinity: list[AffinityTerm]
    anti_affinity: list[AffinityTerm]
    preferred_affinity: list[AffinityTerm]
    preferred_anti_affinity: list[AffinityTerm]
    spread: list[SpreadConstraint]
    terminating: bool
    created: str
    preemption_never: bool
    nominated_node: str
    scheduler_name: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_pod_affinity(self) -> bool:
        return bool(self.affinity or self.anti_affinity or self.preferred_affinity or self.preferred_anti_affinity)


def pod_info(pod: dict[str, Any]) -> PodInfo:
    md = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    ns = md.get("namespace") or ""
    labels = md.get("labels") or {}
    aff = spec.get("affinity") or {}
    na = aff.get("nodeAffinity") or {}
    pa = aff.get("podAffinity") or {}
    paa = aff.get("podAntiAffinity") or {}
    preferred_node = []
    for t in na.get("preferredDuringSchedulingIgnoredDuringExecution") or ():
        ns_match = node_selector({"nodeSelectorTerms": [t.get("preference") or {}]})
        assert ns_match is not None
        preferred_node.append((int(t.get("weight") or 0), ns_match))
    return PodInfo(
        pod=pod, key=f"{ns}/{md.get('name', '')}", namespace=ns, name=md.get("name", ""), uid=md.get("uid", ""),
        labels=labels, priority=int(spec.get("priority") or 0), requests=pod_requests(pod),
        non_zero=pod_non_zero_requests(pod), tolerations=list(spec.get("tolerations") or ()),
        node_name=spec.get("nodeName") or "", node_selector=dict(spec.get("nodeSelector") or {}),
        required_node=node_selector(na.get("requiredDuringSchedulingIgnoredDuringExecution")),
        preferred_node=preferred_node,
        affinity=_terms(ns, pa.get("requiredDuringSchedulingIgnoredDuringExecution"), False),
        anti_affinity=_terms(ns, paa.get("requiredDuringSchedulingIgnoredDuringExecution"), False),
        preferred_affinity=_terms(ns, pa.get("preferredDuringSchedulingIgnoredDuringExecution"), True),
        preferred_anti_affinity=_terms(ns, paa.get("preferredDuringSchedulingIgnoredDuringExecution"), True),
        spread=_spread(pod, labels), terminating=bool(md.get("deletionTimestamp")),
        created=md.get("creationTimestamp") or "", preemption_never=spec.get("preemptionPolicy") == "Never",
        nominated_node=(pod.get("status") or {}).get("nominatedNodeName") or "",
        scheduler_name=spec.get("schedulerName") or "default-scheduler",
    )
