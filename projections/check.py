"""Drift check: every read model against a replay of the log (``omniledger check-projections``).

Each model is folded again from PostgreSQL into its shadow tables (the ones a
rebuild uses, under the same lock) up to the live model's position, then the
live row lock is taken, the few events the consumer applied meanwhile are
folded too, and the two sets of tables are compared row for row with
``EXCEPT ALL`` both ways. Nothing is swapped; the shadow tables are dropped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from projections import catalog, schema
from projections.projection import REBUILD_SUFFIX
from projections.rebuild import RebuildBusy, _drop_tables, _fold_all

__all__ = ["Drift", "check_projection"]

LogReader = Callable[[int, int], AsyncIterator[dict[str, Any]]]
_SAMPLE_ROWS = 5


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
            await _fold_all(conn, shadow, read_log(0, start), None, 5000, True)
            async with conn.transaction():
                # Hold off the live consumer while the last events are folded and compared.
                position = await conn.fetchval(
                    "SELECT position FROM projection_positions WHERE name = $1 FOR UPDATE", name
                )
                await _fold_all(conn, shadow, read_log(start, position), None, 5000, True)
                drift = Drift(name, position)
                for base in live.tables:
                    drift.differences.extend(
                        await _compare(conn, live.table(base), shadow.table(base))
                    )
            await _drop_tables(conn, shadow)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", lock_key)
    return drift


async def _position(conn: asyncpg.Connection, name: str) -> int:
    return int(
        await conn.fetchval(
            "SELECT coalesce(max(position), 0) FROM projection_positions WHERE name = $1", name
        )
    )


async def _compare(conn: asyncpg.Connection, live: str, shadow: str) -> list[str]:
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
