"""PKI and kubeconfig: SANs, reuse and regeneration rules, file modes, a real TLS handshake,
and the kubeconfig as the Python Kubernetes clients load it."""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import os
import ssl
import stat
import time

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kubeplane.apiserver.transport import certs
from kubeplane.apiserver.transport.certs import Pki, cert_sans, ensure_pki, write_kubeconfig


def _cert(path: str) -> x509.Certificate:
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_first_start_makes_ca_serving_cert_and_token_fast(tmp_path):
    t0 = time.perf_counter()
    pki = ensure_pki(str(tmp_path / "pki"), ["10.1.2.3", "node-a.example.com", "[fd00::7]"])
    assert time.perf_counter() - t0 < 1.0
    for name in ("ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "token"):
        assert (tmp_path / "pki" / name).exists()
    assert _mode(pki.ca_key) == 0o600 and _mode(pki.key) == 0o600 and _mode(pki.token_file) == 0o600
    assert _mode(pki.dir) == 0o700

    ca = _cert(pki.ca_cert)
    assert ca.subject.rfc4514_string() == "CN=kubeplane-ca"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    life = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert dt.timedelta(days=3649) < life < dt.timedelta(days=3651)

    srv = _cert(pki.cert)
    srv.verify_directly_issued_by(ca)
    dns, ips = cert_sans(srv)
    assert {"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local", "node-a.example.com"} == dns
    assert {ipaddress.ip_address(a) for a in ("127.0.0.1", "::1", "10.1.2.3", "fd00::7")} == ips
    eku = srv.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in eku

    assert len(base64.urlsafe_b64decode(pki.token + "=")) == 32
    assert open(pki.token_file).read().strip() == pki.token


def test_second_start_reuses_everything(tmp_path):
    d = str(tmp_path)
    first = ensure_pki(d, ["10.1.2.3"])
    files = {n: open(os.path.join(d, n), "rb").read()
             for n in ("ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "token")}
    second = ensure_pki(d, ["10.1.2.3"])
    assert second == first
    for n, data in files.items():
        assert open(os.path.join(d, n), "rb").read() == data, n
    # A subset of the hosts (here none) is already covered: still reused.
    ensure_pki(d, [])
    assert open(os.path.join(d, "apiserver.crt"), "rb").read() == files["apiserver.crt"]


def test_new_host_regenerates_serving_cert_keeping_ca_and_old_names(tmp_path):
    d = str(tmp_path)
    first = ensure_pki(d, ["10.1.2.3"])
    ca_before = open(first.ca_cert, "rb").read()
    srv_before = open(first.cert, "rb").read()
    second = ensure_pki(d, ["api.example.org"])
    assert open(second.ca_cert, "rb").read() == ca_before
    assert open(second.cert, "rb").read() != srv_before
    assert second.token == first.token
    dns, ips = cert_sans(_cert(second.cert))
    assert "api.example.org" in dns
    assert ipaddress.ip_address("10.1.2.3") in ips   # earlier host kept


def test_expiring_serving_cert_is_renewed(tmp_path, monkeypatch):
    d = str(tmp_path)
    monkeypatch.setattr(certs, "SERVING_VALIDITY", dt.timedelta(days=20))
    first = ensure_pki(d, [])
    short = _cert(first.cert)
    monkeypatch.setattr(certs, "SERVING_VALIDITY", dt.timedelta(days=365))
    second = ensure_pki(d, [])
    renewed = _cert(second.cert)
    assert renewed.serial_number != short.serial_number
    assert renewed.not_valid_after_utc - dt.datetime.now(dt.timezone.utc) > dt.timedelta(days=300)


def test_broken_or_foreign_files_are_repaired(tmp_path):
    d = str(tmp_path)
    first = ensure_pki(d, [])
    # A serving cert signed by some other CA is replaced.
    other = ensure_pki(str(tmp_path / "other"), [])
    os.replace(other.cert, first.cert)
    os.replace(other.key, first.key)
    ensure_pki(d, [])
    _cert(first.cert).verify_directly_issued_by(_cert(first.ca_cert))
    # A truncated CA key makes a new CA, and a new serving cert signed by it.
    with open(first.ca_key, "wb") as f:
        f.write(b"-----BEGIN PRIVATE KEY-----\n")
    third = ensure_pki(d, [])
    ca = _cert(third.ca_cert)
    _cert(third.cert).verify_directly_issued_by(ca)
    # An empty token file gets a fresh token.
    open(third.token_file, "w").close()
    fourth = ensure_pki(d, [])
    assert len(fourth.token) >= 43 and fourth.token != first.token


def test_bad_host_is_rejected(tmp_path):
    with pytest.raises(ValueError):
        ensure_pki(str(tmp_path), ["not a host"])
    with pytest.raises(ValueError):
        ensure_pki(str(tmp_path), ["http://x"])


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
async def test_tls_handshake_strict_client_alpn_http11(tmp_path):
    pki = ensure_pki(str(tmp_path), [])

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hi")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=pki.ssl_context())
    port = server.sockets[0].getsockname()[1]
    try:
        for host in ("localhost", "127.0.0.1", "kubernetes.default.svc"):
            client = ssl.create_default_context(cafile=pki.ca_cert)
            # Python 3.13's default; requires proper CA/leaf extensions (AKI, key usage).
            client.verify_flags |= ssl.VERIFY_X509_STRICT
            client.set_alpn_protocols(["h2", "http/1.1"])   # what Go's client offers
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client,
                                                           server_hostname=host)
            sslobj = writer.get_extra_info("ssl_object")
            assert sslobj.selected_alpn_protocol() == "http/1.1"
            assert sslobj.version() in ("TLSv1.2", "TLSv1.3")
            assert await reader.read() == b"hi"
            writer.close()
        # A client restricted to TLS 1.1 is refused.
        old = ssl.create_default_context(cafile=pki.ca_cert)
        old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.open_connection("127.0.0.1", port, ssl=old, server_hostname="localhost")
        # A name not on the certificate fails verification.
        client = ssl.create_default_context(cafile=pki.ca_cert)
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection("127.0.0.1", port, ssl=client,
                                          server_hostname="evil.example.com")
    finally:
        server.close()
        await server.wait_closed()


def _kubeconfig(tmp_path) -> tuple[str, Pki]:
    pki = ensure_pki(str(tmp_path / "pki"), [])
    path = str(tmp_path / "home" / ".kube" / "config")
    write_kubeconfig(path, "https://127.0.0.1:6443", pki)
    return path, pki


def test_kubeconfig_file_shape_and_mode(tmp_path):
    path, pki = _kubeconfig(tmp_path)
    assert _mode(path) == 0o600
    doc = yaml.safe_load(open(path))
    assert doc["apiVersion"] == "v1" and doc["kind"] == "Config"
    assert doc["current-context"] == "kubeplane"
    [cluster] = doc["clusters"]
    assert cluster["cluster"]["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["cluster"]["certificate-authority-data"]) == pki.ca_pem()
    [user] = doc["users"]
    assert user["user"] == {"token": pki.token}
    [ctx] = doc["contexts"]
    assert ctx == {"name": "kubeplane", "context": {"cluster": "kubeplane", "user": user["name"]}}
    # Rewriting replaces the file atomically, no temp files left behind.
    write_kubeconfig(path, "https://127.0.0.1:7443", pki, context_name="other")
    assert yaml.safe_load(open(path))["current-context"] == "other"
    assert os.listdir(os.path.dirname(path)) == ["config"]


def test_kubeconfig_loads_in_kubernetes_client(tmp_path):
    from kubernetes import client, config
    path, pki = _kubeconfig(tmp_path)
    cfg = client.Configuration()
    config.load_kube_config(config_file=path, client_configuration=cfg)
    assert cfg.host == "https://127.0.0.1:6443"
    # The key's name differs across client versions ("authorization", "BearerToken").
    auth = cfg.auth_settings()
    assert [a["value"] for a in auth.values() if a["key"] == "authorization"] == [
        f"Bearer {pki.token}"]
    assert cfg.verify_ssl
    with open(cfg.ssl_ca_cert, "rb") as f:
        assert f.read() == pki.ca_pem()


def test_kubeconfig_loads_in_lightkube(tmp_path):
    from lightkube.config.kubeconfig import KubeConfig
    path, pki = _kubeconfig(tmp_path)
    single = KubeConfig.from_file(path).get()
    assert single.context_name == "kubeplane"
    assert single.cluster.server == "https://127.0.0.1:6443"
    assert base64.b64decode(single.cluster.certificate_auth_data) == pki.ca_pem()
    assert single.user.token == pki.token


async def test_kubeconfig_loads_in_kr8s(tmp_path):
    from kr8s._auth import KubeAuth
    path, pki = _kubeconfig(tmp_path)
    auth = KubeAuth(kubeconfig=path)
    await auth.reauthenticate()
    assert auth.server == "https://127.0.0.1:6443"
    assert auth.token == pki.token
    with open(auth.server_ca_file, "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    assert ca.public_bytes(serialization.Encoding.PEM) == pki.ca_pem()
