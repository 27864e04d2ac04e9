"""Just enough of an API server client for the standalone kubelet: read a kubeconfig
(server, CA, bearer token or client certificate), GET a pod, register a node and publish
where its kubelet listens. Blocking calls (http.client) run in a thread. The simulator
will use kubeplane's client library and informers instead; this keeps the standalone
command free of it.
"""
from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import ssl
import tempfile
from typing import Any
from urllib.parse import quote, urlsplit

import yaml


class APIClient:
    def __init__(self, kubeconfig: str):
        with open(kubeconfig) as f:
            cfg = yaml.safe_load(f) or {}
        ctx_name = cfg.get("current-context")
        ctx = next((c["context"] for c in cfg.get("contexts") or [] if c.get("name") == ctx_name), {})
        cluster = next((c["cluster"] for c in cfg.get("clusters") or [] if c.get("name") == ctx.get("cluster")), {})
        user = next((u["user"] for u in cfg.get("users") or [] if u.get("name") == ctx.get("user")), {}) or {}
        url = urlsplit(cluster.get("server", ""))
        self.https = url.scheme == "https"
        self.host, self.port = url.hostname or "127.0.0.1", url.port or (443 if self.https else 80)
        self.headers = {"Accept": "application/json", "User-Agent": "kubeplane-sim-kubelet"}
        if user.get("token"):
            self.headers["Authorization"] = f"Bearer {user['token']}"
        self.ssl = None
        if self.https:
            self.ssl = ssl.create_default_context()
            if cluster.get("certificate-authority-data"):
                self.ssl.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
            elif cluster.get("certificate-authority"):
                self.ssl.load_verify_locations(cluster["certificate-authority"])
            if cluster.get("insecure-skip-tls-verify"):
                self.ssl.check_hostname = False
                self.ssl.verify_mode = ssl.CERT_NONE
            cert, key = user.get("client-certificate-data"), user.get("client-key-data")
            if cert and key:
                with tempfile.TemporaryDirectory() as d:
                    cp, kp = os.path.join(d, "c"), os.path.join(d, "k")
                    with open(cp, "wb") as f:
                        f.write(base64.b64decode(cert))
                    with open(kp, "wb") as f:
                        f.write(base64.b64decode(key))
                    self.ssl.load_cert_chain(cp, kp)
            elif user.get("client-certificate") and user.get("client-key"):
                self.ssl.load_cert_chain(user["client-certificate"], user["client-key"])

    def _call(self, method: str, path: str, body: Any = None, content_type: str = "application/json"
              ) -> tuple[int, Any]:
        conn = (http.client.HTTPSConnection(self.host, self.port, context=self.ssl, timeout=30) if self.https
                else http.client.HTTPConnection(self.host, self.port, timeout=30))
        try:
            hs = dict(self.headers)
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                hs["Content-Type"] = content_type
            conn.request(method, path, body=data, headers=hs)
            r = conn.getresponse()
            raw = r.read()
            try:
                return r.status, json.loads(raw) if raw else None
            except ValueError:
                return r.status, raw.decode("utf-8", "replace")
        finally:
            conn.close()

    async def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json"
                   ) -> tuple[int, Any]:
        return await asyncio.to_thread(self._call, method, path, body, content_type)

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        code, obj = await self.call("GET", f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}")
        return obj if code == 200 and isinstance(obj, dict) else None

    async def register_node(self, name: str, host: str, port: int) -> None:
        """Create the Node if missing and publish the kubelet's address and port in its status."""
        code, obj = await self.call("POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                                             "metadata": {"name": name}})
        if code not in (201, 409):
            raise RuntimeError(f"creating node {name}: {code} {obj}")
        code, obj = await self.call("PATCH", f"/api/v1/nodes/{quote(name)}/status", {"status": {
            "addresses": [{"type": "InternalIP", "address": host}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}, "application/merge-patch+json")
        if code != 200:
            raise RuntimeError(f"publishing node {name}'s kubelet endpoint: {code} {obj}")
