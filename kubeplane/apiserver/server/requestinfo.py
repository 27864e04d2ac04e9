"""What a request is about, read from its method, path and query alone (upstream's
RequestInfoFactory), before routing: flow control classifies by it, the in-flight limits
and timeouts depend on whether it is long-running or mutating, and the request metrics
are labelled with it. With `user` set, a RequestInfo is also the request digest that
flow control classifies (the attribute names are the ones FlowSchema rules match).

    /api/v1/namespaces/ns/pods/p/status   -> resource request: get pods/status p in ns
    /apis/apps/v1/deployments?watch=1     -> resource request: watch deployments, cluster
    /healthz                              -> non-resource request: get /healthz

`verb` is the Kubernetes verb (get, list, watch, create, update, patch, delete,
deletecollection; for non-resource paths the lower-case HTTP method). `metric_verb` is
the verb label upstream's request metrics use (GET, LIST, WATCH, POST, PUT, PATCH,
APPLY, DELETE), and `scope` their scope label (resource, namespace, cluster, or "").
"""
from __future__ import annotations

_METHOD_VERB = {"POST": "create", "PUT": "update", "PATCH": "patch"}
_MUTATING = frozenset(("create", "update", "patch", "delete", "deletecollection"))
_APPLY_TYPE = "application/apply-patch+yaml"
_METRIC_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT"))
# upstream's BasicLongRunningRequestCheck(verbs watch/proxy, these subresources)
LONG_RUNNING_SUBRESOURCES = frozenset(("attach", "exec", "proxy", "log", "portforward"))


class RequestInfo:
    __slots__ = ("is_resource", "verb", "api_group", "api_version", "namespace", "resource",
                 "subresource", "name", "path", "metric_verb", "scope", "long_running", "mutating",
                 "dry_run", "user")

    def __init__(self) -> None:
        self.is_resource = False
        self.verb = ""
        self.api_group = ""
        self.api_version = ""
        self.namespace = ""
        self.resource = ""
        self.subresource = ""
        self.name = ""
        self.path = ""
        self.metric_verb = ""
        self.scope = ""
        self.long_running = False
        self.mutating = False
        self.dry_run = ""
        self.user = None      # authn.User, set once authenticated (flow control reads it)

    def __repr__(self) -> str:
        if self.is_resource:
            sub = "/" + self.subresource if self.subresource else ""
            return (f"RequestInfo({self.verb} {self.api_group}/{self.api_version} {self.resource}{sub} "
                    f"ns={self.namespace!r} name={self.name!r})")
        return f"RequestInfo({self.verb} {self.path})"


def _flag(query: str, name: str) -> bool:
    """`name=true|1` (or bare `name`) in a raw query string, without parsing all of it."""
    i = query.find(name)
    while i >= 0:
        if i == 0 or query[i - 1] == "&":
            rest = query[i + len(name):]
            if not rest or rest[0] == "&":
                return True
            if rest[0] == "=":
                v = rest[1:].split("&", 1)[0].lower()
                return v in ("1", "true", "")
        i = query.find(name, i + 1)
    return False


def request_info(method: str, path: str, raw_query: str, content_type: str = "") -> RequestInfo:
    ri = RequestInfo()
    ri.path = path
    parts = [p for p in path.split("/") if p]
    method_u = method.upper()
    if parts and parts[0] in ("api", "apis"):
        if parts[0] == "api":
            rest = parts[1:]
        else:
            rest = parts[2:] if len(parts) > 1 else []
            ri.api_group = parts[1] if len(parts) > 1 else ""
        if len(rest) >= 2:     # a version and a resource
            ri.api_version = rest[0]
            rest = rest[1:]
            watch_prefix = False
            if rest and rest[0] == "watch":
                watch_prefix = True
                rest = rest[1:]
            if len(rest) >= 2 and rest[0] == "namespaces":
                if len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
                    ri.namespace = rest[1]
                    rest = rest[2:]
                else:   # the namespace object itself (or its status/finalize), as upstream
                    ri.namespace = rest[1]
            if rest:
                ri.is_resource = True
                ri.resource = rest[0]
                if len(rest) > 1:
                    ri.name = rest[1]
                if len(rest) > 2:
                    ri.subresource = rest[2]
                if method_u in ("GET", "HEAD"):
                    if watch_prefix or _flag(raw_query, "watch"):
                        ri.verb = "watch"
                    else:
                        ri.verb = "get" if ri.name else "list"
                elif method_u == "DELETE":
                    ri.verb = "delete" if ri.name else "deletecollection"
                else:
                    ri.verb = _METHOD_VERB.get(method_u, method.lower())
            else:
                ri.verb = method.lower()
        else:
            ri.verb = method.lower()
    else:
        ri.verb = method.lower()
    if not ri.is_resource:
        ri.api_group = ri.api_version = ri.namespace = ""
    # metric labels (upstream's CleanVerb / CleanScope)
    if ri.is_resource:
        if ri.verb == "watch":
            ri.metric_verb = "WATCH"
            ri.long_running = True
        elif ri.verb == "list":
            ri.metric_verb = "LIST"
        elif method_u == "PATCH" and content_type.startswith(_APPLY_TYPE):
            ri.metric_verb = "APPLY"
        else:
            ri.metric_verb = method_u if method_u in _METRIC_METHODS else "other"
        if ri.subresource in LONG_RUNNING_SUBRESOURCES and ri.name:
            ri.long_running = True
        if ri.name or ri.verb == "create":
            ri.scope = "resource"
        elif ri.namespace:
            ri.scope = "namespace"
        else:
            ri.scope = "cluster"
        ri.mutating = ri.verb in _MUTATING
        if ri.mutating and "dryRun=All" in raw_query:
            ri.dry_run = "All"
    else:
        ri.metric_verb = method_u if method_u in _METRIC_METHODS else "other"
        ri.mutating = method_u in ("POST", "PUT", "PATCH", "DELETE")
    return ri
