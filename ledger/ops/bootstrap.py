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
from typing import TYPE_CHECKING, Any, Final

import asyncpg

from ledger.ops.data_dir import remember
from ledger.ops.settings import Settings
from ledger.store import LedgerStore

if TYPE_CHECKING:  # imported where used: `omniledger verify` should not load NATS or HTTP
    from ledger.ops.supervisor import Supervisor
    from ledger.relay.relay import RelayConfig

log = logging.getLogger("omniledger")

__all__ = [
    "Servers",
    "close_pool",
    "connect",
    "connect_reads",
    "embedded_servers",
    "supervisor_health",
]


@dataclass
class Servers:
    """Where PostgreSQL and NATS are, and the embedded ones we started (if any)."""

    settings: Settings
    started: list[Any] = field(default_factory=list)

    def stop(self) -> None:
        for server in reversed(self.started):
            server.stop()
        self.started.clear()


async def _start(servers: Servers, server: Any) -> str:
    """Starts ``server`` in a thread, listed for stopping before it starts.

    Cancelled (Ctrl-C, SIGTERM) meanwhile, it waits for the start to end: the
    thread cannot be interrupted, and a server that comes up after we gave up
    on it would otherwise be left running."""
    servers.started.append(server)
    starting = asyncio.ensure_future(asyncio.to_thread(server.start))
    try:
        return str(await asyncio.shield(starting))
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await starting
        raise


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
    from ledger.ops.embedded_nats import EmbeddedNats
    from ledger.ops.embedded_postgres import EmbeddedPostgres

    servers = Servers(settings)
    data_dir = settings.data_dir.resolve()
    try:
        if settings.database_url is None:
            pg = EmbeddedPostgres(data_dir / "postgres")
            log.info("starting embedded PostgreSQL under %s", pg.pgdata)
            admin_dsn = await _start(servers, pg)
            settings = replace(
                settings, database_url=await _ensure_database(admin_dsn, "omniledger")
            )
        if settings.nats_url is None and need_nats:
            nats = EmbeddedNats(data_dir / "nats")
            log.info("starting embedded NATS (JetStream) under %s", data_dir / "nats")
            settings = replace(settings, nats_url=await _start(servers, nats))
        if servers.started:
            remember(data_dir, settings)
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


#: how long a stopping process waits for its connections to come back to the pool
POOL_CLOSE_TIMEOUT_S: Final = 5.0


async def close_pool(pool: asyncpg.Pool, timeout_s: float = POOL_CLOSE_TIMEOUT_S) -> None:
    """Closes ``pool``, waiting at most ``timeout_s`` for the connections still in use,
    then closing those at once (``Pool.terminate``). ``Pool.close`` alone waits for
    every connection to be released: a task that did not end on cancellation kept
    ``omniledger project`` alive for minutes after SIGTERM, holding its connection.
    Their transactions are rolled back by the server; nothing committed is lost."""
    try:
        await asyncio.wait_for(pool.close(), timeout_s)
    except TimeoutError:
        log.warning(
            "database connections still in use %g s after stopping; closing them", timeout_s
        )
        pool.terminate()


async def connect_reads(settings: Settings, *, pool_size_max: int | None = None) -> asyncpg.Pool:
    """A pool on OMNILEDGER_READ_DATABASE_URL (a streaming standby) when set, else on
    OMNILEDGER_DATABASE_URL."""
    url = settings.read_database_url or settings.database_url
    return await connect(replace(settings, database_url=url), pool_size_max=pool_size_max)


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


class SchemaNotReady(Exception):
    """A read-only command found the schema behind this version: ``omniledger migrate`` first."""


async def readable_store(pool: asyncpg.Pool) -> LedgerStore:
    """The store for commands that only read (verify, export, replay): the
    schema is checked, never changed, so an auditor's read-only role (or a
    read replica) can run them."""
    store = LedgerStore(pool)
    missing = await store.missing_migrations()
    if missing:
        raise SchemaNotReady(
            f"the database schema lacks migrations {missing}: run `omniledger migrate` first"
        )
    return store


async def migrated_store(pool: asyncpg.Pool) -> LedgerStore:
    store = LedgerStore(pool)
    applied = await store.migrate()
    if applied:
        log.info("schema migrations applied: %s", applied)
    return store


# -- the parts beyond the core, wired here and nowhere else ---------------------------------


async def prepare(settings: Settings, pool: asyncpg.Pool) -> None:
    """Schema of the parts beyond the core (projection tables)."""
    from projections import PROJECTION_NAMES
    from projections.catalog import projection
    from projections.schema import ensure_schema

    await ensure_schema(pool, [projection(n, timezone=settings.timezone) for n in PROJECTION_NAMES])


def extensions(
    settings: Settings, pool: asyncpg.Pool, read_pool: asyncpg.Pool | None = None
) -> list[Any]:
    """Route sets added to the core's app: gateways, projection reads, audit, the pages;
    ``read_pool`` (OMNILEDGER_READ_DATABASE_URL's) serves the read models' routes."""
    from dasbor import DasborPages
    from gateways.routes import GatewayRoutes
    from ledger.audit.routes import AuditRoutes
    from projections.routes import ProjectionRoutes

    return [GatewayRoutes(), AuditRoutes(), ProjectionRoutes(pool, read_pool), DasborPages(pool)]


def supervisor_health(supervisor: Supervisor) -> Any:
    """The extension that shows ``up``'s children on ``/healthz`` (``children``) and
    ``/metrics``: a child that is not running makes the service ``degraded``."""
    from ledger.api.http import HealthPart, add_health_check

    async def check(_head: int) -> HealthPart:
        children = supervisor.snapshot()
        problems = tuple(
            f"{name}: {c['state']}" + (f" after {c['last_exit']}" if c["last_exit"] else "")
            for name, c in children.items()
            if c["state"] != "running"
        )
        gauges = tuple(
            g
            for name, c in children.items()
            for g in (
                ("omniledger_child_running", f'{{name="{name}"}}', int(c["state"] == "running")),
                ("omniledger_child_restarts", f'{{name="{name}"}}', c["restarts"]),
            )
        )
        return HealthPart({"children": children}, problems, gauges)

    class _Health:
        def setup(self, app: Any) -> None:
            add_health_check(app, check)

    return _Health()


def relay_config(settings: Settings) -> RelayConfig:
    from ledger.relay.relay import RelayConfig

    assert settings.nats_url is not None, "OMNILEDGER_NATS_URL is not set"
    return RelayConfig(
        nats_url=settings.nats_url,
        stream_name=settings.stream_name,
        subject_prefix=settings.subject_prefix,
        max_age_s=settings.stream_max_age_s,
        max_bytes=settings.stream_max_bytes,
        replicas=settings.stream_replicas,
        duplicate_window_s=settings.stream_duplicate_window_s,
        linger_s=settings.relay_linger_ms / 1000,
    )


async def run_relay(settings: Settings, pool: asyncpg.Pool) -> None:
    from ledger.relay.relay import Relay

    await Relay(pool, relay_config(settings)).run()


async def run_projections(settings: Settings, pool: asyncpg.Pool) -> None:
    from projections import run_projections as run

    assert settings.nats_url is not None, "OMNILEDGER_NATS_URL is not set"
    from projections import PROJECTION_NAMES

    await run(
        names=settings.projection_models or PROJECTION_NAMES,
        stop=asyncio.Event(),  # stopped by cancellation
        pool=pool,
        nats_url=settings.nats_url,
        stream=settings.stream_name,
        subject_prefix=settings.subject_prefix,
        timezone=settings.timezone,
        linger_s=settings.projection_linger_ms / 1000,
        # what the stream leaves out (aged out, naked and overtaken) is read from the log
        read_log=LedgerStore(pool).read_log,
    )


#: ``check-projections``: every event in the log when the check started must be
#: in every read model within ``CHECK_WAIT_S`` (a running model is milliseconds
#: behind; one that stopped never gets there)
CHECK_LAG_EVENTS_MAX = 0
CHECK_WAIT_S = 10.0


def add_commands(sub: Any) -> None:
    """Operator commands that need the projections package."""
    p = sub.add_parser("projections", help="operate the read models")
    verbs = p.add_subparsers(dest="verb", required=True)
    r = verbs.add_parser("rebuild", help="rebuild read models from PostgreSQL, then switch over")
    r.add_argument("names", nargs="*", metavar="name", help="read models (default: all)")
    r.set_defaults(run=_cmd_rebuild)
    c = sub.add_parser(
        "check-projections",
        help="compare every read model with the log, and say which are behind its head",
    )
    c.add_argument(
        "--lag-max", type=int, default=CHECK_LAG_EVENTS_MAX, metavar="N",
        help="a read model more than N events behind the log's head (as it was when the "
        f"check started) fails the check (default {CHECK_LAG_EVENTS_MAX})",
    )  # fmt: skip
    c.add_argument(
        "--wait-s", type=float, default=CHECK_WAIT_S, metavar="S",
        help="seconds to give running read models to reach that head before they are "
        f"judged (default {CHECK_WAIT_S:g})",
    )  # fmt: skip
    c.set_defaults(run=_cmd_check)


def _log_reader(store: LedgerStore) -> Any:
    async def read(after: int, until: int | None) -> Any:
        async for message in store.iter_log(after=after, until=until):
            yield message

    return read


async def _cmd_rebuild(settings: Settings, args: Any) -> int:
    import sys

    from tqdm import tqdm

    from projections import PROJECTION_NAMES, rebuild_all

    names = list(dict.fromkeys(args.names)) or list(PROJECTION_NAMES)
    unknown = [n for n in names if n not in PROJECTION_NAMES]
    if unknown:
        print(f"omniledger: unknown read model {unknown[0]!r}; known: "
              f"{', '.join(PROJECTION_NAMES)}", file=sys.stderr)  # fmt: skip
        return 2
    # a connection per model (each writes its own tables) and one reading the log
    pool = await connect(settings, pool_size_max=len(names) + 1)
    try:
        store = await migrated_store(pool)
        await prepare(settings, pool)
        head, _ = await store.head()
        # one pass over the log feeds every model: read, decoded and hash-checked once
        bar = tqdm(total=head, unit="ev", unit_scale=True, desc=f"rebuild {', '.join(names)}",
                   file=sys.stderr, disable=None, mininterval=0.5)  # fmt: skip

        def progress(position: int, _count: int) -> None:
            bar.update(max(position - bar.n, 0))

        results = await rebuild_all(
            pool, names, store.iter_log(), on_progress=progress, timezone=settings.timezone
        )
        bar.close()
        for r in results:
            print(f"{r.name}: rebuilt to position {r.position} ({r.messages} events, "
                  f"{r.poison} set aside), generation {r.generation}")  # fmt: skip
    finally:
        await pool.close()
    return 0


async def _cmd_check(settings: Settings, args: Any) -> int:
    import sys

    from projections import PROJECTION_NAMES
    from projections.check import check_projection, positions_at_head

    if args.lag_max < 0 or not 0 <= args.wait_s <= 3600:
        print("omniledger: --lag-max must be 0 or more and --wait-s 0 to 3600", file=sys.stderr)
        return 2
    pool = await connect(settings, pool_size_max=4)
    clean = True
    try:
        store = await migrated_store(pool)
        await prepare(settings, pool)
        head, _ = await store.head()
        positions = await positions_at_head(pool, PROJECTION_NAMES, head, wait_s=args.wait_s)
        for name, position in positions.items():
            behind = head - position
            if behind > args.lag_max:
                clean = False
                print(f"{name}: BEHIND the log by {behind} events (at position {position}, "
                      f"log head {head}, after waiting {args.wait_s:g} s; at most "
                      f"{args.lag_max} allowed); is its `omniledger project` running?"
                      f" (GET /healthz shows it)")  # fmt: skip
        for name in PROJECTION_NAMES:
            drift = await check_projection(
                pool, name, _log_reader(store), timezone=settings.timezone
            )
            if drift.ok:
                print(f"{name}: ok at position {drift.position}")
            else:
                clean = False
                print(f"{name}: DIFFERS at position {drift.position} (amounts in minor units)")
                for line in drift.differences:
                    print(f"  {line}")
                print(f"  to rebuild it from the log: omniledger projections rebuild {name}")
        clean = await _check_balances_independently(store, pool) and clean
    finally:
        await pool.close()
    return 0 if clean else 1


async def _check_balances_independently(store: LedgerStore, pool: asyncpg.Pool) -> bool:
    """Balances once more, summed in SQL from the log (``ledger.audit.balance_sums``).

    Not the projection's fold, and not the money module it shares with the
    write side and the replay: a wrong rule there is caught here, not only a
    missed event. The projection's figures are taken as the API answers them.
    """
    from ledger.audit.balance_sums import balance_sums, differences

    async with pool.acquire() as conn, conn.transaction():
        # FOR SHARE holds the consumer off while its rows are read at one position.
        position = await conn.fetchval(
            "SELECT position FROM projection_positions WHERE name = 'balances' FOR SHARE"
        )
        rows = await conn.fetch(
            "SELECT seller_id, currency, pending_minor, captured_minor, refunded_minor,"
            " fees_minor, paid_out_minor FROM proj_balances"
        )
    try:
        sums = await balance_sums(pool, position or 0)
    except (asyncpg.PostgresError, ValueError) as e:
        print(f"balances: the log could not be summed ({e}); run omniledger verify")
        return False
    found = differences([dict(r) for r in rows], sums)
    for line in found:
        print(f"balances: {line}")
    clean = not found
    verdict = "ok" if clean else "DIFFERS"
    print(f"balances: independent replay {verdict} at position {position or 0}")
    return clean
