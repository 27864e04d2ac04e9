"""Authentication: who sent a request (user name, uid, groups).

- The admin bearer token (written into the generated kubeconfig) is user
  `kubernetes-admin` in group `system:masters`, as a kubeadm admin.conf is.
- `--token-auth-file`: upstream's static token file, CSV lines
  `token,user,uid[,"group1,group2"]`.
- The plain-HTTP loopback listener authenticates nobody; like upstream's old insecure
  port its requests run as `system:unsecured` in `system:masters`.
- Service account tokens (`kubectl create token`, the TokenRequest API): ES256 JWTs that
  this server signed (transport/satoken.py), accepted until they expire as
  `system:serviceaccount:<ns>:<name>` with the service account's uid, while that account
  exists with that uid (looked up in the watch cache, which may lag: a token is trusted
  for its first 5 seconds; without a cache, not checked).
- Requests without credentials are `system:anonymous` (`system:unauthenticated`); the
  app lets them reach only the health and version endpoints (upstream's default RBAC
  grants anonymous users exactly those, through system:public-info-viewer).
- Impersonation (`Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid`) is honoured
  for members of `system:masters` (RBAC is not enforced yet; upstream lets a cluster
  admin impersonate anyone) and refused with 403 for everyone else. Flow control and the
  metrics see the impersonated user, as upstream's filter order has it.

Every authenticated user also carries `system:authenticated`; service accounts
(`system:serviceaccount:<ns>:<name>`) also `system:serviceaccounts` and
`system:serviceaccounts:<ns>`.
"""
from __future__ import annotations

import csv
import hmac
from dataclasses import dataclass
import time
from typing import Callable

from ..machinery import errors
from ..transport.satoken import TokenSigner

MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"
SA_PREFIX = "system:serviceaccount:"
_CACHE_GRACE = 5.0      # seconds a new token is trusted without its account in the watch cache


@dataclass(frozen=True, slots=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""

    @property
    def privileged(self) -> bool:
        return MASTERS in self.groups


ADMIN = User("kubernetes-admin", (MASTERS, AUTHENTICATED))
UNSECURED = User("system:unsecured", (MASTERS, AUTHENTICATED))
ANONYMOUS_USER = User(ANONYMOUS, (UNAUTHENTICATED,))


def _with_implied_groups(name: str, groups: list[str]) -> tuple[str, ...]:
    out = list(dict.fromkeys(g for g in groups if g))
    if name.startswith(SA_PREFIX):
        ns = name[len(SA_PREFIX):].split(":", 1)[0]
        for g in ("system:serviceaccounts", f"system:serviceaccounts:{ns}"):
            if g not in out:
                out.append(g)
    if name != ANONYMOUS and AUTHENTICATED not in out:
        out.append(AUTHENTICATED)
    return tuple(out)


def read_token_file(path: str) -> dict[str, User]:
    """Parse upstream's --token-auth-file format. Raises ValueError on a bad line."""
    users: dict[str, User] = {}
    with open(path, newline="") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
                continue
            if len(row) < 3:
                raise ValueError(f"{path}:{n}: want token,user,uid[,groups]")
            token, name, uid = (c.strip() for c in row[:3])
            groups = [g.strip() for g in row[3].split(",")] if len(row) > 3 else []
            users[token] = User(name, _with_implied_groups(name, groups), uid)
    return users


class Authenticator:
    """Maps a request's headers to a `User` (or None: bad credentials, answer 401)."""

    def __init__(self, admin_token: str | None, tokens: dict[str, User] | None = None,
                 unsecured: bool = False, sa_tokens: TokenSigner | None = None,
                 sa_uid: Callable[[str, str], str | None] | None = None):
        self.admin_token = admin_token.encode() if admin_token else None
        self.tokens = tokens or {}
        self.unsecured = unsecured
        self.sa_tokens = sa_tokens
        # (namespace, name) -> the service account's uid, "" when it does not exist, None
        # when that cannot be told (no watch cache): a token outlives neither its account
        # nor the account's replacement by one of the same name
        self.sa_uid = sa_uid

    def authenticate(self, headers: dict[str, str]) -> User | None:
        if self.unsecured:
            user = UNSECURED
        else:
            auth = headers.get("authorization")
            if auth is None:
                user = ANONYMOUS_USER
            else:
                if auth[:7].lower() != "bearer ":
                    return None
                token = auth[7:].strip()
                if self.admin_token is not None and hmac.compare_digest(token.encode(), self.admin_token):
                    user = ADMIN
                else:
                    found = self.tokens.get(token) or self._service_account(token)
                    if found is None:
                        return None
                    user = found
        if "impersonate-user" in headers or "impersonate-group" in headers or "impersonate-uid" in headers:
            return impersonate(user, headers)
        return user


    def _service_account(self, token: str) -> User | None:
        claims = self.sa_tokens.verify(token) if self.sa_tokens is not None else None
        if claims is None:
            return None
        sa = (claims.get("kubernetes.io") or {}).get("serviceaccount") or {}
        uid = str(sa.get("uid") or "") if isinstance(sa, dict) else ""
        name = claims["sub"]
        if self.sa_uid is not None:
            namespace, sa_name = name[len(SA_PREFIX):].split(":", 1)
            current = self.sa_uid(namespace, sa_name)
            # a token just issued may name an account the cache has not seen yet
            fresh = time.time() - claims.get("iat", 0) < _CACHE_GRACE
            if current is not None and current != uid and not fresh:
                return None
        return User(name, _with_implied_groups(name, []), uid)


def impersonate(user: User, headers: dict[str, str]) -> User:
    name = headers.get("impersonate-user", "").strip()
    if not user.privileged:
        what = f'users "{name}"' if name else "groups"
        raise errors.APIError(403, "Forbidden",
                              f'{what} is forbidden: User "{user.name}" cannot impersonate resource '
                              f'"{"users" if name else "groups"}" in API group "" at the cluster scope',
                              {"name": name, "kind": "users" if name else "groups"})
    if not name:
        # upstream answers 500 here; a client's mistake is a 400 in kubeplane
        raise errors.bad_request("requested impersonation of groups without impersonating a user")
    groups = [g.strip() for g in headers.get("impersonate-group", "").split(",") if g.strip()]
    return User(name, _with_implied_groups(name, groups), headers.get("impersonate-uid", "").strip())
