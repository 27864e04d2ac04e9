"""Kubeconfig loading, and credentials on the wire: the written kubeconfig's token and CA
over HTTPS to `kubeplane serve`, and a client certificate to a TLS server that demands one."""
from __future__ import annotations

import base64
import ssl
from pathlib import Path

import aiohttp.web
import pytest
import yaml

from kubeplane.client import NAMESPACES, ApiConnectionError, ApiError, Client, ConfigError, load_kubeconfig
from pki import make_pki


def _write(path: Path, clusters, users, contexts, current="a") -> Path:
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": current,
                                    "clusters": clusters, "users": users, "contexts": contexts}))
    return path


def test_contexts_token_and_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "tok").write_text("file-token\n")
    p = _write(tmp_path / "kc",
               [{"name": "c1", "cluster": {"server": "https://10.0.0.1:6443/", "certificate-authority": "ca.crt"}},
                {"name": "c2", "cluster": {"server": "http://127.0.0.1:8080", "insecure-skip-tls-verify": True}}],
               [{"name": "u1", "user": {"token": "abc"}}, {"name": "u2", "user": {"tokenFile": "tok"}}],
               [{"name": "a", "context": {"cluster": "c1", "user": "u1"}},
                {"name": "b", "context": {"cluster": "c2", "user": "u2"}}])
    a = load_kubeconfig(p)
    assert a.servers == ["https://10.0.0.1:6443"]
    assert a.ca_file == str(tmp_path / "ca.crt")
    assert a.bearer_token() == "abc"
    b = load_kubeconfig(p, context="b")
    assert b.servers == ["http://127.0.0.1:8080"] and b.insecure_skip_tls_verify
    assert b.bearer_token() == "file-token"
    monkeypatch.setenv("KUBECONFIG", f"{p}:{tmp_path / 'other'}")
    assert load_kubeconfig().servers == a.servers
    with pytest.raises(ConfigError, match="no context named 'zzz'"):
        load_kubeconfig(p, context="zzz")


def test_bad_kubeconfigs_say_what_is_wrong(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_kubeconfig(tmp_path / "missing")
    (tmp_path / "bad").write_text("a: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_kubeconfig(tmp_path / "bad")
    p = _write(tmp_path / "exec", [{"name": "c", "cluster": {"server": "https://x"}}],
               [{"name": "u", "user": {"exec": {"command": "aws"}}}],
               [{"name": "a", "context": {"cluster": "c", "user": "u"}}])
    with pytest.raises(ConfigError, match="exec"):
        load_kubeconfig(p)
    p = _write(tmp_path / "b64", [{"name": "c", "cluster": {"server": "https://x",
                                                             "certificate-authority-data": "!!notbase64"}}],
               [], [{"name": "a", "context": {"cluster": "c"}}])
    with pytest.raises(ConfigError, match="base64"):
        load_kubeconfig(p)


async def test_written_kubeconfig_over_https(server):
    """The kubeconfig `kubeplane serve` writes (token + CA data) works over HTTPS; a
    wrong token gets the server's 401 Status as an ApiError."""
    cfg = load_kubeconfig(server.kubeconfig)
    assert cfg.server.startswith("https://127.0.0.1:")
    async with Client(cfg) as c:
        ns = await c.get(NAMESPACES.path(name="default"))
        assert ns["metadata"]["name"] == "default"
    cfg.token = "wrong"
    async with Client(cfg) as c:
        with pytest.raises(ApiError) as ei:
            await c.get(NAMESPACES.path())
        assert ei.value.status == 401 and ei.value.reason == "Unauthorized"


@pytest.mark.parametrize("inline", [False, True])
async def test_client_certificate_is_presented(tmp_path: Path, inline: bool):
    """A TLS server that requires a client certificate signed by its CA sees ours, from
    files or from base64 data in the kubeconfig."""
    pki = make_pki(tmp_path)
    sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki["ca"]))
    sctx.verify_mode = ssl.CERT_REQUIRED
    sctx.load_cert_chain(pki["server_cert"], pki["server_key"])

    async def whoami(request: aiohttp.web.Request) -> aiohttp.web.Response:
        peer = request.transport.get_extra_info("peercert")
        cn = dict(x[0] for x in peer["subject"])["commonName"]
        return aiohttp.web.json_response({"kind": "Status", "message": cn})

    app = aiohttp.web.Application()
    app.router.add_get("/whoami", whoami)
    runner = aiohttp.web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0, ssl_context=sctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        b64 = lambda p: base64.b64encode(p.read_bytes()).decode()  # noqa: E731
        user = ({"client-certificate-data": b64(pki["client_cert"]), "client-key-data": b64(pki["client_key"])}
                if inline else {"client-certificate": str(pki["client_cert"]), "client-key": str(pki["client_key"])})
        p = _write(tmp_path / "kc", [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                                "certificate-authority-data": b64(pki["ca"])}}],
                   [{"name": "u", "user": user}], [{"name": "a", "context": {"cluster": "c", "user": "u"}}])
        async with Client(load_kubeconfig(p)) as c:
            assert (await c.get("/whoami"))["message"] == "kubeplane-test-user"
        # without the certificate the handshake fails: no answer at all
        cfg = load_kubeconfig(p)
        cfg.client_cert_data = cfg.client_key_data = cfg.client_cert_file = cfg.client_key_file = None
        cfg.max_retries = 0
        async with Client(cfg) as c:
            with pytest.raises(ApiConnectionError):
                await c.get("/whoami")
    finally:
        await runner.cleanup()
