"""API tokens and the caller's scope: who may read what, enforced in every data query.

A token is 32 random bytes shown once (``cw_`` + URL-safe base64); the database keeps only its
SHA-256. Roles: ``enterprise`` reads one enterprise, ``province`` the enterprises of one
province, ``operator`` fleet health (gateways, meters, data quality) but no energy figures,
``admin`` everything. Objects outside the caller's scope answer 404, so their existence does
not leak.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Annotated

import psycopg
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

ROLES = ("enterprise", "province", "operator", "admin")
TOKEN_PREFIX = "cw_"
_ENTERPRISE_CODE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{18}$")
_PROVINCE_CODE = re.compile(r"^[0-9]{2}0000$")


class TokenError(ValueError):
    """A token request that cannot be honoured (bad role or scope)."""


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def check_scope(role: str, scope: str | None) -> str | None:
    """The scope a role needs, validated; raises TokenError naming the problem."""
    if role not in ROLES:
        raise TokenError(f"--role must be one of {', '.join(ROLES)}, got {role!r}")
    if role == "enterprise":
        if not scope or not _ENTERPRISE_CODE.match(scope):
            raise TokenError("--scope: role enterprise needs an 18-character unified social credit code")
    elif role == "province":
        if not scope or not _PROVINCE_CODE.match(scope):
            raise TokenError("--scope: role province needs a GB/T 2260 province code such as 140000")
    elif scope:
        raise TokenError(f"--scope: role {role} reads the whole fleet and takes no scope")
    return scope or None


def create_token(conn: psycopg.Connection, role: str, scope: str | None, label: str) -> str:
    """Store a new token's hash and return the token (the only time it is ever visible)."""
    scope = check_scope(role, scope)
    if role == "enterprise" and conn.execute("SELECT 1 FROM enterprises WHERE code = %s", (scope,)).fetchone() is None:
        raise TokenError(f"--scope: no enterprise {scope} is registered")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with conn.transaction():
        conn.execute(
            "INSERT INTO api_tokens (token_hash, role, scope, label) VALUES (%s, %s, %s, %s)",
            (token_hash(token), role, scope, label),
        )
        conn.execute(
            "INSERT INTO audit_log (actor, action, detail) VALUES ('cli', 'token.create', "
            "jsonb_build_object('role', %s::text, 'scope', %s::text, 'label', %s::text))",
            (role, scope, label),
        )
    return token


def list_tokens(conn: psycopg.Connection) -> list[tuple]:
    """(id, role, scope, label, created_at, revoked_at) of every token, newest last."""
    return conn.execute("SELECT id, role, scope, label, created_at, revoked_at FROM api_tokens ORDER BY id").fetchall()


def revoke_token(conn: psycopg.Connection, token_id: int) -> bool:
    """Revoke by id; False when no active token has that id."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE api_tokens SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL RETURNING id", (token_id,)
        ).fetchone()
        if row:
            conn.execute(
                "INSERT INTO audit_log (actor, action, detail) VALUES ('cli', 'token.revoke', "
                "jsonb_build_object('id', %s::int))",
                (token_id,),
            )
    return row is not None


@dataclass(frozen=True)
class Caller:
    """The authenticated caller; ``where`` gives the SQL condition limiting rows to its scope."""

    role: str
    scope: str | None
    label: str

    @property
    def reads_energy(self) -> bool:
        return self.role != "operator"

    def where(self, enterprise: str = "e.code", province: str = "e.province") -> tuple[str, dict]:
        """A condition on the given enterprise-code and province columns, and its parameters."""
        if self.role == "enterprise":
            return f"{enterprise} = %(scope_enterprise)s", {"scope_enterprise": self.scope}
        if self.role == "province":
            return f"{province} = %(scope_province)s", {"scope_province": self.scope}
        return "true", {}

    def require_energy(self) -> None:
        if not self.reads_energy:
            raise HTTPException(403, "role operator reads fleet health, not energy or CO2 figures")


_bearer = HTTPBearer(auto_error=False, description="an API token: carbonwatch db token create")


async def caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    """The caller of this request, from its bearer token (401 without a valid one)."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise HTTPException(401, "missing bearer token (Authorization: Bearer <token>)", {"WWW-Authenticate": "Bearer"})
    return await lookup(request.app.state.pool, credentials.credentials)


async def lookup(pool, token: str) -> Caller:
    """The caller a token stands for; 401 when unknown or revoked."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT role, scope, label FROM api_tokens WHERE token_hash = %s AND revoked_at IS NULL",
            (token_hash(token),),
        )
        row = await cur.fetchone()
    if row is None:
        raise HTTPException(401, "unknown or revoked token", {"WWW-Authenticate": "Bearer"})
    return Caller(*row)


CallerDep = Annotated[Caller, Depends(caller)]
