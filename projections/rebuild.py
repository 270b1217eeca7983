"""Rebuild a read model from the log into shadow tables, then swap them in atomically.

``rebuild(pool, name, messages)`` folds an iterator of messages (read from
PostgreSQL by the caller, in position order) into ``<table>__rebuild``
tables, in batches of their own transactions, while the live consumer keeps
writing the live tables. Then ONE transaction switches readers over:

1. ``SELECT ... FROM projection_positions WHERE name = $1 FOR UPDATE``: waits
   for the live consumer's batch in flight and holds off its next one (every
   consumer transaction takes this row lock first, so there is no deadlock);
2. per table: ``live`` -> ``live__retired``, dropped; ``live__rebuild`` ->
   ``live``, and its primary-key constraint renamed to the live name;
3. the row gets the rebuilt tables' position and ``generation + 1``.

Readers see the old tables or the new ones, never a mix (DDL is
transactional in PostgreSQL; the renames take ACCESS EXCLUSIVE locks, bounded
by ``lock_timeout``, and prepared statements re-plan against the new tables).

How the live consumer catches up: its next transaction sees the new
generation, drops the batch in hand, and re-creates its JetStream cursor at
the first stream sequence above the rebuilt position (``Consumer._resync``).
Events committed while the rebuild ran - above the rebuilt position - are
delivered again from the stream and applied to the new tables; anything at
or below it is skipped by position. So the stream must still hold the events
since the rebuild's last message (the ``LEDGER`` stream's retention is far
longer than a rebuild). A consumer that is not running at the swap does the
same when it starts, since its cursor is then past the stored position.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg
import orjson

from ledger.store.connection import Connection
from projections import catalog, envelope, schema
from projections.envelope import PoisonMessage
from projections.projection import REBUILD_SUFFIX, Projection
from projections.recaps import DEFAULT_TIMEZONE

__all__ = ["RebuildBusy", "RebuildResult", "rebuild"]

log = logging.getLogger(__name__)

_RETIRED_SUFFIX: Final = "__retired"
#: Attempts at the swap when a lock is not granted within ``lock_timeout_s``.
_SWAP_ATTEMPTS_MAX: Final = 3

ProgressCallback = Callable[[int, int], Awaitable[None] | None]


class RebuildBusy(RuntimeError):
    """Another rebuild of the same read model is running."""


@dataclass(frozen=True, slots=True)
class RebuildResult:
    name: str
    #: position of the last message folded: the rebuilt tables' position
    position: int
    messages: int
    poison: int
    #: ``projection_positions.generation`` after the swap
    generation: int


async def rebuild(
    pool: asyncpg.Pool,
    name: str,
    messages: AsyncIterable[dict[str, Any]],
    *,
    on_progress: ProgressCallback | None = None,
    timezone: str = DEFAULT_TIMEZONE,
    batch_size_max: int = 5000,
    verify_hash: bool = True,
    lock_timeout_s: float = 10.0,
) -> RebuildResult:
    """Rebuilds read model ``name`` from ``messages`` and swaps it in; see the module doc.

    ``messages`` are message dicts (the shape of ``ledger/contract/messages.py``) in
    position order; a position at or below one already seen is skipped.
    ``on_progress(position, count)`` is called (and awaited if it returns an
    awaitable) after each batch. Raises :class:`RebuildBusy` if a rebuild of
    ``name`` is already running. If this fails before the swap, the live
    tables are untouched; the shadow tables are dropped by the next rebuild.
    """
    live = catalog.projection(name, timezone=timezone)
    shadow = catalog.projection(name, timezone=timezone, suffix=REBUILD_SUFFIX)
    await schema.ensure_schema(pool, [live])
    lock_key = f"omniledger.projections.rebuild.{name}"
    async with pool.acquire() as conn:
        # a session lock on a connection held for the whole rebuild
        if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", lock_key):
            raise RebuildBusy(f"a rebuild of {name!r} is already running")
        try:
            await _drop_tables(conn, shadow)
            await schema.ensure_schema(conn, [shadow])
            folded = await _fold_all(
                conn, shadow, messages, on_progress, batch_size_max, verify_hash
            )
            generation = await _swap(conn, live, shadow, folded, lock_timeout_s)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", lock_key)
    result = RebuildResult(name, folded.position, folded.count, folded.poison, generation)
    # the command line prints the outcome in words; this is for a debug log
    log.debug("projection %s rebuilt: %s", name, result)
    return result


@dataclass(slots=True)
class _Folded:
    position: int = 0
    recorded_at: datetime | None = None
    count: int = 0
    poison: int = 0


async def _fold_all(
    conn: Connection,
    shadow: Projection,
    messages: AsyncIterable[dict[str, Any]],
    on_progress: ProgressCallback | None,
    batch_size_max: int,
    verify_hash: bool,
) -> _Folded:
    """Folds the messages into the shadow tables, a batch a transaction.

    A batch is written by a task while the next one is read and parsed: the
    log is read on another connection of the pool, so PostgreSQL writes one
    batch while this process parses the next. Writes stay one at a time and
    in order (each waits for the one before), as a fold's loads need.
    """
    folded = _Folded()
    facts: list[Any] = []
    poison: list[tuple[Any, ...]] = []
    writing: asyncio.Task[None] | None = None

    async def flush() -> None:
        nonlocal writing, facts, poison
        if writing is not None:
            await writing
        writing = asyncio.create_task(
            _write(conn, shadow, facts, poison, on_progress, folded.position, folded.count)
        )
        facts, poison = [], []

    try:
        pending = 0
        async for raw in messages:
            try:
                message = envelope.check(raw, verify_hash=verify_hash)
            except PoisonMessage as e:
                poison.append(_poison_row(shadow.name, raw, None, str(e)))
                folded.poison += 1
                continue
            position = message["position"]
            if position <= folded.position:
                continue  # a duplicate, or out of order: the log is read in position order
            try:
                fact = shadow.parse(message)
            except PoisonMessage as e:
                poison.append(_poison_row(shadow.name, raw, position, str(e)))
                folded.poison += 1
                fact = None
            if fact is not None:
                facts.append(fact)
            folded.position = position
            folded.recorded_at = envelope.recorded_at(message)
            folded.count += 1
            pending += 1
            if pending >= batch_size_max:
                await flush()
                pending = 0
        await flush()
        assert writing is not None
        await writing
    finally:
        if writing is not None and not writing.done():
            writing.cancel()
            await asyncio.wait([writing])  # ended before the connection is used again
    return folded


async def _write(
    conn: Connection,
    shadow: Projection,
    facts: list[Any],
    poison: list[tuple[Any, ...]],
    on_progress: ProgressCallback | None,
    position: int,
    count: int,
) -> None:
    """One batch in one transaction, then its progress report."""
    async with conn.transaction():
        if facts:
            await shadow.apply(conn, facts)
        if poison:
            await conn.executemany(
                """INSERT INTO projection_poison
                       (name, stream_seq, subject, position, body, error)
                   VALUES ($1, 0, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
                poison,
            )
    if on_progress is not None:
        outcome = on_progress(position, count)
        if inspect.isawaitable(outcome):
            await outcome


def _poison_row(name: str, raw: Any, position: int | None, error: str) -> tuple[Any, ...]:
    try:
        body = orjson.dumps(raw)
    except TypeError:
        body = repr(raw).encode()
    kind = raw.get("type") if isinstance(raw, dict) else None
    subject = f"log:{kind}" if isinstance(kind, str) else "log"
    return (name, subject[:200], position, body, error[:2000])


async def _drop_tables(conn: Connection, projection: Projection) -> None:
    for base in projection.tables:
        await conn.execute(f"DROP TABLE IF EXISTS {projection.table(base)}")


async def _swap(
    conn: Connection,
    live: Projection,
    shadow: Projection,
    folded: _Folded,
    lock_timeout_s: float,
) -> int:
    for attempt in range(1, _SWAP_ATTEMPTS_MAX + 1):
        try:
            return await _swap_once(conn, live, shadow, folded, lock_timeout_s)
        except asyncpg.LockNotAvailableError:
            if attempt == _SWAP_ATTEMPTS_MAX:
                raise
            log.warning("projection %s: swap waited too long for a lock; retrying", live.name)
    raise AssertionError("unreachable")


async def _swap_once(
    conn: Connection,
    live: Projection,
    shadow: Projection,
    folded: _Folded,
    lock_timeout_s: float,
) -> int:
    async with conn.transaction():
        # bounded waits: readers queue behind an ACCESS EXCLUSIVE request
        await conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_s * 1000)}ms'")
        await conn.execute(
            "SELECT 1 FROM projection_positions WHERE name = $1 FOR UPDATE", live.name
        )
        constraints = live.constraint_names()
        for base in live.tables:
            retired = base + _RETIRED_SUFFIX
            await conn.execute(f"ALTER TABLE {base} RENAME TO {retired}")
            await conn.execute(f"DROP TABLE {retired}")
            await conn.execute(f"ALTER TABLE {shadow.table(base)} RENAME TO {base}")
            for constraint in constraints[base]:
                shadow_name = constraint.replace(base, shadow.table(base), 1)
                await conn.execute(
                    f"ALTER TABLE {base} RENAME CONSTRAINT {shadow_name} TO {constraint}"
                )
        generation: int = await conn.fetchval(
            """UPDATE projection_positions
               SET position = $2, generation = generation + 1, updated_at = now(),
                   last_recorded_at = $3
               WHERE name = $1
               RETURNING generation""",
            live.name,
            folded.position,
            folded.recorded_at,
        )
    return generation
