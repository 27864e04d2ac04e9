"""Upstream's bootstrap APF configuration (apis/flowcontrol/bootstrap/default.go, the
flowcontrol.apiserver.k8s.io/v1 objects of Kubernetes 1.29+), as API objects (dicts).

Mandatory objects (always present; the controller imagines them when missing):
  PriorityLevelConfigurations exempt (Exempt) and catch-all (Limited, 5 shares, Reject);
  FlowSchemas exempt (precedence 1, group system:masters) and catch-all (10000).
Suggested objects:
  levels system 30, node-high 40, leader-election 10, workload-high 40,
  workload-low 100, global-default 20 (nominalConcurrencyShares);
  schemas probes 2, system-leader-election 100, endpoint-controller 150,
  workload-leader-election 200, system-node-high 400, system-nodes 500,
  kube-controller-manager 800, kube-scheduler 800, kube-system-service-accounts 900,
  service-accounts 9000, global-default 9900.

Every call returns new dicts (callers may change them). Each object carries the
annotation `apf.kubernetes.io/autoupdate-spec: "true"`.
"""
from __future__ import annotations

from typing import Any

API_VERSION = "flowcontrol.apiserver.k8s.io/v1"
AUTOUPDATE_ANNOTATION = "apf.kubernetes.io/autoupdate-spec"

# Well-known users and groups (k8s.io/apiserver/pkg/authentication/user, serviceaccount).
SYSTEM_PRIVILEGED_GROUP = "system:masters"
NODES_GROUP = "system:nodes"
ALL_UNAUTHENTICATED = "system:unauthenticated"
ALL_AUTHENTICATED = "system:authenticated"
ALL_SERVICE_ACCOUNTS = "system:serviceaccounts"
KUBE_CONTROLLER_MANAGER = "system:kube-controller-manager"
KUBE_SCHEDULER = "system:kube-scheduler"
NAMESPACE_SYSTEM = "kube-system"
CORE_GROUP = ""
COORDINATION_GROUP = "coordination.k8s.io"


def _meta(name: str) -> dict[str, Any]:
    return {"name": name, "annotations": {AUTOUPDATE_ANNOTATION: "true"}}


def _pl(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "PriorityLevelConfiguration", "metadata": _meta(name), "spec": spec}


def _queued(shares: int, lendable: int, queues: int, hand: int, qll: int) -> dict[str, Any]:
    return {"type": "Limited", "limited": {
        "nominalConcurrencyShares": shares, "lendablePercent": lendable,
        "limitResponse": {"type": "Queue",
                          "queuing": {"queues": queues, "handSize": hand, "queueLengthLimit": qll}}}}


def _fs(name: str, level: str, precedence: int, distinguisher: str | None, *rules: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"priorityLevelConfiguration": {"name": level}, "matchingPrecedence": precedence}
    if distinguisher:
        spec["distinguisherMethod"] = {"type": distinguisher}
    spec["rules"] = list(rules)
    return {"apiVersion": API_VERSION, "kind": "FlowSchema", "metadata": _meta(name), "spec": spec}


def _groups(*names: str) -> list[dict[str, Any]]:
    return [{"kind": "Group", "group": {"name": n}} for n in names]


def _users(*names: str) -> list[dict[str, Any]]:
    return [{"kind": "User", "user": {"name": n}} for n in names]


def _kube_system_sas(*names: str) -> list[dict[str, Any]]:
    return [{"kind": "ServiceAccount", "serviceAccount": {"name": n, "namespace": NAMESPACE_SYSTEM}} for n in names]


def _resource_rule(verbs: list[str], groups: list[str], resources: list[str], namespaces: list[str],
                   cluster_scope: bool) -> dict[str, Any]:
    r: dict[str, Any] = {"verbs": verbs, "apiGroups": groups, "resources": resources}
    if cluster_scope:
        r["clusterScope"] = True
    r["namespaces"] = namespaces
    return r


def _non_resource_rule(verbs: list[str], urls: list[str]) -> dict[str, Any]:
    return {"verbs": verbs, "nonResourceURLs": urls}


def _rule(subjects: list[dict[str, Any]], resource_rules: list[dict[str, Any]] | None = None,
          non_resource_rules: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"subjects": subjects}
    if resource_rules:
        r["resourceRules"] = resource_rules
    if non_resource_rules:
        r["nonResourceRules"] = non_resource_rules
    return r


def _everything(subjects: list[dict[str, Any]]) -> dict[str, Any]:
    """A rule matching every request of the subjects."""
    return _rule(subjects, [_resource_rule(["*"], ["*"], ["*"], ["*"], True)],
                 [_non_resource_rule(["*"], ["*"])])


def mandatory_priority_levels() -> list[dict[str, Any]]:
    return [
        _pl("catch-all", {"type": "Limited", "limited": {
            "nominalConcurrencyShares": 5, "lendablePercent": 0, "limitResponse": {"type": "Reject"}}}),
        _pl("exempt", {"type": "Exempt", "exempt": {"nominalConcurrencyShares": 0, "lendablePercent": 0}}),
    ]


def mandatory_flow_schemas() -> list[dict[str, Any]]:
    return [
        _fs("exempt", "exempt", 1, None, _everything(_groups(SYSTEM_PRIVILEGED_GROUP))),
        _fs("catch-all", "catch-all", 10000, "ByUser",
            _everything(_groups(ALL_UNAUTHENTICATED, ALL_AUTHENTICATED))),
    ]


def suggested_priority_levels() -> list[dict[str, Any]]:
    return [
        _pl("system", _queued(30, 33, 64, 6, 50)),
        _pl("node-high", _queued(40, 25, 64, 6, 50)),
        _pl("leader-election", _queued(10, 0, 16, 4, 50)),
        _pl("workload-high", _queued(40, 50, 128, 6, 50)),
        _pl("workload-low", _queued(100, 90, 128, 6, 50)),
        _pl("global-default", _queued(20, 50, 128, 6, 50)),
    ]


def suggested_flow_schemas() -> list[dict[str, Any]]:
    gcu = ["get", "create", "update"]
    return [
        _fs("system-nodes", "system", 500, "ByUser", _everything(_groups(NODES_GROUP))),
        _fs("system-node-high", "node-high", 400, "ByUser", _rule(_groups(NODES_GROUP), [
            _resource_rule(["*"], [CORE_GROUP], ["nodes", "nodes/status"], ["*"], True),
            _resource_rule(["*"], [COORDINATION_GROUP], ["leases"], ["*"], False),
        ])),
        _fs("probes", "exempt", 2, None, _rule(
            _groups(ALL_UNAUTHENTICATED, ALL_AUTHENTICATED), None,
            [_non_resource_rule(["get"], ["/healthz", "/readyz", "/livez"])])),
        _fs("system-leader-election", "leader-election", 100, "ByUser", _rule(
            _users(KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER) + _kube_system_sas("*"),
            [_resource_rule(gcu, [COORDINATION_GROUP], ["leases"], ["*"], False)])),
        _fs("workload-leader-election", "leader-election", 200, "ByUser", _rule(_kube_system_sas("*"), [
            _resource_rule(gcu, [CORE_GROUP], ["endpoints", "configmaps"], ["*"], False),
            _resource_rule(gcu, [COORDINATION_GROUP], ["leases"], ["*"], False),
        ])),
        _fs("endpoint-controller", "workload-high", 150, "ByUser", _rule(
            _users(KUBE_CONTROLLER_MANAGER) + _kube_system_sas("endpoint-controller",
                                                                "endpointslicemirroring-controller"),
            [_resource_rule(gcu, [CORE_GROUP], ["endpoints"], ["*"], False)])),
        _fs("kube-controller-manager", "workload-high", 800, "ByNamespace",
            _everything(_users(KUBE_CONTROLLER_MANAGER))),
        _fs("kube-scheduler", "workload-high", 800, "ByNamespace", _everything(_users(KUBE_SCHEDULER))),
        _fs("kube-system-service-accounts", "workload-high", 900, "ByNamespace",
            _everything(_kube_system_sas("*"))),
        _fs("service-accounts", "workload-low", 9000, "ByUser", _everything(_groups(ALL_SERVICE_ACCOUNTS))),
        _fs("global-default", "global-default", 9900, "ByUser",
            _everything(_groups(ALL_UNAUTHENTICATED, ALL_AUTHENTICATED))),
    ]
