"""Embedded servers for test sessions on machines without local ones.

Thin context managers over ``ledger.ops.embedded`` for ``tests/conftest.py``,
plus ``with_database`` to point a DSN at another database. No fixtures here.
"""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg

from ledger.ops.embedded_nats import EmbeddedNats
from ledger.ops.embedded_postgres import EmbeddedPostgres

__all__ = ["embedded_nats", "embedded_postgres", "with_database"]


@contextmanager
def embedded_postgres(path: Path) -> Iterator[str]:
    """Yield the superuser DSN (database ``postgres``) of a server under ``path``."""
    with EmbeddedPostgres(path) as pg:
        yield pg.dsn


@contextmanager
def embedded_nats(path: Path) -> Iterator[str]:
    """Yield the URL of a JetStream-enabled nats-server under ``path``."""
    with EmbeddedNats(path) as nats:
        yield nats.url


def with_database(dsn: str, dbname: str) -> str:
    """The same DSN naming database ``dbname``; user, host, port and query are kept.

    Works for ``postgresql://u@127.0.0.1:5432/db`` and for the socket form
    ``postgresql://u@/db?host=/dir&port=5432``. Built by hand because
    ``urlunsplit`` drops the ``//`` of a ``postgresql:`` URL with an empty host.
    """
    parts = urllib.parse.urlsplit(dsn)
    if parts.scheme not in {"postgresql", "postgres"}:
        raise ValueError(f"not a PostgreSQL URL: {dsn!r}")
    url = f"{parts.scheme}://{parts.netloc}/{urllib.parse.quote(dbname, safe='')}"
    if parts.query:
        url += f"?{parts.query}"
    if parts.fragment:
        url += f"#{parts.fragment}"
    return url


@asynccontextmanager
async def fresh_database(admin_dsn: str, prefix: str) -> AsyncIterator[str]:
    """A database of its own (``<prefix>_<random>``), its DSN, dropped afterwards:
    for tests that look at the whole log."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield with_database(admin_dsn, name)
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
