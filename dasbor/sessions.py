"""Sign-in sessions of the pages: kept in PostgreSQL, named by a random cookie.

A session is a row, not a signed cookie: signing out ends it everywhere at
once, every API process (``--workers``, a restart) sees the same rows, and
the cookie carries nothing but a random token. The row holds the token's
SHA-256 (a database leak hands out no live cookie), the API key's SHA-256 (so
the key's role and seller are looked up as the API looks them up, and a key
that is replaced ends its sessions), the CSRF token of its forms, and when it
ends.

Before a session exists, the sign-in form is protected the double-submit
way: a random ``dasbor_csrf`` cookie (SameSite=Strict) that the form repeats.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import asyncpg
from aiohttp import web

__all__ = [
    "LOGIN_CSRF_COOKIE",
    "SESSION_COOKIE",
    "Session",
    "SessionStore",
    "same_token",
    "set_cookie",
]

SESSION_COOKIE: Final = "dasbor_session"
LOGIN_CSRF_COOKIE: Final = "dasbor_csrf"
COOKIE_PATH: Final = "/dasbor/"
#: a cookie's token longer than this is not looked up (it cannot be ours)
_TOKEN_CHARS_MAX: Final = 100

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS dasbor_sessions (
    token_sha256 bytea PRIMARY KEY,
    key_sha256   bytea NOT NULL,
    csrf         text NOT NULL,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS dasbor_sessions_expires_at ON dasbor_sessions (expires_at);
"""
#: serialises the CREATEs of processes starting together (two CREATE TABLE IF NOT
#: EXISTS can still collide on the catalogue's unique index)
_SCHEMA_LOCK: Final = 0x0DA5B0


@dataclass(frozen=True, slots=True)
class Session:
    key_sha256: bytes
    csrf: str
    expires_at: datetime


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def same_token(sent: str | None, expected: str) -> bool:
    """Constant-time comparison of a form's token with the one we hold."""
    return bool(sent) and hmac.compare_digest(
        (sent or "").encode("utf-8", "surrogateescape"), expected.encode()
    )


class SessionStore:
    def __init__(self, pool: asyncpg.Pool, ttl_s: int) -> None:
        self._pool = pool
        self.ttl_s = ttl_s

    async def ensure_schema(self) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            await conn.execute(_SCHEMA)

    async def open(self, key_sha256: bytes) -> tuple[str, Session]:
        """A new session for the key: ``(cookie token, session)``. Ended ones are swept."""
        token = secrets.token_urlsafe(32)
        session = Session(
            key_sha256=key_sha256,
            csrf=secrets.token_urlsafe(32),
            expires_at=datetime.now(UTC) + timedelta(seconds=self.ttl_s),
        )
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM dasbor_sessions WHERE expires_at < now()")
            await conn.execute(
                "INSERT INTO dasbor_sessions (token_sha256, key_sha256, csrf, expires_at)"
                " VALUES ($1, $2, $3, $4)",
                _digest(token),
                key_sha256,
                session.csrf,
                session.expires_at,
            )
        return token, session

    async def find(self, token: str | None) -> Session | None:
        if not token or len(token) > _TOKEN_CHARS_MAX:
            return None
        row = await self._pool.fetchrow(
            "SELECT key_sha256, csrf, expires_at FROM dasbor_sessions"
            " WHERE token_sha256 = $1 AND expires_at > now()",
            _digest(token),
        )
        if row is None:
            return None
        return Session(bytes(row["key_sha256"]), row["csrf"], row["expires_at"])

    async def close(self, token: str | None) -> None:
        if token and len(token) <= _TOKEN_CHARS_MAX:
            await self._pool.execute(
                "DELETE FROM dasbor_sessions WHERE token_sha256 = $1", _digest(token)
            )


def set_cookie(
    request: web.Request, response: web.StreamResponse, name: str, value: str, max_age_s: int
) -> None:
    """HttpOnly, SameSite=Strict, limited to the pages' path; Secure when served over TLS."""
    response.set_cookie(
        name,
        value,
        max_age=max_age_s,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
