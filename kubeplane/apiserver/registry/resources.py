"""Which resources the API serves: one data-driven table for the built-in types.

A `ResourceInfo` says everything discovery, routing, storage and OpenAPI need about one
resource (group, version, kind, names, scope, subresources, schema definition). The
registry (registry.py) adds CRD-defined resources at run time as more ResourceInfos.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
NO_COLLECTION_DELETE = ("create", "delete", "get", "list", "patch", "update", "watch")


@dataclass(eq=False)
class ResourceInfo:
    group: str                     # "" for the core group
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()   # "status", "scale", "binding", "eviction", "ephemeralcontainers",
    #                                      and the connect ones (log, exec, attach, portforward, proxy)
    verbs: tuple[str, ...] = ALL_VERBS
    def_name: str | None = None    # schema definition name in kubernetes-validate
    crd: dict[str, Any] | None = field(default=None, repr=False)  # the CRD object, for custom resources
    crd_version: dict[str, Any] | None = field(default=None, repr=False)  # its entry in spec.versions

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    api_version = group_version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def qualified(self) -> str:
        """"pods" or "deployments.apps": the name in messages and upstream's etcd keys."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def key_prefix(self) -> str:
        """Store key prefix, upstream's layout: /registry/<resource>/ for built-ins
        (core and named groups alike), /registry/<group>/<resource>/ for custom ones."""
        if self.crd is not None:
            return f"/registry/{self.group}/{self.plural}/"
        return f"/registry/{self.plural}/"


def _r(group: str, version: str, kind: str, plural: str, namespaced: bool, def_name: str, *,
       short: tuple[str, ...] = (), cat: tuple[str, ...] = (), sub: tuple[str, ...] = (),
       singular: str | None = None, verbs: tuple[str, ...] = ALL_VERBS) -> ResourceInfo:
    return ResourceInfo(group, version, kind, plural, singular or kind.lower(), namespaced,
                        short, cat, sub, verbs, def_name)


_CORE = "io.k8s.api.core.v1."
ALL = ("all",)

BUILTIN: list[ResourceInfo] = [
    # core/v1
    _r("", "v1", "Namespace", "namespaces", False, _CORE + "Namespace", short=("ns",),
       sub=("status", "finalize"), verbs=NO_COLLECTION_DELETE),
    _r("", "v1", "Pod", "pods", True, _CORE + "Pod", short=("po",), cat=ALL,
       sub=("status", "binding", "eviction", "ephemeralcontainers", "log", "exec", "attach", "portforward",
            "proxy")),
    _r("", "v1", "Node", "nodes", False, _CORE + "Node", short=("no",), sub=("status", "proxy")),
    _r("", "v1", "Service", "services", True, _CORE + "Service", short=("svc",), cat=ALL,
       sub=("status", "proxy"), ),
    _r("", "v1", "Endpoints", "endpoints", True, _CORE + "Endpoints", short=("ep",),
       singular="endpoints"),
    _r("", "v1", "ConfigMap", "configmaps", True, _CORE + "ConfigMap", short=("cm",)),
    _r("", "v1", "Secret", "secrets", True, _CORE + "Secret"),
    _r("", "v1", "ServiceAccount", "serviceaccounts", True, _CORE + "ServiceAccount",
       short=("sa",)),
    _r("", "v1", "Event", "events", True, _CORE + "Event", short=("ev",)),
    _r("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True,
       _CORE + "PersistentVolumeClaim", short=("pvc",), sub=("status",)),
    _r("", "v1", "LimitRange", "limitranges", True, _CORE + "LimitRange", short=("limits",)),
    _r("", "v1", "ResourceQuota", "resourcequotas", True, _CORE + "ResourceQuota",
       short=("quota",), sub=("status",)),
    # apps/v1
    _r("apps", "v1", "Deployment", "deployments", True, "io.k8s.api.apps.v1.Deployment",
       short=("deploy",), cat=ALL, sub=("status", "scale")),
    _r("apps", "v1", "ReplicaSet", "replicasets", True, "io.k8s.api.apps.v1.ReplicaSet",
       short=("rs",), cat=ALL, sub=("status", "scale")),
    _r("apps", "v1", "StatefulSet", "statefulsets", True, "io.k8s.api.apps.v1.StatefulSet",
       short=("sts",), cat=ALL, sub=("status", "scale")),
    _r("apps", "v1", "DaemonSet", "daemonsets", True, "io.k8s.api.apps.v1.DaemonSet",
       short=("ds",), cat=ALL, sub=("status",)),
    # batch/v1
    _r("batch", "v1", "Job", "jobs", True, "io.k8s.api.batch.v1.Job", cat=ALL, sub=("status",)),
    _r("batch", "v1", "CronJob", "cronjobs", True, "io.k8s.api.batch.v1.CronJob",
       short=("cj",), cat=ALL, sub=("status",)),
    # coordination, discovery, events
    _r("coordination.k8s.io", "v1", "Lease", "leases", True, "io.k8s.api.coordination.v1.Lease"),
    _r("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", True,
       "io.k8s.api.discovery.v1.EndpointSlice"),
    _r("events.k8s.io", "v1", "Event", "events", True, "io.k8s.api.events.v1.Event",
       short=("ev",)),
    # rbac (stored; enforcement comes later)
    _r("rbac.authorization.k8s.io", "v1", "Role", "roles", True, "io.k8s.api.rbac.v1.Role"),
    _r("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True,
       "io.k8s.api.rbac.v1.RoleBinding"),
    _r("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False,
       "io.k8s.api.rbac.v1.ClusterRole"),
    _r("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False,
       "io.k8s.api.rbac.v1.ClusterRoleBinding"),
    # API Priority and Fairness configuration (applied live by the flow controller)
    _r("flowcontrol.apiserver.k8s.io", "v1", "FlowSchema", "flowschemas", False,
       "io.k8s.api.flowcontrol.v1.FlowSchema", sub=("status",)),
    _r("flowcontrol.apiserver.k8s.io", "v1", "PriorityLevelConfiguration", "prioritylevelconfigurations", False,
       "io.k8s.api.flowcontrol.v1.PriorityLevelConfiguration", sub=("status",)),
    # apiextensions
    _r("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
       False, "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
       short=("crd", "crds"), cat=("api-extensions",), sub=("status",)),
]

# Group preference order in discovery (upstream lists core first, then these).
GROUP_ORDER = ["", "apps", "events.k8s.io", "batch", "rbac.authorization.k8s.io",
               "coordination.k8s.io", "discovery.k8s.io", "flowcontrol.apiserver.k8s.io", "apiextensions.k8s.io"]
