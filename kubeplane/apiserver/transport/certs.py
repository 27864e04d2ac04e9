"""TLS material and the admin kubeconfig for kubeplane's API server.

`ensure_pki(dir, hosts)` makes (first start) or reuses (later starts) everything the server
needs to speak HTTPS and to let an admin in:

    ca.crt / ca.key              self-signed CA "kubeplane-ca", ECDSA P-256, 10 years
    apiserver.crt / apiserver.key serving certificate signed by that CA, 1 year
    token                        the admin bearer token (32 random bytes, urlsafe base64)

Invariants kept on every call:
- keys and the token are written 0600, atomically (temp file + rename): a crash never leaves a
  torn file, and a reader sees either the old or the new content;
- the CA is kept while it parses, matches its key and has more than 30 days left; otherwise CA
  and serving certificate are made anew (anything signed by the old CA would not verify);
- the serving certificate is kept only while it is signed by the current CA, matches its key,
  has more than 30 days left and its SANs cover the built-in names plus every requested host.
  Hosts are only ever added: a regenerated certificate covers the old SANs too, so a later
  start with fewer hosts does not take names away from clients that use them.

ECDSA P-256 keeps generation far below a second (RSA 2048 takes ~0.1-1 s per key).
"""
from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import re
import secrets
import ssl
import tempfile
from dataclasses import dataclass, replace
from typing import Union

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CN = "kubeplane-ca"
SERVING_CN = "kubeplane-apiserver"
CA_VALIDITY = dt.timedelta(days=3650)
SERVING_VALIDITY = dt.timedelta(days=365)
RENEW_BEFORE = dt.timedelta(days=30)
# Backdate notBefore a little so a client whose clock is slightly behind still accepts us.
CLOCK_SKEW = dt.timedelta(minutes=5)

# The names kube-apiserver always puts on its serving certificate, plus loopback.
DEFAULT_DNS = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
               "kubernetes.default.svc.cluster.local")
DEFAULT_IPS = ("127.0.0.1", "::1")

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
_DNS_RE = re.compile(r"^(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?$")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,}$")


@dataclass(frozen=True)
class Pki:
    """Paths of the PKI files and the admin token; `ssl_context()` builds the server context."""
    dir: str
    ca_cert: str
    ca_key: str
    cert: str
    key: str
    token_file: str
    token: str
    kubelet_client_cert: str = ""   # the API server's identity towards kubelets (kubeadm's
    kubelet_client_key: str = ""    # apiserver-kubelet-client: CN kube-apiserver-kubelet-client)

    def ca_pem(self) -> bytes:
        with open(self.ca_cert, "rb") as f:
            return f.read()

    def ssl_context(self) -> ssl.SSLContext:
        """Server context: TLS 1.2+, our serving chain, ALPN offering only http/1.1 (a client
        that offers h2 and http/1.1, as Go's does, gets http/1.1)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx


# --- host parsing ---------------------------------------------------------------------------

def _parse_host(host: str) -> IPAddress | str | None:
    """An IP address, a lower-cased DNS name, or None for an empty entry. Brackets around an
    IPv6 literal ("[::1]") are accepted. Raises ValueError for anything else."""
    h = host.strip()
    if not h:
        return None
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    try:
        return ipaddress.ip_address(h)
    except ValueError:
        pass
    name = h.lower()
    if len(name) > 253 or not _DNS_RE.match(name):
        raise ValueError(f"not an IP address or DNS name: {host!r}")
    return name.rstrip(".")


def _wanted_sans(hosts: list[str]) -> tuple[set[str], set[IPAddress]]:
    dns = set(DEFAULT_DNS)
    ips: set[IPAddress] = {ipaddress.ip_address(i) for i in DEFAULT_IPS}
    for h in hosts:
        p = _parse_host(h)
        if p is None:
            continue
        if isinstance(p, str):
            dns.add(p)
        else:
            ips.add(p)
    return dns, ips


# --- file helpers -----------------------------------------------------------------------------

def _write_atomic(path: str, data: bytes, mode: int) -> None:
    """Write `data` to `path` via a temp file in the same directory, fsync, rename."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=d)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _same_public_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


def _load_pair(cert_path: str, key_path: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The certificate and its key, or None when missing, unreadable or not a matching pair."""
    cert_pem, key_pem = _read(cert_path), _read(key_path)
    if cert_pem is None or key_pem is None:
        return None
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not _same_public_key(cert, key):
        return None
    return cert, key


# --- certificate making -----------------------------------------------------------------------

def _new_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_CN)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _new_serving(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, dns: set[str],
                 ips: set[IPAddress]) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in sorted(dns)]
    sans += [x509.IPAddress(i) for i in sorted(ips, key=lambda a: (a.version, int(a)))]
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVING_CN)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + SERVING_VALIDITY, ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


KUBELET_CLIENT_CN = "kube-apiserver-kubelet-client"


def _new_client(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, cn: str,
                orgs: tuple[str, ...]) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A client certificate (clientAuth) for `cn` in groups `orgs`, signed by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    subject = x509.Name([*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs),
                         x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + SERVING_VALIDITY, ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _client_usable(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    if cert.issuer != ca.subject or cert.not_valid_after_utc - _now() <= RENEW_BEFORE:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def cert_sans(cert: x509.Certificate) -> tuple[set[str], set[IPAddress]]:
    """The DNS names and IP addresses in a certificate's subjectAltName."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    return set(san.get_values_for_type(x509.DNSName)), set(san.get_values_for_type(x509.IPAddress))


def _ca_usable(ca: x509.Certificate) -> bool:
    if ca.not_valid_after_utc - _now() <= RENEW_BEFORE:
        return False
    try:
        bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
        ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return False
    return bc.ca


def _serving_usable(cert: x509.Certificate, ca: x509.Certificate, dns: set[str],
                    ips: set[IPAddress]) -> bool:
    if cert.issuer != ca.subject or cert.not_valid_after_utc - _now() <= RENEW_BEFORE:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    have_dns, have_ips = cert_sans(cert)
    return dns <= have_dns and ips <= have_ips


def _ensure_token(path: str) -> str:
    raw = _read(path)
    if raw is not None:
        tok = raw.decode("ascii", "replace").strip()
        if _TOKEN_RE.match(tok):
            if os.stat(path).st_mode & 0o077:
                os.chmod(path, 0o600)
            return tok
    tok = secrets.token_urlsafe(32)
    _write_atomic(path, tok.encode() + b"\n", 0o600)
    return tok


def ensure_pki(pki_dir: str, hosts: list[str]) -> Pki:
    """Create or reuse the CA, the serving certificate, the client certificate the API
    server shows kubelets, and the admin token in `pki_dir`.

    `hosts` are extra IPs or DNS names the serving certificate must cover (e.g. the bind
    address or the machine's name). Raises ValueError for a host that is neither."""
    dns, ips = _wanted_sans(hosts)
    os.makedirs(pki_dir, mode=0o700, exist_ok=True)
    p = Pki(dir=pki_dir,
            ca_cert=os.path.join(pki_dir, "ca.crt"), ca_key=os.path.join(pki_dir, "ca.key"),
            cert=os.path.join(pki_dir, "apiserver.crt"), key=os.path.join(pki_dir, "apiserver.key"),
            token_file=os.path.join(pki_dir, "token"), token="",
            kubelet_client_cert=os.path.join(pki_dir, "apiserver-kubelet-client.crt"),
            kubelet_client_key=os.path.join(pki_dir, "apiserver-kubelet-client.key"))

    ca_pair = _load_pair(p.ca_cert, p.ca_key)
    if ca_pair is None or not _ca_usable(ca_pair[0]):
        ca_pair = _new_ca()
        # Key first: a crash between the two writes leaves a cert/key mismatch, which the next
        # start detects and repairs, never a cert whose key is gone.
        _write_atomic(p.ca_key, _key_pem(ca_pair[1]), 0o600)
        _write_atomic(p.ca_cert, ca_pair[0].public_bytes(serialization.Encoding.PEM), 0o600)
    ca, ca_key = ca_pair

    serving = _load_pair(p.cert, p.key)
    if serving is not None:
        old_dns, old_ips = cert_sans(serving[0])
        if not _serving_usable(serving[0], ca, dns, ips):
            dns |= old_dns   # keep the names earlier starts asked for
            ips |= old_ips
            serving = None
    if serving is None:
        cert, key = _new_serving(ca, ca_key, dns, ips)
        _write_atomic(p.key, _key_pem(key), 0o600)
        _write_atomic(p.cert, cert.public_bytes(serialization.Encoding.PEM), 0o600)

    client = _load_pair(p.kubelet_client_cert, p.kubelet_client_key)
    if client is None or not _client_usable(client[0], ca):
        cert, key = _new_client(ca, ca_key, KUBELET_CLIENT_CN, ("system:masters",))
        _write_atomic(p.kubelet_client_key, _key_pem(key), 0o600)
        _write_atomic(p.kubelet_client_cert, cert.public_bytes(serialization.Encoding.PEM), 0o600)

    for keyfile in (p.ca_key, p.key, p.kubelet_client_key):
        if os.stat(keyfile).st_mode & 0o077:
            os.chmod(keyfile, 0o600)
    return replace(p, token=_ensure_token(p.token_file))


# --- kubeconfig -------------------------------------------------------------------------------

def kubeconfig_dict(server_url: str, pki: Pki, context_name: str = "kubeplane") -> dict:
    """The kubeconfig as a dict: one cluster, one user (bearer token), one context, current."""
    user = f"{context_name}-admin"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context_name, "cluster": {
            "server": server_url,
            "certificate-authority-data": base64.b64encode(pki.ca_pem()).decode("ascii"),
        }}],
        "users": [{"name": user, "user": {"token": pki.token}}],
        "contexts": [{"name": context_name, "context": {"cluster": context_name, "user": user}}],
        "current-context": context_name,
        "preferences": {},
    }


def write_kubeconfig(path: str, server_url: str, pki: Pki, context_name: str = "kubeplane") -> None:
    """Write a kubeconfig for the admin to `path` (mode 0600, atomically). The file is replaced
    whole, not merged into an existing one. Parent directories are created (0700)."""
    doc = yaml.safe_dump(kubeconfig_dict(server_url, pki, context_name), sort_keys=False,
                         default_flow_style=False)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, mode=0o700, exist_ok=True)
    _write_atomic(path, doc.encode("utf-8"), 0o600)
