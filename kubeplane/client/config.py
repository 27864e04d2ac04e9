"""Connection settings: which servers, which credentials, how fast.

`load_kubeconfig()` reads a kubeconfig file the way kubectl does ($KUBECONFIG, first
file of a colon-separated list, else ~/.kube/config; the current context unless one is
named): bearer token (`token` or `tokenFile`), client certificate and key (file or
base64 `-data`), CA (file or data), `insecure-skip-tls-verify`, `tls-server-name`.
Exec and auth-provider plugins are not run (a clear error says so).

`Config.servers` may hold several URLs of API servers that share one store: the client
spreads requests over them (kubeplane.client.balancer).
"""
from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_USER_AGENT = "kubeplane-client/0.1"


class ConfigError(ValueError):
    """The kubeconfig is missing, malformed or asks for something this client cannot do."""


@dataclass
class Config:
    """Everything a `Client` needs. Defaults follow client-go's rest.Config (QPS 5, burst
    10); kubeplane's components set their own, as upstream's do."""
    servers: list[str] = field(default_factory=list)
    token: str | None = None
    token_file: str | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None
    client_cert_data: bytes | None = None
    client_key_data: bytes | None = None
    ca_file: str | None = None
    ca_data: bytes | None = None
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None
    qps: float = 5.0
    burst: int = 10
    user_agent: str = DEFAULT_USER_AGENT
    timeout: float = 60.0            # a whole non-watch request, seconds
    connect_timeout: float = 5.0
    max_retries: int = 10            # client-go's default for Retry-After and idempotent retries
    max_connections_per_server: int = 100

    @property
    def server(self) -> str:
        """The first server (most configs have only one)."""
        if not self.servers:
            raise ConfigError("no server configured")
        return self.servers[0]

    def bearer_token(self) -> str | None:
        """The token; a `tokenFile` is read on every call, as client-go re-reads it (it may rotate)."""
        if self.token_file:
            try:
                return Path(self.token_file).read_text().strip()
            except OSError as e:
                raise ConfigError(f"cannot read token file {self.token_file}: {e}") from e
        return self.token

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for https servers (None when every server is plain http)."""
        if not any(s.startswith("https://") for s in self.servers):
            return None
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if self.insecure_skip_tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_data or self.ca_file:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file,
                                             cadata=self.ca_data.decode() if self.ca_data else None)
        cert, key = self.client_cert_data, self.client_key_data
        if self.client_cert_file or cert:
            _load_client_cert(ctx, self.client_cert_file, self.client_key_file, cert, key)
        return ctx


def _load_client_cert(ctx: ssl.SSLContext, cert_file: str | None, key_file: str | None,
                      cert_data: bytes | None, key_data: bytes | None) -> None:
    """ssl loads certificates only from files: inline data goes through a 0600 temporary
    file that is removed at once."""
    if cert_data is None and key_data is None:
        ctx.load_cert_chain(cert_file, key_file)  # type: ignore[arg-type]
        return
    with tempfile.TemporaryDirectory(prefix="kubeplane-client-") as d:
        cf = cert_file
        kf = key_file
        if cert_data is not None:
            cf = os.path.join(d, "cert.pem")
            _write_private(cf, cert_data)
        if key_data is not None:
            kf = os.path.join(d, "key.pem")
            _write_private(kf, key_data)
        if cf is None:
            raise ConfigError("client key given without a client certificate")
        ctx.load_cert_chain(cf, kf)


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{what} is not valid base64") from e


def _named(items: Any, name: str, what: str) -> dict[str, Any]:
    for it in items or []:
        if isinstance(it, dict) and it.get("name") == name:
            return it.get(what) or {}
    raise ConfigError(f"kubeconfig has no {what} named {name!r}")


def _resolve(base: Path, p: str | None) -> str | None:
    """Relative paths in a kubeconfig are relative to the file, as kubectl resolves them."""
    if not p:
        return None
    q = Path(os.path.expanduser(p))
    return str(q if q.is_absolute() else base / q)


def default_kubeconfig_path() -> str:
    env = os.environ.get("KUBECONFIG", "")
    for p in env.split(os.pathsep):
        if p:
            return p
    return os.path.expanduser("~/.kube/config")


def load_kubeconfig(path: str | os.PathLike[str] | None = None, context: str | None = None) -> Config:
    """A Config from a kubeconfig file (see the module docstring for what is honoured)."""
    p = Path(path) if path is not None else Path(default_kubeconfig_path())
    try:
        doc = yaml.safe_load(p.read_text())
    except OSError as e:
        raise ConfigError(f"cannot read kubeconfig {p}: {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"kubeconfig {p} is not valid YAML: {e}") from e
    if not isinstance(doc, dict):
        raise ConfigError(f"kubeconfig {p} is not a mapping")
    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise ConfigError(f"kubeconfig {p} has no current-context and none was given")
    ctx = _named(doc.get("contexts"), ctx_name, "context")
    cluster = _named(doc.get("clusters"), ctx.get("cluster", ""), "cluster")
    user = _named(doc.get("users"), ctx["user"], "user") if ctx.get("user") else {}
    if not cluster.get("server"):
        raise ConfigError(f"cluster {ctx.get('cluster')!r} has no server")
    if "exec" in user or "auth-provider" in user:
        raise ConfigError("exec and auth-provider credential plugins are not supported")
    base = p.resolve().parent
    cfg = Config(servers=[str(cluster["server"]).rstrip("/")])
    cfg.insecure_skip_tls_verify = bool(cluster.get("insecure-skip-tls-verify"))
    cfg.tls_server_name = cluster.get("tls-server-name")
    cfg.ca_file = _resolve(base, cluster.get("certificate-authority"))
    if cluster.get("certificate-authority-data"):
        cfg.ca_data = _b64(cluster["certificate-authority-data"], "certificate-authority-data")
    cfg.token = user.get("token")
    cfg.token_file = _resolve(base, user.get("tokenFile"))
    cfg.client_cert_file = _resolve(base, user.get("client-certificate"))
    cfg.client_key_file = _resolve(base, user.get("client-key"))
    if user.get("client-certificate-data"):
        cfg.client_cert_data = _b64(user["client-certificate-data"], "client-certificate-data")
    if user.get("client-key-data"):
        cfg.client_key_data = _b64(user["client-key-data"], "client-key-data")
    if (cfg.client_cert_file or cfg.client_cert_data) and not (cfg.client_key_file or cfg.client_key_data):
        raise ConfigError("client certificate given without a client key")
    return cfg
