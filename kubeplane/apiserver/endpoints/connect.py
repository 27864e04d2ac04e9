"""The connect subresources: pods/log, pods/exec, pods/attach, pods/portforward and the
proxies pods/proxy, nodes/proxy, services/proxy. The API server computes where the
request goes (upstream's pkg/registry/core/pod/strategy.go LogLocation, ExecLocation,
PortForwardLocation, ResourceLocation; node/strategy.go; service/proxy.go) and proxies:

- to a node's kubelet: the Node's first address of the preferred types (InternalIP,
  ExternalIP, Hostname: kubeadm's --kubelet-preferred-address-types) and
  `status.daemonEndpoints.kubeletEndpoint.Port` (10250 when unset), over HTTPS without
  verifying the kubelet's certificate (upstream's default without
  --kubelet-certificate-authority);
- to a pod (`pods/proxy`, `services/proxy` through the service's Endpoints): its IP,
  which must be a global unicast address, as upstream insists.

Upgrades (exec, attach, portforward; any proxied request with `Upgrade`) are relayed as
upstream's UpgradeAwareHandler does: the client's handshake goes to the backend, and on
`101 Switching Protocols` the two connections are spliced byte for byte, so whatever the
client speaks (WebSocket v5 channels, SPDY/3.1, SPDY tunneled in WebSocket) reaches a
kubelet that speaks it (kubeplane's simulated kubelet speaks all three, so no
translation is needed; upstream 1.30+ translates WebSocket to SPDY because its kubelet
speaks only SPDY). A backend that does not switch is relayed as an ordinary response.

Errors are upstream's: a pod without a node is 400 `pod X does not have a host assigned`
(pods/log answers an empty log instead), an unknown container 400 `container X is not
valid for pod Y`, a kubelet that cannot be reached 500 `error dialing backend: ...`, a
kubelet's 4xx/5xx answer to pods/log becomes the matching Status with its text.
"""
from __future__ import annotations

import ipaddress
import random
from typing import Any
from urllib.parse import quote, urlencode

from ..machinery import errors
from ..machinery.errors import APIError, Cause
from ..registry.registry import Registry
from ..registry.storage import ObjectStore
from ..transport.http import Request, Response
from .backend import BackendConnection, BackendError, splice

CONNECT_SUBRESOURCES = {"pods": ("log", "exec", "attach", "portforward", "proxy"), "nodes": ("proxy",),
                        "services": ("proxy",)}
PREFERRED_ADDRESS_TYPES = ("InternalIP", "ExternalIP", "Hostname")
DEFAULT_KUBELET_PORT = 10250
MAX_ERROR_BODY = 50_000          # upstream reads at most this much of a failed backend answer
# hop-by-hop and credential headers never sent on to a backend (the upgrade ones are, for upgrades)
_DROP = frozenset(("authorization", "host", "content-length", "transfer-encoding", "keep-alive", "te",
                   "trailer", "proxy-connection", "proxy-authorization", "impersonate-user", "impersonate-group",
                   "impersonate-uid"))
_UPGRADE_ONLY = frozenset(("connection", "upgrade"))
_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
            409: "Conflict", 410: "Gone", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
            503: "ServiceUnavailable", 504: "Timeout"}


def _flag(req: Request, name: str) -> bool:
    return (req.param(name) or "").lower() in ("1", "true")


class Location:
    """Where a connect request goes."""

    def __init__(self, scheme: str, host: str, port: int, path: str, query: str = ""):
        self.scheme, self.host, self.port, self.path, self.query = scheme, host, port, path, query

    @property
    def target(self) -> str:
        return quote(self.path, safe="/:@!$&'()*+,;=-._~") + (f"?{self.query}" if self.query else "")

    @property
    def hostport(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class Connect:
    """Serves the connect subresources from the objects in `objects`."""

    def __init__(self, objects: ObjectStore, registry: Registry):
        self.objects = objects
        self.registry = registry

    def _info(self, plural: str) -> Any:
        info = self.registry.get("", "v1", plural)
        if info is None:
            raise errors.unknown_resource()
        return info

    async def _get(self, plural: str, namespace: str | None, name: str) -> dict[str, Any]:
        return await self.objects.get(self._info(plural), namespace, name)

    # --- entry ----------------------------------------------------------------------------
    async def serve(self, req: Request, plural: str, namespace: str | None, name: str, sub: str,
                    rest: list[str]) -> Response | None:
        if plural == "pods" and sub == "log":
            if req.method not in ("GET", "HEAD"):
                raise errors.method_not_allowed()
            return await self.logs(req, namespace or "", name)
        if plural == "pods" and sub in ("exec", "attach", "portforward"):
            if req.method not in ("GET", "POST"):
                raise errors.method_not_allowed()
            loc = await self.stream_location(req, namespace or "", name, sub)
            return await self.relay(req, loc, "error dialing backend")
        suffix = "/" + "/".join(rest) if rest else "/"
        if req.path.endswith("/") and rest and not suffix.endswith("/"):
            suffix += "/"
        if plural == "nodes":
            loc = await self.node_proxy_location(name, suffix, req.raw_query)
        elif plural == "pods":
            loc = await self.pod_proxy_location(namespace or "", name, suffix, req.raw_query)
        else:
            loc = await self.service_proxy_location(namespace or "", name, suffix, req.raw_query)
        return await self.relay(req, loc, "error trying to reach service")

    # --- locations --------------------------------------------------------------------------
    async def kubelet(self, node_name: str) -> tuple[str, int]:
        node = await self._get("nodes", None, node_name)
        st = node.get("status") or {}
        addrs = [a for a in st.get("addresses") or [] if isinstance(a, dict)]
        host = None
        for t in PREFERRED_ADDRESS_TYPES:
            host = next((a.get("address") for a in addrs if a.get("type") == t and a.get("address")), None)
            if host:
                break
        if not host:
            known = "[" + " ".join(f"{{{a.get('type', '')} {a.get('address', '')}}}" for a in addrs) + "]"
            raise APIError(500, "", f"no preferred addresses found; known addresses: {known}")
        port = ((st.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 0
        return host, int(port) if isinstance(port, int) and port > 0 else DEFAULT_KUBELET_PORT

    @staticmethod
    def _container(pod: dict[str, Any], container: str) -> str:
        """upstream's validateContainer: the named container must exist; none named is
        fine when the pod has exactly one."""
        spec = pod.get("spec") or {}
        name = pod["metadata"]["name"]
        if not container:
            ctrs = spec.get("containers") or []
            if len(ctrs) == 1:
                return ctrs[0].get("name", "")
            if not ctrs:
                raise errors.bad_request(f"a container name must be specified for pod {name}")
            names = [c.get("name", "") for kind in ("initContainers", "containers", "ephemeralContainers")
                     for c in spec.get(kind) or []]
            raise errors.bad_request(f"a container name must be specified for pod {name}, "
                                     f"choose one of: [{' '.join(names)}]")
        for kind in ("initContainers", "containers", "ephemeralContainers"):
            if any(c.get("name") == container for c in spec.get(kind) or []):
                return container
        raise errors.bad_request(f"container {container} is not valid for pod {name}")

    async def stream_location(self, req: Request, namespace: str, name: str, sub: str) -> Location:
        pod = await self._get("pods", namespace, name)
        params: list[tuple[str, str]] = []
        if sub == "portforward":
            container = ""
            ports = [p for v in req.query.get("ports", []) for p in v.split(",") if p]
            bad = [p for p in ports if not p.isdigit() or not 0 < int(p) < 65536]
            if bad:
                raise errors.invalid("", "PodPortForwardOptions", "", [Cause(
                    "FieldValueInvalid", "ports", f'Invalid value: "{bad[0]}": must be between 1 and 65535')])
            if ports:
                params.append(("port", ",".join(ports)))
        else:
            container = self._container(pod, req.param("container") or "")
            for opt, param in (("stdin", "input"), ("stdout", "output"), ("stderr", "error"), ("tty", "tty")):
                if _flag(req, opt):
                    params.append((param, "1"))
            if sub == "exec":
                cmd = req.query.get("command", [])
                if not cmd:
                    raise errors.bad_request("you must specify at least 1 command")
                params += [("command", c) for c in cmd]
            if not any(_flag(req, s) for s in ("stdin", "stdout", "stderr")):
                raise errors.bad_request("you must specify at least 1 of stdin, stdout, stderr")
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            raise errors.bad_request(f"pod {name} does not have a host assigned")
        host, port = await self.kubelet(node)
        path = {"exec": "/exec", "attach": "/attach", "portforward": "/portForward"}[sub]
        path += f"/{namespace}/{name}" + (f"/{container}" if container else "")
        return Location("https", host, port, path, urlencode(params))

    async def node_proxy_location(self, name: str, suffix: str, query: str) -> Location:
        node_name, _, port_s = name.partition(":")
        host, port = await self.kubelet(node_name)
        if port_s:
            if not port_s.isdigit():
                raise errors.bad_request(f'invalid node request "{name}"')
            port = int(port_s)
        return Location("https", host, port, suffix, query)

    async def pod_proxy_location(self, namespace: str, name: str, suffix: str, query: str) -> Location:
        scheme, pod_name, port = _split_scheme_name_port(name)
        pod = await self._get("pods", namespace, pod_name)
        if not port:
            port = next((str(p["containerPort"]) for c in (pod.get("spec") or {}).get("containers") or []
                         for p in c.get("ports") or [] if p.get("containerPort")), "")
        ip = ((pod.get("status") or {}).get("podIPs") or [{}])[0].get("ip") or ""
        if not _global_unicast(ip):
            raise errors.bad_request("address not allowed")
        return Location(scheme or "http", ip, int(port) if port else 80, suffix, query)

    async def service_proxy_location(self, namespace: str, name: str, suffix: str, query: str) -> Location:
        scheme, svc_name, port_name = _split_scheme_name_port(name)
        svc = await self._get("services", namespace, svc_name)
        ports = (svc.get("spec") or {}).get("ports") or []
        sp = next((p for p in ports if port_name in (p.get("name", ""), str(p.get("port", ""))) or
                   (not port_name and len(ports) >= 1)), None)
        if sp is None:
            raise errors.APIError(503, "ServiceUnavailable", f'no service port "{port_name}" found for service '
                                  f'"{svc_name}"')
        try:
            eps = await self._get("endpoints", namespace, svc_name)
        except APIError:
            eps = {}
        for subset in eps.get("subsets") or []:
            port = next((p.get("port") for p in subset.get("ports") or []
                         if p.get("name", "") == sp.get("name", "")), None)
            addrs = [a.get("ip") for a in subset.get("addresses") or [] if a.get("ip")]
            if port and addrs:
                ip = random.choice(addrs)
                if not _global_unicast(ip):
                    raise errors.bad_request("address not allowed")
                return Location(scheme or "http", ip, int(port), suffix, query)
        raise errors.APIError(503, "ServiceUnavailable", f'no endpoints available for service "{svc_name}"')

    # --- pods/log -------------------------------------------------------------------------------
    async def logs(self, req: Request, namespace: str, name: str) -> Response | None:
        pod = await self._get("pods", namespace, name)
        container = self._container(pod, req.param("container") or "")
        params = _log_params(req, name)
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:      # upstream: an empty location, so an empty log
            return Response(200, b"", content_type="text/plain")
        host, port = await self.kubelet(node)
        loc = Location("https", host, port, f"/containerLogs/{namespace}/{name}/{container}", urlencode(params))
        try:
            be = await BackendConnection.open("https", host, port)
        except BackendError as e:
            raise APIError(500, "", f'Get "https://{loc.hostport}{loc.target}": {e}') from None
        try:
            try:
                head = await be.request("GET", loc.target, [("Host", loc.hostport), ("Accept", "*/*")])
            except BackendError as e:
                raise APIError(500, "", f'Get "https://{loc.hostport}{loc.target}": {e}') from None
            if not 200 <= head.status <= 206:
                text = (await be.read_all(MAX_ERROR_BODY)).decode("utf-8", "replace")
                raise _backend_error(head.status, text, name)
            stream = req.start_stream(200, [("Content-Type", "text/plain")])
            async for chunk in be.body():
                stream.write(chunk)
                if stream.closed:
                    break
                if stream.paused:
                    await stream.drain()
            return None
        finally:
            be.close()

    # --- the relay ---------------------------------------------------------------------------
    async def relay(self, req: Request, loc: Location, dial_error: str) -> Response | None:
        """Send the client's request to `loc` and its answer back; splice after a 101."""
        upgrade = req.upgrade
        try:
            be = await BackendConnection.open(loc.scheme, loc.host, loc.port)
        except BackendError as e:
            code = 500 if dial_error == "error dialing backend" else 503
            raise APIError(code, "" if code == 500 else "ServiceUnavailable", f"{dial_error}: {e}") from None
        handed_over = False
        try:
            headers = [("Host", loc.hostport)]
            for k, v in req.headers.items():
                lk = k.lower()
                if lk in _DROP or (lk in _UPGRADE_ONLY and not upgrade):
                    continue
                headers.append((k, v))
            if not upgrade:
                headers.append(("Connection", "close"))
            try:
                head = await be.request(req.method, loc.target, headers, req.body)
            except BackendError as e:
                raise APIError(500, "", f"{dial_error}: {e}") from None
            if upgrade and head.status == 101:
                tunnel = req.take_over()
                tunnel.write(head.raw)          # what the backend sent after its head follows in splice
                handed_over = True
                await splice(tunnel, be)
                return None
            hs = [(k, v) for k, v in head.headers
                  if k.lower() not in ("content-length", "transfer-encoding", "connection", "keep-alive")]
            ctype = next((v for k, v in hs if k.lower() == "content-type"), "")
            hs = [(k, v) for k, v in hs if k.lower() != "content-type"]
            if upgrade:      # no switch: answer what the backend said, bounded
                body = await be.read_all(MAX_ERROR_BODY)
                return Response(head.status, body, hs, content_type=ctype)
            if req.method == "HEAD":     # a HEAD answer has no body, whatever its Content-Length says
                return Response(head.status, b"", hs, content_type=ctype)
            stream = req.start_stream(head.status, hs + ([("Content-Type", ctype)] if ctype else []))
            async for chunk in be.body():
                stream.write(chunk)
                if stream.closed:
                    break
                if stream.paused:
                    await stream.drain()
            return None
        finally:
            if not handed_over:
                be.close()


def _backend_error(status: int, text: str, name: str) -> APIError:
    """upstream's GenericHttpResponseChecker: a kubelet's failed answer as a Status."""
    if status == 400:
        return errors.bad_request(text)
    if status == 500:
        return errors.internal(text)
    reason = _REASONS.get(status, "")
    return APIError(status, reason, text or f"the server responded with the status code {status} but did not "
                    "return more information", {"name": name, "kind": "pods/log",
                                                "causes": [{"reason": "UnexpectedServerResponse", "message": text}]})


def _log_params(req: Request, name: str) -> list[tuple[str, str]]:
    """PodLogOptions from the query, checked as upstream validates them, in the kubelet's
    parameter names."""
    params: list[tuple[str, str]] = []
    causes: list[Cause] = []
    for flag in ("follow", "previous", "timestamps"):
        v = req.param(flag)
        if v is not None:
            if v.lower() not in ("true", "false", "1", "0", ""):
                raise errors.bad_request(f'strconv.ParseBool: parsing "{v}": invalid syntax')
            if v.lower() in ("true", "1", ""):
                params.append((flag, "true"))
    ints: dict[str, int] = {}
    for key in ("sinceSeconds", "tailLines", "limitBytes"):
        v = req.param(key)
        if v is None or v == "":
            continue
        try:
            ints[key] = int(v)
        except ValueError:
            raise errors.bad_request(f'strconv.ParseInt: parsing "{v}": invalid syntax') from None
    if "tailLines" in ints and ints["tailLines"] < 0:
        causes.append(Cause("FieldValueInvalid", "tailLines",
                            f"Invalid value: {ints['tailLines']}: must be greater than or equal to 0"))
    if "limitBytes" in ints and ints["limitBytes"] < 1:
        causes.append(Cause("FieldValueInvalid", "limitBytes",
                            f"Invalid value: {ints['limitBytes']}: must be greater than 0"))
    if "sinceSeconds" in ints and ints["sinceSeconds"] < 1:
        causes.append(Cause("FieldValueInvalid", "sinceSeconds",
                            f"Invalid value: {ints['sinceSeconds']}: must be greater than 0"))
    since_time = req.param("sinceTime")
    if since_time and "sinceSeconds" in ints:
        causes.append(Cause("FieldValueForbidden", "",
                            "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"))
    if causes:
        raise errors.invalid("", "PodLogOptions", name, causes)
    for key in ("sinceSeconds", "tailLines", "limitBytes"):
        if key in ints:
            params.append((key, str(ints[key])))
    if since_time:
        params.append(("sinceTime", since_time))
    return params


def _split_scheme_name_port(id_: str) -> tuple[str, str, str]:
    """upstream's SplitSchemeNamePort: "name", "name:port" or "scheme:name:port"."""
    parts = id_.split(":")
    if len(parts) == 1:
        return "", parts[0], ""
    if len(parts) == 2:
        return "", parts[0], parts[1]
    if len(parts) == 3 and parts[0] in ("http", "https"):
        return parts[0], parts[1], parts[2]
    raise errors.bad_request(f'invalid request "{id_}"')


def _global_unicast(ip: str) -> bool:
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return not (a.is_loopback or a.is_multicast or a.is_link_local or a.is_unspecified or
                (a.version == 4 and a == ipaddress.IPv4Address("255.255.255.255")))
