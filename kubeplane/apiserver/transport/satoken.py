"""Service account tokens: ES256 JWTs in upstream's claim layout.

A token is `base64url(header).base64url(claims).base64url(signature)`, the header
`{"alg":"ES256","kid":<key id>}`, the claims those of a bound token from upstream's
TokenRequest API:

    {"aud": [...], "exp": ..., "iat": ..., "nbf": ..., "iss": ISSUER, "jti": <uuid>,
     "sub": "system:serviceaccount:<ns>:<name>",
     "kubernetes.io": {"namespace": <ns>, "serviceaccount": {"name": <name>, "uid": <uid>}}}

The signing key is a P-256 key in `<pki dir>/sa.key` (PKCS#8 PEM, 0600), made on first
use and kept across restarts, so tokens outlive a restart as upstream's do. `verify`
accepts a token only with this key's signature, this issuer, an audience the server
serves and `nbf <= now < exp`; it answers the claims, or None for anything else (the
caller answers 401). Nothing here reads the store: whether the service account still
exists is the authenticator's check (server/authn.py).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
import time
import uuid
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from .certs import _read, _write_atomic

ISSUER = "https://kubernetes.default.svc.cluster.local"
AUDIENCES = (ISSUER,)        # upstream's --api-audiences default is the issuer
SA_PREFIX = "system:serviceaccount:"
_MAX_TOKEN = 16 * 1024       # longer bearer tokens are not ours: no parsing, no base64 of megabytes


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Issues and checks the tokens of one key."""

    def __init__(self, key: ec.EllipticCurvePrivateKey):
        self._key = key
        self._public = key.public_key()
        der = self._public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = _b64(hashlib.sha256(der).digest())
        self._header = _b64(orjson.dumps({"alg": "ES256", "kid": self.kid}))

    @classmethod
    def load_or_create(cls, pki_dir: str) -> "TokenSigner":
        os.makedirs(pki_dir, mode=0o700, exist_ok=True)
        path = os.path.join(pki_dir, "sa.key")
        pem = _read(path)
        if pem is not None:
            key = serialization.load_pem_private_key(pem, None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{path}: not an EC private key")
            return cls(key)
        key = ec.generate_private_key(ec.SECP256R1())
        _write_atomic(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()), 0o600)
        return cls(key)

    def issue(self, namespace: str, name: str, uid: str, audiences: list[str], seconds: int,
              now: float | None = None) -> tuple[str, int]:
        """A token for service account namespace/name valid for `seconds`: (token, exp)."""
        iat = int(now if now is not None else time.time())
        claims = {"aud": list(audiences), "exp": iat + seconds, "iat": iat, "iss": ISSUER, "jti": str(uuid.uuid4()),
                  "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}},
                  "nbf": iat, "sub": f"{SA_PREFIX}{namespace}:{name}"}
        signing_input = f"{self._header}.{_b64(orjson.dumps(claims))}"
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}", iat + seconds

    def verify(self, token: str, now: float | None = None) -> dict[str, Any] | None:
        if len(token) > _MAX_TOKEN or token.count(".") != 2:
            return None
        head, body, sig = token.split(".")
        try:
            header = orjson.loads(_unb64(head))
            raw_sig = _unb64(sig)
            if not isinstance(header, dict) or header.get("alg") != "ES256" or len(raw_sig) != 64:
                return None
            self._public.verify(encode_dss_signature(int.from_bytes(raw_sig[:32], "big"),
                                                     int.from_bytes(raw_sig[32:], "big")),
                                f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
            claims = orjson.loads(_unb64(body))
        except (InvalidSignature, ValueError, binascii.Error, orjson.JSONDecodeError):
            return None
        if not isinstance(claims, dict) or claims.get("iss") != ISSUER:
            return None
        t = now if now is not None else time.time()
        exp, nbf = claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(exp, int) or not isinstance(nbf, int) or not nbf <= t < exp:
            return None
        aud = claims.get("aud")
        if not isinstance(aud, list) or not set(aud) & set(AUDIENCES):
            return None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.startswith(SA_PREFIX) or sub.count(":") != 3:
            return None
        return claims
