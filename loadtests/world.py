"""What one benchmark run runs in: its options, servers, names, databases and stream.

Here: ``Options`` (what the command line asked for), ``World`` (the run's tag,
work folder, child processes, PostgreSQL admin DSN and the databases created
on it, NATS URL and the stream name), the context managers that find or start
PostgreSQL and NATS, and ``Stream`` (our JetStream stream: its progress, its
deletion). Not here: what is measured (``loadtests/bench.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import asyncpg

from loadtests.processes import Children

__all__ = [
    "DEFAULT_NATS_URL",
    "DEFAULT_PG_ADMIN_DSN",
    "Options",
    "Stream",
    "World",
    "dsn_for",
    "nats_server",
    "pg_parts",
    "postgres_server",
]

log = logging.getLogger("loadtests")

DEFAULT_PG_ADMIN_DSN: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_NATS_URL: Final = "nats://127.0.0.1:4222"


@dataclass(frozen=True)
class Options:
    duration_s: int
    warmup_s: int
    connections: int
    sellers: int
    batch_size: int
    serve_processes: int
    project_processes: int
    split: bool
    es_threads: int
    lag_timeout_s: float
    pg_admin_dsn: str | None
    nats_url: str | None
    embedded: bool
    smoke: bool
    write: bool
    label: str | None
    keep: bool
    argv: list[str] = field(default_factory=list)
    #: ``omniledger up/serve --workers``: API processes sharing each port
    serve_workers: int = 1
    #: generator connections in the batched phase (issue 12's setting: 16)
    batch_connections: int = 16
    #: events filled for the catch-up phase (0: no catch-up phase)
    catchup_events: int = 100_000

    @property
    def quiet_s(self) -> float:
        """How long the head must stand still after a phase (see ``LagWatch.after_load``)."""
        return 1.0 if self.smoke else 3.0

    @property
    def topology(self) -> str:
        if self.split or self.serve_processes > 1 or self.project_processes > 1:
            return "split"
        return "up"

    @property
    def section_label(self) -> str:
        if self.label:
            return self.label
        workers = f"-{self.serve_workers}-workers" if self.serve_workers > 1 else ""
        if self.topology == "up":
            return f"one-box{workers}"
        return f"one-box-{self.serve_processes}-serve-{self.project_processes}-project{workers}"


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def dsn_for(admin_dsn: str, dbname: str) -> str:
    """The same DSN naming ``dbname`` (TCP form or libpq's socket form ``@/db?host=``)."""
    parts = urllib.parse.urlsplit(admin_dsn)
    url = f"{parts.scheme}://{parts.netloc}/{urllib.parse.quote(dbname, safe='')}"
    return url + (f"?{parts.query}" if parts.query else "")


def pg_parts(dsn: str) -> dict[str, str]:
    """host, port, user, password of a DSN, for libraries configured by fields."""
    parts = urllib.parse.urlsplit(dsn)
    query = urllib.parse.parse_qs(parts.query)
    return {
        "host": parts.hostname or query.get("host", ["127.0.0.1"])[0],
        "port": str(parts.port or query.get("port", ["5432"])[0]),
        "user": urllib.parse.unquote(parts.username or "postgres"),
        "password": urllib.parse.unquote(parts.password or ""),
    }


@dataclass
class World:
    """Servers, names and processes of one run; cleaned up by the exit stack in ``run``."""

    options: Options
    tag: str
    workdir: Path
    children: Children
    pg_admin_dsn: str = ""
    pg_embedded: bool = False
    nats_url: str = ""
    nats_embedded: bool = False
    admin_key: str = ""
    databases: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def stream(self) -> str:
        return f"BENCH_{self.tag}"

    @property
    def subject_prefix(self) -> str:
        return f"bench_{self.tag}"

    def log_path(self, name: str) -> Path:
        folder = self.workdir / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name}.log"

    async def create_database(self, name: str) -> str:
        conn = await asyncpg.connect(self.pg_admin_dsn, timeout=10)
        try:
            self.databases.append(name)  # before CREATE: a half-done one is dropped too
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return dsn_for(self.pg_admin_dsn, name)

    async def drop_databases(self) -> None:
        if not self.databases:
            return
        conn = await asyncpg.connect(self.pg_admin_dsn, timeout=10)
        try:
            for name in reversed(self.databases):
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                log.info("dropped database %s", name)
        finally:
            await conn.close()
        self.databases.clear()


@contextlib.asynccontextmanager
async def postgres_server(world: World) -> AsyncIterator[None]:
    o = world.options
    if o.pg_admin_dsn and not o.embedded:
        world.pg_admin_dsn = o.pg_admin_dsn
        yield
        return
    if not o.embedded and listening("127.0.0.1", 5432):
        world.pg_admin_dsn = DEFAULT_PG_ADMIN_DSN
        yield
        return
    from ledger.ops.embedded_postgres import EmbeddedPostgres

    pg = EmbeddedPostgres(world.workdir / "pg")
    log.info("starting embedded PostgreSQL under %s", pg.data_dir)
    try:
        world.pg_admin_dsn = await asyncio.to_thread(pg.start)
        world.pg_embedded = True
        yield
    finally:
        await asyncio.to_thread(pg.stop)


@contextlib.asynccontextmanager
async def nats_server(world: World) -> AsyncIterator[None]:
    o = world.options
    if o.nats_url and not o.embedded:
        world.nats_url = o.nats_url
        yield
        return
    if not o.embedded and listening("127.0.0.1", 4222):
        world.nats_url = DEFAULT_NATS_URL
        yield
        return
    from ledger.ops.embedded_nats import EmbeddedNats

    server = EmbeddedNats(world.workdir / "nats")
    log.info("starting embedded NATS under %s", world.workdir / "nats")
    try:
        world.nats_url = await asyncio.to_thread(server.start)
        world.nats_embedded = True
        yield
    finally:
        await asyncio.to_thread(server.stop)


class Stream:
    """Our JetStream stream, read for the relay's progress and deleted at the end."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.nc: Any = None
        self.js: Any = None

    async def connect(self) -> None:
        import nats

        from ledger.contract.servers import nats_servers

        self.nc = await nats.connect(
            servers=nats_servers(self.world.nats_url), connect_timeout=5, max_reconnect_attempts=3
        )
        self.js = self.nc.jetstream()

    @property
    def server_version(self) -> str | None:
        version = getattr(self.nc, "connected_server_version", None)
        # ServerVersion keeps the string the server announced ("2.10.22")
        return getattr(version, "_server_version", None) or (str(version) if version else None)

    async def last_seq(self) -> int:
        from nats.js.errors import NotFoundError

        try:
            info = await self.js.stream_info(self.world.stream)
        except NotFoundError:
            return 0
        return int(info.state.last_seq)

    async def delete_and_close(self) -> None:
        from nats.js.errors import NotFoundError

        if self.nc is None:
            return
        try:
            with contextlib.suppress(NotFoundError):
                await self.js.delete_stream(self.world.stream)
                log.info("deleted stream %s", self.world.stream)
        finally:
            await self.nc.close()
            self.nc = None
