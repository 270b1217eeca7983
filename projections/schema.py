"""Idempotent DDL: the two tables every projection shares, then each read model's own.

- ``projection_positions``: one row per read model. ``position`` is the last
  log position applied, written in the same transaction as the rows it
  accounts for (DESIGN rule 7). ``generation`` is bumped when a rebuild swaps
  tables in, which tells a running consumer to re-align its stream cursor.
- ``projection_poison``: messages that could not be decoded or applied, kept
  with the raw body and the reason; the consumer acks them and moves on.
  ``stream_seq`` is 0 for a message a rebuild read from the log.

Nothing here runs at import time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import asyncpg

from ledger.store.connection import Connection
from projections.projection import Projection

__all__ = ["POISON_DDL", "POSITIONS_DDL", "ensure_schema"]

POSITIONS_DDL: Final = """
    CREATE TABLE IF NOT EXISTS projection_positions (
        name text PRIMARY KEY,
        position bigint NOT NULL DEFAULT 0,
        generation bigint NOT NULL DEFAULT 0,
        updated_at timestamptz NOT NULL DEFAULT now(),
        last_recorded_at timestamptz
    )"""

POISON_DDL: Final = """
    CREATE TABLE IF NOT EXISTS projection_poison (
        name text NOT NULL,
        stream_seq bigint NOT NULL,
        subject text NOT NULL,
        position bigint,
        body bytea NOT NULL,
        error text NOT NULL,
        at timestamptz NOT NULL DEFAULT now()
    )"""

# a redelivered poison message is recorded once; md5 keeps the key small
_POISON_ONCE_DDL: Final = """
    CREATE UNIQUE INDEX IF NOT EXISTS projection_poison_once
        ON projection_poison (name, stream_seq, md5(body))"""

# CREATE TABLE IF NOT EXISTS is not safe against itself: two processes that
# start together can both miss the table and one fails on pg_type's unique
# index. A transaction-scoped advisory lock serialises the set-up.
_SCHEMA_LOCK: Final = "SELECT pg_advisory_xact_lock(hashtext('omniledger.projections.schema'))"


async def ensure_schema(db: asyncpg.Pool | Connection, projections: Iterable[Projection]) -> None:
    """Creates what is missing, and a position row (at 0) per live projection."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            await _ensure(conn, list(projections))
    else:
        await _ensure(db, list(projections))


async def _ensure(conn: Connection, projections: list[Projection]) -> None:
    async with conn.transaction():
        await conn.execute(_SCHEMA_LOCK)
        for statement in (POSITIONS_DDL, POISON_DDL, _POISON_ONCE_DDL):
            await conn.execute(statement)
        for projection in projections:
            for statement in projection.ddl():
                await conn.execute(statement)
            if not projection.suffix:
                await conn.execute(
                    "INSERT INTO projection_positions (name) VALUES ($1) ON CONFLICT DO NOTHING",
                    projection.name,
                )
