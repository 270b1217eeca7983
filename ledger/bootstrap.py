"""The composition root: builds the parts from ``Settings`` and wires them together.

The only module that knows every part (core, gateways, projections, audit);
the parts know nothing of each other. Nothing here runs at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncpg

from ledger.embedded import EmbeddedNats, EmbeddedPostgres
from ledger.relay import Relay, RelayConfig
from ledger.settings import Settings
from ledger.store import EventStore

log = logging.getLogger("omniledger")

__all__ = ["Servers", "connect", "embedded_servers"]


@dataclass
class Servers:
    """Where PostgreSQL and NATS are, and the embedded ones we started (if any)."""

    settings: Settings
    started: list[Any] = field(default_factory=list)

    def stop(self) -> None:
        for server in reversed(self.started):
            server.stop()
        self.started.clear()


async def _ensure_database(admin_dsn: str, name: str) -> str:
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_dsn.replace("@/postgres?", f"@/{name}?", 1)


@contextlib.asynccontextmanager
async def embedded_servers(
    settings: Settings, *, need_nats: bool = True
) -> AsyncIterator[Settings]:
    """Starts embedded PostgreSQL / NATS under ``data_dir`` where no URL is given."""
    servers = Servers(settings)
    data_dir = settings.data_dir.resolve()
    try:
        if settings.database_url is None:
            pg = EmbeddedPostgres(data_dir / "postgres")
            log.info("starting embedded PostgreSQL under %s", pg.pgdata)
            admin_dsn = await asyncio.to_thread(pg.start)
            servers.started.append(pg)
            settings = replace(
                settings, database_url=await _ensure_database(admin_dsn, "omniledger")
            )
        if settings.nats_url is None and need_nats:
            nats = EmbeddedNats(data_dir / "nats")
            log.info("starting embedded NATS (JetStream) under %s", data_dir / "nats")
            url = await asyncio.to_thread(nats.start)
            servers.started.append(nats)
            settings = replace(settings, nats_url=url)
        yield settings
    finally:
        await asyncio.to_thread(servers.stop)


async def connect(settings: Settings, *, pool_size_max: int | None = None) -> asyncpg.Pool:
    if settings.database_url is None:
        raise ValueError("OMNILEDGER_DATABASE_URL is not set")
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=1,
        max_size=pool_size_max or settings.db_pool_size_max,
        command_timeout=30,
    )
    assert pool is not None
    return pool


def admin_key_for(settings: Settings) -> str:
    """The configured admin key, or one generated once and kept in the data folder."""
    if settings.admin_key:
        return settings.admin_key
    path: Path = settings.data_dir / "admin.key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = "olk_admin_" + secrets.token_urlsafe(24)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


async def migrated_store(pool: asyncpg.Pool) -> EventStore:
    store = EventStore(pool)
    applied = await store.migrate()
    if applied:
        log.info("schema migrations applied: %s", applied)
    return store


# -- the parts beyond the core, wired here and nowhere else ---------------------------------


async def prepare(settings: Settings, pool: asyncpg.Pool) -> None:
    """Schema of the parts beyond the core (projection tables)."""


def extensions(settings: Settings, pool: asyncpg.Pool) -> list[Any]:
    """Route sets added to the core's app: gateways, projection reads, audit."""
    from gateways.routes import GatewayRoutes
    from ledger.audit_http import AuditRoutes

    return [GatewayRoutes(), AuditRoutes()]


def relay_config(settings: Settings) -> RelayConfig:
    assert settings.nats_url is not None, "OMNILEDGER_NATS_URL is not set"
    return RelayConfig(
        nats_url=settings.nats_url,
        stream_name=settings.stream_name,
        subject_prefix=settings.subject_prefix,
        max_age_s=settings.stream_max_age_s,
        max_bytes=settings.stream_max_bytes,
        replicas=settings.stream_replicas,
        duplicate_window_s=settings.stream_duplicate_window_s,
    )


async def run_relay(settings: Settings, pool: asyncpg.Pool) -> None:
    await Relay(pool, relay_config(settings)).run()


async def run_projections(settings: Settings, pool: asyncpg.Pool) -> None:
    await asyncio.Event().wait()


def add_commands(sub: Any) -> None:
    """Audit and operator commands (verify, export, replay, reconcile, projections)."""
