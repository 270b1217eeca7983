"""Rebuild a read model from the log into shadow tables, then swap them in atomically.

``rebuild(pool, name, messages)`` folds an iterator of messages (read from
PostgreSQL by the caller, in position order) into ``<table>__rebuild``
tables, in batches of their own transactions, while the live consumer keeps
writing the live tables (``rebuild_all`` does it for several models from one
pass over the log). Then ONE transaction per model switches readers over:

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
import contextlib
import inspect
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import asyncpg
import orjson

from ledger.store.connection import Connection
from projections import catalog, envelope, schema
from projections.envelope import PoisonMessage
from projections.projection import REBUILD_SUFFIX, Projection
from projections.recaps import DEFAULT_TIMEZONE

__all__ = ["RebuildBusy", "RebuildResult", "rebuild", "rebuild_all"]

log = logging.getLogger(__name__)

_RETIRED_SUFFIX: Final = "__retired"
#: Messages per batch (one transaction per model): fewer round trips and
#: fewer loads of earlier state than the consumers' batches; 20,000 facts
#: and their rows are a few tens of MB at most.
BATCH_SIZE_MAX: Final = 20_000
#: Attempts at the swap when a lock is not granted within ``lock_timeout_s``.
_SWAP_ATTEMPTS_MAX: Final = 3

ProgressCallback = Callable[[int, int], Awaitable[None] | None]
Parse = Callable[[dict[str, Any]], Any]


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
    batch_size_max: int = BATCH_SIZE_MAX,
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
    (result,) = await rebuild_all(
        pool,
        [name],
        messages,
        on_progress=on_progress,
        timezone=timezone,
        batch_size_max=batch_size_max,
        verify_hash=verify_hash,
        lock_timeout_s=lock_timeout_s,
    )
    return result


async def rebuild_all(
    pool: asyncpg.Pool,
    names: Sequence[str],
    messages: AsyncIterable[dict[str, Any]],
    *,
    on_progress: ProgressCallback | None = None,
    timezone: str = DEFAULT_TIMEZONE,
    batch_size_max: int = BATCH_SIZE_MAX,
    verify_hash: bool = True,
    lock_timeout_s: float = 10.0,
) -> list[RebuildResult]:
    """:func:`rebuild` of every model in ``names`` from ONE pass over ``messages``.

    Each message is read, its envelope and hash checked once, then parsed
    by every model (once for the models that share a parse:
    ``Projection.shared_parse``); each model writes its shadow tables on a
    connection of its own (PostgreSQL applies the batches side by side) and
    is swapped in on its own, as :func:`rebuild` does, once the log is
    folded. The pool must have a connection per model, plus whatever reads
    ``messages``. The results are in the order of ``names``.
    """
    if len(set(names)) != len(names):
        raise ValueError(f"a read model named twice in {list(names)}")
    lives = [catalog.projection(name, timezone=timezone) for name in names]
    shadows = [catalog.projection(name, timezone=timezone, suffix=REBUILD_SUFFIX) for name in names]
    await schema.ensure_schema(pool, lives)
    async with contextlib.AsyncExitStack() as held:
        targets = []
        for shadow in shadows:
            conn = await held.enter_async_context(pool.acquire())
            # a session lock on a connection held for the whole rebuild
            lock_key = f"omniledger.projections.rebuild.{shadow.name}"
            if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", lock_key):
                raise RebuildBusy(f"a rebuild of {shadow.name!r} is already running")
            held.push_async_callback(_unlock, conn, lock_key)
            targets.append(_Target(conn, shadow))
        for target in targets:
            await _drop_tables(target.conn, target.shadow)
            await schema.ensure_schema(target.conn, [target.shadow])
        folded = await _fold_into(targets, messages, on_progress, batch_size_max, verify_hash)
        results = []
        for target, live in zip(targets, lives, strict=True):
            generation = await _swap(target.conn, live, target.shadow, folded, lock_timeout_s)
            results.append(
                RebuildResult(live.name, folded.position, folded.count, target.poison, generation)
            )
    for result in results:
        # the command line prints the outcome in words; this is for a debug log
        log.debug("projection %s rebuilt: %s", result.name, result)
    return results


async def _unlock(conn: Connection, lock_key: str) -> None:
    await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", lock_key)


@dataclass(slots=True)
class _Folded:
    position: int = 0
    recorded_at: datetime | None = None
    count: int = 0
    poison: int = 0


@dataclass(slots=True)
class _Target:
    """One model of a pass: its shadow tables, the connection that writes them, its batch."""

    conn: Connection
    shadow: Projection
    facts: list[Any] = field(default_factory=list)
    poison_rows: list[tuple[Any, ...]] = field(default_factory=list)
    poison: int = 0


async def _fold_all(
    conn: Connection,
    shadow: Projection,
    messages: AsyncIterable[dict[str, Any]],
    on_progress: ProgressCallback | None,
    batch_size_max: int,
    verify_hash: bool,
) -> _Folded:
    """Folds the messages into one model's shadow tables (``check-projections``)."""
    target = _Target(conn, shadow)
    folded = await _fold_into([target], messages, on_progress, batch_size_max, verify_hash)
    folded.poison = target.poison
    return folded


async def _fold_into(
    targets: Sequence[_Target],
    messages: AsyncIterable[dict[str, Any]],
    on_progress: ProgressCallback | None,
    batch_size_max: int,
    verify_hash: bool,
) -> _Folded:
    """Folds the messages into every target's shadow tables, a batch a transaction each.

    A batch is written by a task while the next one is read and parsed: the
    log is read on another connection of the pool, so PostgreSQL writes one
    batch while this process parses the next. Writes stay one at a time and
    in order per model (each waits for the one before), as a fold's loads need.
    """
    folded = _Folded()
    writing: asyncio.Task[None] | None = None

    async def flush() -> None:
        nonlocal writing
        if writing is not None:
            await writing
        batches = [(t, t.facts, t.poison_rows) for t in targets]
        for t in targets:
            t.facts, t.poison_rows = [], []
        writing = asyncio.create_task(
            _write_all(batches, on_progress, folded.position, folded.count)
        )

    parsers = _parsers(targets)
    last: dict[str, Any] | None = None  # the last message folded: its time is the position's
    try:
        pending = 0
        async for raw in messages:
            try:
                message = envelope.check(raw, verify_hash=verify_hash)
            except PoisonMessage as e:
                _set_aside(targets, raw, None, e)
                continue
            position = message["position"]
            if position <= folded.position:
                continue  # a duplicate, or out of order: the log is read in position order
            _parse(parsers, message, raw)
            folded.position = position
            last = message
            folded.count += 1
            pending += 1
            if pending >= batch_size_max:
                folded.recorded_at = envelope.recorded_at(last)
                await flush()
                pending = 0
        if last is not None:
            folded.recorded_at = envelope.recorded_at(last)
        await flush()
        assert writing is not None
        await writing
    finally:
        if writing is not None and not writing.done():
            writing.cancel()
            await asyncio.wait([writing])  # ended before the connections are used again
    return folded


def _parse(
    parsers: Sequence[tuple[Parse, list[_Target]]], message: dict[str, Any], raw: Any
) -> None:
    """Each parse's facts of ``message`` to its targets; a poison message set aside."""
    for parse, group in parsers:
        try:
            fact = parse(message)
        except PoisonMessage as e:
            _set_aside(group, raw, message["position"], e)
            continue
        if fact is not None:
            for t in group:
                t.facts.append(fact)


def _set_aside(
    targets: Sequence[_Target], raw: Any, position: int | None, error: PoisonMessage
) -> None:
    for t in targets:
        t.poison_rows.append(_poison_row(t.shadow.name, raw, position, str(error)))
        t.poison += 1


def _parsers(targets: Sequence[_Target]) -> list[tuple[Parse, list[_Target]]]:
    """Each distinct parse of the targets' models, with the targets that take its facts."""
    shared: dict[Hashable, tuple[Parse, list[_Target]]] = {}
    parsers: list[tuple[Parse, list[_Target]]] = []
    for t in targets:
        found = t.shadow.shared_parse()
        if found is None:
            parsers.append((t.shadow.parse, [t]))
            continue
        key, parse = found
        if key not in shared:
            shared[key] = (parse, [])
            parsers.append(shared[key])
        shared[key][1].append(t)
    return parsers


async def _write_all(
    batches: Sequence[tuple[_Target, list[Any], list[tuple[Any, ...]]]],
    on_progress: ProgressCallback | None,
    position: int,
    count: int,
) -> None:
    """One batch per model, each in its own transaction on its own connection, side by
    side; then the batch's progress report. A failed one cancels the others."""
    async with asyncio.TaskGroup() as group:
        for target, facts, poison in batches:
            if facts or poison:
                group.create_task(_write(target.conn, target.shadow, facts, poison))
    if on_progress is not None:
        outcome = on_progress(position, count)
        if inspect.isawaitable(outcome):
            await outcome


async def _write(
    conn: Connection,
    shadow: Projection,
    facts: list[Any],
    poison: list[tuple[Any, ...]],
) -> None:
    """One model's batch in one transaction."""
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
