"""The suspense list: gateway facts that could not be applied, until resolved.

Entries are written in the append's transaction (``write_suspense``, beside the
``suspense.recorded`` / ``suspense.resolved`` events) and read by the
operators' endpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg

from ledger.store.connection import Connection

__all__ = ["Suspense", "write_suspense"]


class Suspense:
    """The suspense part of :class:`ledger.store.LedgerStore`."""

    _pool: asyncpg.Pool

    async def open_suspense(self, limit: int = 1000, after: int = 0) -> list[dict[str, Any]]:
        """Open entries in log order, a page of ``limit`` after position ``after``."""
        rows = await self._pool.fetch(
            "SELECT id, gateway, reason, event, amount_minor, currency, position, recorded_at"
            " FROM suspense_entries WHERE resolved_position IS NULL AND position > $2"
            " ORDER BY position LIMIT $1",
            limit,
            after,
        )
        return [dict(r) for r in rows]

    async def suspense_entry(self, entry_id: UUID) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(
            "SELECT id, gateway, reason, event, amount_minor, currency, position, recorded_at,"
            " resolved_position FROM suspense_entries WHERE id = $1",
            entry_id,
        )
        return None if row is None else dict(row)


async def write_suspense(
    conn: Connection,
    entries: Sequence[tuple[Any, ...]],
    resolved: Sequence[tuple[UUID, int]],
) -> None:
    """In the append's transaction: new entries ``(id, gateway, reason, event
    JSON, amount_minor, currency, position, recorded_at)`` and the positions
    that resolved entries ``(id, position)``."""
    if entries:
        await conn.executemany(
            "INSERT INTO suspense_entries (id, gateway, reason, event, amount_minor,"
            " currency, position, recorded_at) VALUES ($1, $2, $3, $4::jsonb, $5, $6,"
            " $7, $8)",
            entries,
        )
    if resolved:
        await conn.executemany(
            "UPDATE suspense_entries SET resolved_position = $2 WHERE id = $1", resolved
        )
