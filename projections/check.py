"""Drift check: every read model against a replay of the log (``omniledger check-projections``).

Each model is folded again from PostgreSQL into its shadow tables (the ones a
rebuild uses, under the same lock) up to the live model's position, then the
live row lock is taken, the few events the consumer applied meanwhile are
folded too, and the two sets of tables are compared row for row with
``EXCEPT ALL`` both ways. Nothing is swapped; the shadow tables are dropped.

That comparison stops at the model's own position, so a model that stopped
would compare clean: ``positions_at_head`` first waits (briefly) for every
model to reach the log's head, and the command reports how far each is behind.

A replay through the model's own fold finds a missed or doubled event, never a
wrong rule: both sides apply the same one (for balances, the money rule of
``ledger.domain.balances``, which the write side shares too). So the command
also compares the balances with sums computed in SQL straight from the log,
sharing no code with the fold (``ledger.audit.balance_sums``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from ledger.store.connection import Connection
from projections import catalog, schema
from projections.projection import REBUILD_SUFFIX
from projections.rebuild import BATCH_SIZE_MAX, RebuildBusy, _drop_tables, _fold_all

__all__ = ["Drift", "check_projection", "positions_at_head"]

LogReader = Callable[[int, int], AsyncIterator[dict[str, Any]]]
_SAMPLE_ROWS = 5
#: How often ``positions_at_head`` looks at the models' positions.
_POLL_S = 0.1


@dataclass
class Drift:
    name: str
    position: int
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


async def check_projection(
    pool: asyncpg.Pool, name: str, read_log: LogReader, *, timezone: str
) -> Drift:
    """Compares read model ``name`` with the log; ``read_log(after, until)`` streams messages."""
    live = catalog.projection(name, timezone=timezone)
    shadow = catalog.projection(name, timezone=timezone, suffix=REBUILD_SUFFIX)
    await schema.ensure_schema(pool, [live])
    lock_key = f"omniledger.projections.rebuild.{name}"
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", lock_key):
            raise RebuildBusy(f"a rebuild of {name!r} is running; check again after it")
        try:
            await _drop_tables(conn, shadow)
            await schema.ensure_schema(conn, [shadow])
            start = await _position(conn, name)
            await _fold_all(conn, shadow, read_log(0, start), None, BATCH_SIZE_MAX, True)
            async with conn.transaction():
                # Hold off the live consumer while the last events are folded and compared.
                position = await conn.fetchval(
                    "SELECT position FROM projection_positions WHERE name = $1 FOR UPDATE", name
                )
                await _fold_all(conn, shadow, read_log(start, position), None, BATCH_SIZE_MAX, True)
                drift = Drift(name, position)
                for base in live.tables:
                    drift.differences.extend(
                        await _compare(conn, live.table(base), shadow.table(base))
                    )
            await _drop_tables(conn, shadow)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", lock_key)
    return drift


async def positions_at_head(
    pool: asyncpg.Pool, names: Sequence[str], head: int, *, wait_s: float
) -> dict[str, int]:
    """Each read model's position, once every one has reached ``head`` or ``wait_s``
    has passed: a running model a few events behind is given the time to catch up,
    a stopped one is not waited for longer. A model that never ran is at 0."""
    deadline = time.monotonic() + wait_s
    while True:
        rows = await pool.fetch(
            "SELECT name, position FROM projection_positions WHERE name = ANY($1::text[])",
            list(names),
        )
        positions = dict.fromkeys(names, 0) | {r["name"]: int(r["position"]) for r in rows}
        if all(p >= head for p in positions.values()) or time.monotonic() >= deadline:
            return positions
        await asyncio.sleep(min(_POLL_S, max(deadline - time.monotonic(), 0)))


async def _position(conn: Connection, name: str) -> int:
    return int(
        await conn.fetchval(
            "SELECT coalesce(max(position), 0) FROM projection_positions WHERE name = $1", name
        )
    )


async def _compare(conn: Connection, live: str, shadow: str) -> list[str]:
    out: list[str] = []
    for label, left, right in (("only in the projection", live, shadow),
                               ("only in the replay", shadow, live)):  # fmt: skip
        rows = await conn.fetch(
            f"SELECT * FROM (TABLE {left} EXCEPT ALL TABLE {right}) d LIMIT {_SAMPLE_ROWS + 1}"
        )
        for row in rows[:_SAMPLE_ROWS]:
            out.append(f"{live}: {label}: {dict(row)}")
        if len(rows) > _SAMPLE_ROWS:
            out.append(f"{live}: {label}: ... more rows")
    return out
