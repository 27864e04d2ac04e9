"""serviceaccounts/token (the TokenRequest API, `kubectl create token`) against a real
`kubeplane serve`: the answer's shape, defaults and limits, 404 for an unknown account, and
the token itself as a bearer credential over HTTPS (raw requests and `kubectl --token`):
accepted as system:serviceaccount:<ns>:<name> until it expires, refused when altered.
The user a request runs as is read from the 403 a non-admin gets for impersonating."""
from __future__ import annotations

import base64
import datetime as dt
import json
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from kubeplane.apiserver.transport.satoken import ISSUER, TokenSigner
from kubectls import kubectl_binary
from server_procs import ServerProc


def _token_request(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}


def _https(server: ServerProc, path: str, token: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    ctx = ssl.create_default_context(cafile=str(server.data_dir / "pki" / "ca.crt"))
    req = urllib.request.Request(server.https_url + path, headers={"Authorization": f"Bearer {token}",
                                                                  **(headers or {})})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _claims(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


@pytest.fixture
def sa(server: ServerProc, ns: str) -> dict[str, Any]:
    r = server.call("POST", f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "robot"}})
    assert r.status == 201, r
    return r.json


def test_token_request_shape_and_claims(server: ServerProc, ns: str, sa: dict[str, Any]):
    before = int(time.time())
    r = server.call("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/robot/token", _token_request())
    assert r.status == 201, r
    out = r.json
    assert (out["kind"], out["apiVersion"]) == ("TokenRequest", "authentication.k8s.io/v1")
    assert out["metadata"] == {"name": "robot", "namespace": ns, "creationTimestamp": None}
    assert out["spec"] == {"audiences": [ISSUER], "expirationSeconds": 3600, "boundObjectRef": None}
    claims = _claims(out["status"]["token"])
    assert claims["sub"] == f"system:serviceaccount:{ns}:robot" and claims["iss"] == ISSUER
    assert claims["aud"] == [ISSUER] and claims["nbf"] == claims["iat"] and claims["exp"] == claims["iat"] + 3600
    assert before - 1 <= claims["iat"] <= time.time() + 1
    assert claims["kubernetes.io"] == {"namespace": ns, "serviceaccount": {"name": "robot",
                                                                          "uid": sa["metadata"]["uid"]}}
    exp = dt.datetime.strptime(out["status"]["expirationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
    assert int(exp.replace(tzinfo=dt.timezone.utc).timestamp()) == claims["exp"]


def test_token_request_errors(server: ServerProc, ns: str, sa: dict[str, Any]):
    base = f"/api/v1/namespaces/{ns}/serviceaccounts"
    r = server.call("POST", f"{base}/nobody/token", _token_request())
    assert r.status == 404 and r.json["message"] == 'serviceaccounts "nobody" not found', r
    r = server.call("POST", f"{base}/robot/token", _token_request(expirationSeconds=599))
    assert r.status == 422 and r.json["details"]["causes"] == [{
        "reason": "FieldValueInvalid", "field": "spec.expirationSeconds",
        "message": "Invalid value: 599: may not specify a duration less than 10 minutes"}], r
    r = server.call("POST", f"{base}/robot/token", _token_request(expirationSeconds="1h"))
    assert r.status == 400, r
    r = server.call("POST", f"{base}/robot/token", {**_token_request(), "metadata": {"name": "other"}})
    assert r.status == 400 and r.json["message"] == "name in URL does not match name in TokenRequest body", r
    assert server.call("GET", f"{base}/robot/token").status == 405
    assert server.call("PUT", f"{base}/robot/token", _token_request()).status == 405
    r = server.call("POST", f"{base}/robot/token", _token_request(expirationSeconds=600, audiences=["vault"]))
    assert r.status == 201 and _claims(r.json["status"]["token"])["aud"] == ["vault"], r


def test_token_authenticates_as_the_service_account(server: ServerProc, ns: str, sa: dict[str, Any]):
    r = server.call("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/robot/token", _token_request())
    token = r.json["status"]["token"]
    status, body = _https(server, f"/api/v1/namespaces/{ns}/configmaps", token)
    assert status == 200 and body["kind"] == "ConfigMapList", body
    # who the request ran as: a non-admin may not impersonate, and the refusal names the user
    status, body = _https(server, f"/api/v1/namespaces/{ns}/configmaps", token, {"Impersonate-User": "x"})
    assert status == 403 and body["message"].startswith(
        f'users "x" is forbidden: User "system:serviceaccount:{ns}:robot" cannot impersonate'), body
    # an altered token, a token for another audience, a token of another key: 401
    head, claims, sig = token.split(".")
    forged = dict(_claims(token), sub="system:serviceaccount:kube-system:admin")
    forged_body = base64.urlsafe_b64encode(orjson.dumps(forged)).rstrip(b"=").decode()
    assert _https(server, "/api/v1/namespaces", f"{head}.{forged_body}.{sig}")[0] == 401
    assert _https(server, "/api/v1/namespaces", token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))[0] \
        == 401
    r = server.call("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/robot/token",
                    _token_request(audiences=["vault"]))
    assert _https(server, "/api/v1/namespaces", r.json["status"]["token"])[0] == 401


def test_expired_and_foreign_tokens_are_refused(server: ServerProc, tmp_path: Path):
    """Tokens are checked against the server's own key and the clock: one signed by the
    server's key an hour ago for ten minutes is refused, as is one of a fresh key."""
    own = TokenSigner.load_or_create(str(server.data_dir / "pki"))
    stale, _ = own.issue("default", "default", "u", [ISSUER], 600, now=time.time() - 3600)
    fresh, _ = own.issue("default", "default", "u", [ISSUER], 600)
    other, _ = TokenSigner.load_or_create(str(tmp_path)).issue("default", "default", "u", [ISSUER], 600)
    assert _https(server, "/api/v1/namespaces", fresh)[0] == 200
    assert _https(server, "/api/v1/namespaces", stale)[0] == 401
    assert _https(server, "/api/v1/namespaces", other)[0] == 401


def test_token_dies_with_its_service_account(server: ServerProc, ns: str, sa: dict[str, Any]):
    """A token names its account's uid: another uid, or the account deleted, is 401 (a token
    more than a few seconds old; a fresh one may name an account the cache has not seen)."""
    own = TokenSigner.load_or_create(str(server.data_dir / "pki"))
    then = time.time() - 60
    good, _ = own.issue(ns, "robot", sa["metadata"]["uid"], [ISSUER], 600, now=then)
    wrong_uid, _ = own.issue(ns, "robot", "not-the-uid", [ISSUER], 600, now=then)
    nobody, _ = own.issue(ns, "nobody", "u", [ISSUER], 600, now=then)
    assert _https(server, "/api/v1/namespaces", good)[0] == 200
    assert _https(server, "/api/v1/namespaces", wrong_uid)[0] == 401
    assert _https(server, "/api/v1/namespaces", nobody)[0] == 401
    assert server.call("DELETE", f"/api/v1/namespaces/{ns}/serviceaccounts/robot").status == 200
    deadline = time.monotonic() + 10
    while _https(server, "/api/v1/namespaces", good)[0] != 401:
        assert time.monotonic() < deadline, "a token of a deleted service account is still accepted"
        time.sleep(0.05)


@pytest.mark.parametrize("version", ["1.31", "1.33"])
def test_kubectl_create_token_and_use_it(server: ServerProc, ns: str, sa: dict[str, Any], tmp_path: Path,
                                         version: str):
    binary = kubectl_binary(version)
    if binary is None:
        pytest.skip(f"kubectl {version} not installed")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "KUBECONFIG": server.kubeconfig}
    res = subprocess.run([binary, "create", "token", "robot", "-n", ns, "--duration=20m"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    token = res.stdout.strip()
    claims = _claims(token)
    assert claims["sub"] == f"system:serviceaccount:{ns}:robot" and claims["exp"] - claims["iat"] == 1200
    res = subprocess.run([binary, "--token", token, "get", "configmaps", "-n", ns], capture_output=True, text=True,
                         env=env, timeout=60)
    assert res.returncode == 0, res
    res = subprocess.run([binary, "--token", token, "--as", "someone", "get", "configmaps", "-n", ns],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode != 0 and f'User "system:serviceaccount:{ns}:robot" cannot impersonate' in res.stderr, res
    res = subprocess.run([binary, "--token", token + "x", "get", "configmaps", "-n", ns], capture_output=True,
                         text=True, env=env, timeout=60)
    assert res.returncode != 0 and "Unauthorized" in res.stderr, res
    res = subprocess.run([binary, "create", "token", "nobody", "-n", ns], capture_output=True, text=True, env=env,
                         timeout=60)
    assert res.returncode != 0 and 'serviceaccounts "nobody" not found' in res.stderr, res
