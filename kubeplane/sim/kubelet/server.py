"""The simulated kubelet API: one HTTPS server per process for any number of nodes.

The API server reaches a node's kubelet at the Node's address (`status.addresses`) and
`status.daemonEndpoints.kubeletEndpoint.Port`. A `KubeletServer` listens on as many
loopback addresses or ports as its nodes need (`add_node`): nodes that must be told apart
(nodes/proxy: /healthz, /pods, /metrics answer for the nodes of the address dialled) get
an address of their own, e.g. 127.0.0.2, 127.0.0.3, ... with one shared port; the pod
paths name the pod themselves, so any listener serves them, for a pod bound to one of
its nodes.

Paths (upstream's kubelet server):
    GET      /healthz, /pods, /metrics
    GET      /containerLogs/{ns}/{pod}/{container}?follow&tailLines&timestamps&sinceSeconds
             &sinceTime&limitBytes&previous
    GET|POST /exec/{ns}/{pod}/{container}?command=..&input&output&error&tty   (upgrade)
    GET|POST /attach/{ns}/{pod}/{container}?input&output&error&tty             (upgrade)
    GET|POST /portForward/{ns}/{pod}                                            (upgrade)
Errors are plain text, as the kubelet's go-restful handlers write them.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Awaitable, Callable

from . import portforward, remotecommand
from .http import Request, Response, head, listen
from .responder import LogOptions, PodLogs, containers, parse_time
from .tls import server_context
from .websocket import is_websocket

log = logging.getLogger("kubeplane.sim.kubelet")

PodLookup = Callable[[str, str], Awaitable[dict[str, Any] | None]]


def _text(status: int, msg: str) -> Response:
    """A plain-text error, as the kubelet's go-restful handlers write them."""
    return Response(status, msg.encode())


NOT_FOUND = Response(404, b"404 page not found\n")     # Go's http.NotFound, for unknown paths


class KubeletServer:
    """Pods come from `set_pod` (what the simulator's informer sees) or, for pods it was
    not told about, from `lookup` (e.g. a GET against the API server). Exec never runs a
    real program unless `allow_real_commands` and the pod's annotation both say so."""

    def __init__(self, lookup: PodLookup | None = None, client_ca: str | None = None,
                 now: Callable[[], float] = time.time, allow_real_commands: bool = False):
        self.lookup = lookup
        self.allow_real_commands = allow_real_commands   # honour kubeplane.io/exec-real-commands
        self.client_ca = client_ca
        self.now = now
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.listeners: dict[tuple[str, int], set[str]] = {}
        self.servers: dict[tuple[str, int], asyncio.base_events.Server] = {}
        self._ssl = None
        self.requests = 0

    # --- nodes and pods -----------------------------------------------------------------
    async def add_node(self, name: str, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Serve node `name` at host:port (port 0: a free one, or the port host already
        has); returns where. Nodes given the same host and port share a listener."""
        for (h, p), nodes in self.listeners.items():
            if h == host and (port in (0, p)):
                nodes.add(name)
                return h, p
        if self._ssl is None:
            self._ssl = server_context([host], self.client_ca)
        srv = await listen(self._handle, host, port, self._ssl)
        where = srv.sockets[0].getsockname()[:2]
        self.servers[where] = srv
        self.listeners[where] = {name}
        return where

    def set_pod(self, pod: dict[str, Any]) -> None:
        md = pod.get("metadata") or {}
        self.pods[(md.get("namespace", ""), md.get("name", ""))] = pod

    def remove_pod(self, namespace: str, name: str) -> None:
        self.pods.pop((namespace, name), None)

    async def close(self) -> None:
        for s in self.servers.values():
            s.close()
        for s in self.servers.values():
            try:
                await asyncio.wait_for(s.wait_closed(), 2)
            except asyncio.TimeoutError:
                pass
        self.servers.clear()
        self.listeners.clear()

    def _nodes_at(self, local: tuple[str, int]) -> set[str] | None:
        return self.listeners.get(local)

    async def _pod(self, req: Request, ns: str, name: str) -> dict[str, Any] | None:
        pod = self.pods.get((ns, name))
        if pod is None and self.lookup is not None:
            pod = await self.lookup(ns, name)
        if pod is None:
            return None
        nodes = self._nodes_at(req.local)
        if nodes and (pod.get("spec") or {}).get("nodeName") not in nodes:
            return None            # bound to a node this address does not serve: not ours
        return pod

    # --- routing --------------------------------------------------------------------------
    async def _handle(self, req: Request) -> Response | None:
        self.requests += 1
        parts = [p for p in req.path.split("/") if p]
        if not parts:
            return NOT_FOUND
        head_, rest = parts[0], parts[1:]
        if head_ == "healthz" and not rest:
            return Response(200, b"ok")
        if head_ == "pods" and not rest:
            return self._pod_list(req)
        if head_ == "metrics" and not rest:
            return self._metrics(req)
        if head_ == "containerLogs" and len(rest) == 3:
            return await self._logs(req, *rest)
        if head_ in ("exec", "attach") and len(rest) in (3, 4):
            return await self._remotecommand(req, head_, *rest[-3:])
        if head_ == "portForward" and len(rest) in (2, 3):
            return await self._portforward(req, *rest[-2:])
        return NOT_FOUND

    def _node_pods(self, req: Request) -> list[dict[str, Any]]:
        nodes = self._nodes_at(req.local)
        return [p for p in self.pods.values() if not nodes or (p.get("spec") or {}).get("nodeName") in nodes]

    def _pod_list(self, req: Request) -> Response:
        body = json.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {},
                           "items": sorted(self._node_pods(req), key=lambda p: (
                               p["metadata"].get("namespace", ""), p["metadata"].get("name", "")))})
        return Response(200, body.encode(), "application/json")

    def _metrics(self, req: Request) -> Response:
        pods = self._node_pods(req)
        ctrs = sum(len((p.get("spec") or {}).get("containers") or []) for p in pods)
        text = ("# HELP kubelet_running_pods Number of pods that have a running pod sandbox\n"
                "# TYPE kubelet_running_pods gauge\n"
                f"kubelet_running_pods {len(pods)}\n"
                "# HELP kubelet_running_containers Number of containers currently running\n"
                "# TYPE kubelet_running_containers gauge\n"
                f'kubelet_running_containers{{container_state="running"}} {ctrs}\n')
        return Response(200, text.encode(), "text/plain; version=0.0.4; charset=utf-8")

    async def _checked(self, req: Request, ns: str, name: str, container: str | None
                       ) -> tuple[dict[str, Any] | None, Response | None]:
        pod = await self._pod(req, ns, name)
        if pod is None:
            return None, _text(404, f'pod "{name}" does not exist')
        if container is not None and not any(c.get("name") == container for c in containers(pod)):
            return None, _text(404, f'container "{container}" not found in pod "{name}"')
        return pod, None

    async def _logs(self, req: Request, ns: str, name: str, container: str) -> Response | None:
        if req.method not in ("GET", "HEAD"):
            return _text(405, "405: Method Not Allowed")
        pod, err = await self._checked(req, ns, name, container)
        if err is not None:
            return err
        assert pod is not None
        try:
            opts = _log_options(req, self.now())
        except ValueError as e:
            return _text(400, str(e))
        if (req.param("previous") or "").lower() in ("1", "true"):
            restarts = next((cs.get("restartCount", 0) for cs in (pod.get("status") or {}).get("containerStatuses")
                             or [] if cs.get("name") == container), 0)
            if not restarts:
                return _text(400, f'previous terminated container "{container}" in pod "{name}" not found')
        w = req.writer
        w.write(head(200, [("Content-Type", "text/plain"), ("Connection", "close")]))
        try:
            async for chunk in PodLogs(pod, container).stream(opts, self.now):
                w.write(chunk)
                await w.drain()
        except ConnectionError:
            pass
        return None

    async def _remotecommand(self, req: Request, kind: str, ns: str, name: str, container: str) -> Response | None:
        if req.method not in ("GET", "POST"):
            return _text(405, "405: Method Not Allowed")
        pod, err = await self._checked(req, ns, name, container)
        if err is not None:
            return err
        assert pod is not None
        opts = remotecommand.Options.of(req)
        if kind == "exec" and not opts.command:
            return _text(400, "you must specify at least 1 command")
        if not (opts.stdin or opts.stdout or opts.stderr):
            return _text(400, "you must specify at least 1 of stdin, stdout, stderr")
        if kind == "exec":
            run = remotecommand.exec_runner(pod, container, opts, self.allow_real_commands)
        else:
            run = remotecommand.attach_runner(pod, container, opts)
        if is_websocket(req):
            await remotecommand.serve_websocket(req, opts, run)
        elif req.headers.get("upgrade", "").lower().startswith("spdy/3.1"):
            await remotecommand.serve_spdy(req, opts, run)
        else:
            return _text(400, "Upgrade request required")
        return None

    async def _portforward(self, req: Request, ns: str, name: str) -> Response | None:
        if req.method not in ("GET", "POST"):
            return _text(405, "405: Method Not Allowed")
        pod, err = await self._checked(req, ns, name, None)
        if err is not None:
            return err
        assert pod is not None
        if is_websocket(req):
            await portforward.serve_websocket(req, pod)
        elif req.headers.get("upgrade", "").lower().startswith("spdy/3.1"):
            await portforward.serve_spdy(req, pod)
        else:
            return _text(400, "Upgrade request required")
        return None


def _log_options(req: Request, now: float) -> LogOptions:
    def int_param(name: str) -> int | None:
        v = req.param(name)
        if v is None or v == "":
            return None
        try:
            return int(v)
        except ValueError:
            raise ValueError(f'{name}: invalid value "{v}"') from None

    since = None
    secs = int_param("sinceSeconds")
    if secs is not None:
        since = now - secs
    st = req.param("sinceTime")
    if st:
        since = parse_time(st)
        if since is None:
            raise ValueError(f'sinceTime: invalid value "{st}"')
    return LogOptions(follow=(req.param("follow") or "").lower() in ("1", "true"),
                      timestamps=(req.param("timestamps") or "").lower() in ("1", "true"),
                      tail_lines=int_param("tailLines"), since=since, limit_bytes=int_param("limitBytes"))
