"""Who may call what: bearer tokens (JWT, HS256) carrying per-method permissions, and the
secret that signs them.

The RPC server has two listeners (rpc/server.py). The public one serves the public methods
(reads, tx_send, proofs, subscriptions) to anyone, or with `[rpc] public_auth` only to
holders of a token; it never serves an operator method. The operator one (bound to
localhost by default) serves every method, each call only under a token that permits it.
Permissions are "module:method" patterns as Besu writes them: "admin:peers", "admin:*",
"chain:*", "*:*"; the module of `admin_setLogLevel` is "admin", its method "setLogLevel".

Tokens are signed with a per-node HMAC key (`[rpc] jwt_secret_file`, 32 random bytes as
hex), created 0600 at the node's first start. Whoever can read that file (the node's own
operator account) mints tokens with `node.py rpc-token`; nothing else is trusted.
"""

from __future__ import annotations

import enum
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import jwt

from crypto import keystore

ALGORITHM = "HS256"  # HMAC-SHA256: the node and the operator's tools share one secret
SECRET_BYTES = 32
# Tokens are minted on the operator's host, the node checks them on its own clock (NTP-kept).
CLOCK_LEEWAY_S = 30
TOKEN_TTL_S_MAX = 365 * 24 * 3600  # `exp` is required; a year is the longest sensible


class AuthFailure(enum.StrEnum):
    """Why a call was refused (data.reason of JSON-RPC -32003)."""

    NO_TOKEN = "no-token"  # the listener wants `Authorization: Bearer <token>`
    INVALID = "invalid-token"  # not a JWT signed by this node's secret, or malformed claims
    EXPIRED = "expired-token"
    NOT_PERMITTED = "not-permitted"  # valid token, but no permission matches the method
    OPERATOR_ONLY = "operator-only"  # an operator method asked on the public listener


class AuthError(Exception):
    def __init__(self, reason: AuthFailure, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SecretFileError(Exception):
    """The token secret cannot be created or read, or others may read it."""


def permission_of(method: str) -> tuple[str, str]:
    """(module, method) of a JSON-RPC method name: admin_peers -> (admin, peers);
    a name without a module (subscribe) is its own module."""
    module, _, rest = method.partition("_")
    return module, rest or module


@dataclass(frozen=True)
class Grant:
    """What one verified token permits."""

    permissions: tuple[str, ...]
    subject: str

    def allows(self, method: str) -> bool:
        module, name = permission_of(method)
        for pattern in self.permissions:
            want_module, _, want_name = pattern.partition(":")
            if want_module in ("*", module) and want_name in ("*", name):
                return True
        return False

    def check(self, method: str) -> None:
        if not self.allows(method):
            raise AuthError(AuthFailure.NOT_PERMITTED, f"the token of {self.subject!r} does not permit {method}")


def check_permissions(permissions: object) -> tuple[str, ...]:
    """A token's `permissions` claim: a non-empty list of "module:method" strings."""
    if not isinstance(permissions, list) or not permissions:
        raise ValueError('permissions must be a non-empty list of "module:method" strings')
    for pattern in permissions:
        if not isinstance(pattern, str) or pattern.count(":") != 1 or "" in pattern.split(":"):
            raise ValueError(f'permission {pattern!r} is not "module:method" (e.g. "admin:*", "chain:status")')
    return tuple(permissions)


def issue_token(secret: bytes, permissions: list[str], ttl_s: int, subject: str = "operator",
                now: float | None = None) -> str:
    if not 0 < ttl_s <= TOKEN_TTL_S_MAX:
        raise ValueError(f"token lifetime {ttl_s} s is not within 1..{TOKEN_TTL_S_MAX}")
    issued = int(time.time() if now is None else now)
    claims = {"sub": subject, "permissions": list(check_permissions(permissions)), "iat": issued,
              "exp": issued + ttl_s}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: bytes, token: str) -> Grant:
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], leeway=CLOCK_LEEWAY_S,
                            options={"require": ["exp", "iat", "permissions"]})
    except jwt.ExpiredSignatureError as exc:
        raise AuthError(AuthFailure.EXPIRED, "the token has expired; mint a new one") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError(AuthFailure.INVALID, f"the token is not valid for this node ({exc})") from exc
    try:
        permissions = check_permissions(claims["permissions"])
    except ValueError as exc:
        raise AuthError(AuthFailure.INVALID, str(exc)) from exc
    return Grant(permissions, str(claims.get("sub", "?")))


def bearer(header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header."""
    if not header:
        raise AuthError(AuthFailure.NO_TOKEN, "send Authorization: Bearer <token> (mint one with node.py rpc-token)")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(AuthFailure.INVALID, "the Authorization header must be 'Bearer <token>'")
    return token.strip()


def create_secret(path: Path) -> bool:
    """Write a new random secret to `path` as a key file is written (keystore.write_private:
    owner-only from its first byte, synced, linked into place, never overwritten); False
    when the file exists already."""
    try:
        keystore.write_private(path, (os.urandom(SECRET_BYTES).hex() + "\n").encode())
    except FileExistsError:
        return False
    return True


def load_secret(path: Path) -> bytes:
    """The secret in `path`; refuses a file that group or others may read or write
    (keystore.read_private)."""
    try:
        text = keystore.read_private(path).decode(errors="replace").strip()
    except keystore.KeyFileExposed as exc:
        raise SecretFileError(f"the RPC token secret {path} is accessible by others "
                              f"(mode {stat.filemode(stat.S_IFREG | exc.mode)}); chmod 600 {path}") from exc
    except keystore.KeystoreError as exc:
        raise SecretFileError(f"cannot read the RPC token secret: {exc}") from exc
    try:
        secret = bytes.fromhex(text)
    except ValueError as exc:
        raise SecretFileError(f"the RPC token secret {path} is not hex") from exc
    if len(secret) < SECRET_BYTES:
        raise SecretFileError(f"the RPC token secret {path} holds {len(secret)} bytes; at least {SECRET_BYTES}")
    return secret
