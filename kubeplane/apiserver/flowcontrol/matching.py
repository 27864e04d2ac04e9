"""Which FlowSchema a request belongs to (upstream's util/flowcontrol/rule.go semantics).

A FlowSchema matches a request when any of its `rules` matches. A rule matches when
one of its `subjects` is the request's user AND (for a resource request) one of its
`resourceRules` matches, or (for a non-resource request) one of its `nonResourceRules`.

- Subjects: `User` by name ("*" = everybody); `Group` by one of the user's groups
  ("*" = everybody); `ServiceAccount` by namespace and name, "*" as the name meaning any
  service account of that namespace (the user `system:serviceaccount:<ns>:<name>`).
  The namespace of a ServiceAccount subject has no wildcard (upstream neither).
- Lists of verbs, apiGroups, resources and namespaces: the wildcard ("*") counts only
  when it is the list's sole member (validation forbids mixing it with other values;
  a mixed list matches its literal members only, as upstream).
- Resources are matched as "resource" or "resource/subresource": "pods" does not
  match pods/status. A request without a namespace (cluster-scoped, or a list across
  all namespaces) matches only rules with `clusterScope: true`; a namespaced request
  matches `namespaces` by name or by "*" (any namespace).
- Non-resource URLs: "*" matches every path; otherwise a path matches a rule URL
  exactly or lies under it: "/healthz" also matches "/healthz/etcd", "/apis/*"
  matches everything below "/apis/".

The digest is duck-typed: anything with `user` (`.name`, `.groups`), `verb`,
`is_resource`, `api_group`, `resource`, `subresource`, `namespace` and `path` works
(`RequestDigest` here, or the API server's RequestInfo).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

SA_PREFIX = "system:serviceaccount:"
ALL = "*"


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""


@dataclass(slots=True)
class RequestDigest:
    """What classification looks at. `verb`: for resource requests the Kubernetes verb
    (get, list, watch, create, update, patch, delete, deletecollection); for non-resource
    requests the lower-case HTTP method. `path` matters only for non-resource requests."""
    user: UserInfo
    verb: str
    is_resource: bool
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


Matcher = Callable[[Any], bool]


def _member_set(values: Any) -> frozenset[str] | None:
    """None stands for "everything" (the list is exactly ["*"])."""
    values = list(values or ())
    if len(values) == 1 and values[0] == ALL:
        return None
    return frozenset(values)


class _Subjects:
    __slots__ = ("any_user", "users", "groups", "sa_prefixes")

    def __init__(self, subjects: list[dict[str, Any]]):
        self.any_user = False
        users: set[str] = set()
        groups: set[str] = set()
        sa_names: set[str] = set()
        prefixes: list[str] = []
        for s in subjects or ():
            kind = s.get("kind")
            if kind == "User":
                name = (s.get("user") or {}).get("name")
                if name == ALL:
                    self.any_user = True
                elif name is not None:
                    users.add(name)
            elif kind == "Group":
                name = (s.get("group") or {}).get("name")
                if name == ALL:
                    self.any_user = True
                elif name is not None:
                    groups.add(name)
            elif kind == "ServiceAccount":
                sa = s.get("serviceAccount")
                if not sa:
                    continue
                ns, name = sa.get("namespace", ""), sa.get("name", "")
                if name == ALL:
                    prefixes.append(f"{SA_PREFIX}{ns}:")
                else:
                    sa_names.add(f"{SA_PREFIX}{ns}:{name}")
        self.users = frozenset(users | sa_names)   # a service account is matched by user name
        self.groups = frozenset(groups)
        self.sa_prefixes = tuple(prefixes)

    def match(self, user: Any) -> bool:
        if self.any_user:
            return True
        if user is None:
            return False
        name = user.name
        if name in self.users:
            return True
        if self.groups and not self.groups.isdisjoint(user.groups):
            return True
        return bool(self.sa_prefixes) and name.startswith(self.sa_prefixes)


class _ResourceRule:
    __slots__ = ("verbs", "groups", "resources", "cluster_scope", "namespaces")

    def __init__(self, r: dict[str, Any]):
        self.verbs = _member_set(r.get("verbs"))
        self.groups = _member_set(r.get("apiGroups"))
        self.resources = _member_set(r.get("resources"))
        self.cluster_scope = bool(r.get("clusterScope"))
        self.namespaces = _member_set(r.get("namespaces"))

    def match(self, d: Any) -> bool:
        if self.verbs is not None and d.verb not in self.verbs:
            return False
        if self.resources is not None:
            rs = f"{d.resource}/{d.subresource}" if d.subresource else d.resource
            if rs not in self.resources:
                return False
        if self.groups is not None and d.api_group not in self.groups:
            return False
        if not d.namespace:
            return self.cluster_scope
        return self.namespaces is None or d.namespace in self.namespaces


class _NonResourceRule:
    __slots__ = ("verbs", "any_url", "urls", "prefixes")

    def __init__(self, r: dict[str, Any]):
        self.verbs = _member_set(r.get("verbs"))
        urls = list(r.get("nonResourceURLs") or ())
        self.any_url = ALL in urls
        self.urls = frozenset(urls)
        prefixes = []
        for u in urls:
            p = u[:-1] if u.endswith("*") else u
            prefixes.append(p if p.endswith("/") else p + "/")
        self.prefixes = tuple(prefixes)

    def match(self, d: Any) -> bool:
        if self.verbs is not None and d.verb not in self.verbs:
            return False
        path = d.path
        return self.any_url or path in self.urls or path.startswith(self.prefixes)


class _Rule:
    __slots__ = ("subjects", "resource_rules", "non_resource_rules")

    def __init__(self, r: dict[str, Any]):
        self.subjects = _Subjects(r.get("subjects") or [])
        self.resource_rules = tuple(_ResourceRule(x) for x in r.get("resourceRules") or ())
        self.non_resource_rules = tuple(_NonResourceRule(x) for x in r.get("nonResourceRules") or ())

    def match(self, d: Any) -> bool:
        if not self.subjects.match(d.user):
            return False
        rules = self.resource_rules if d.is_resource else self.non_resource_rules
        for rule in rules:
            if rule.match(d):
                return True
        return False


def compile_flow_schema(spec: dict[str, Any]) -> Matcher:
    """A function digest -> bool equivalent to `matches(spec, digest)`, built once."""
    rules = tuple(_Rule(r) for r in spec.get("rules") or ())

    def match(d: Any) -> bool:
        for rule in rules:
            if rule.match(d):
                return True
        return False

    return match


def matches(flow_schema_spec: dict[str, Any], digest: Any) -> bool:
    """Whether a FlowSchema (its `spec`) matches the request."""
    return compile_flow_schema(flow_schema_spec)(digest)


def flow_distinguisher(spec: dict[str, Any], digest: Any) -> str:
    """The flow's distinguisher: the user name (ByUser), the namespace (ByNamespace, ""
    for cluster-scoped requests), or "" (no distinguisherMethod: one flow per schema)."""
    method = (spec.get("distinguisherMethod") or {}).get("type")
    if method == "ByUser":
        user = digest.user
        return user.name if user is not None else ""
    if method == "ByNamespace":
        return digest.namespace or ""
    return ""
