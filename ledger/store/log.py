"""Reading the log: pages in position order, one seller's events, one stream, the
rows as stored (for the verifier), the head, and the relay's checkpoint.

Every reader maps a stored row to the published message the same way
(``message_from_row``, with :func:`ledger.contract.messages.event_data`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import asyncpg
import orjson

from ledger.contract.messages import event_data, format_instant, hashed_message
from ledger.domain import balances
from ledger.store.connection import Connection
from ledger.store.schema import EVENTS_TABLE

__all__ = ["LogReads", "StoredRow", "message_from_row"]


@dataclass(frozen=True, slots=True)
class StoredRow:
    stream_id: UUID
    version: int
    topic: str
    state: bytes


class LogReads:
    """The log part of :class:`ledger.store.LedgerStore`."""

    _pool: asyncpg.Pool

    async def load_streams(
        self, stream_ids: Sequence[UUID], conn: Connection | None = None
    ) -> dict[UUID, list[StoredRow]]:
        rows = await (conn or self._pool).fetch(
            f"SELECT originator_id, originator_version, topic, state FROM {EVENTS_TABLE}"
            " WHERE originator_id = ANY($1::uuid[])"
            " ORDER BY originator_id, originator_version",
            list(stream_ids),
        )
        streams: dict[UUID, list[StoredRow]] = {}
        for r in rows:
            streams.setdefault(r["originator_id"], []).append(
                StoredRow(r["originator_id"], r["originator_version"], r["topic"], r["state"])
            )
        return streams

    # -- the log -------------------------------------------------------------------
    async def head(self) -> tuple[int, str]:
        row = await self._pool.fetchrow("SELECT position, hash FROM ledger_head")
        assert row is not None
        return row["position"], row["hash"]

    async def head_recorded_at(self) -> datetime | None:
        found: datetime | None = await self._pool.fetchval(
            f"SELECT recorded_at FROM {EVENTS_TABLE} ORDER BY notification_id DESC LIMIT 1"
        )
        return found

    async def read_log(
        self, after: int, limit: int, *, recorded_until: datetime | None = None
    ) -> list[dict[str, Any]]:
        if recorded_until is None:
            rows = await self._pool.fetch(_READ_LOG, after, limit)
        else:
            rows = await self._pool.fetch(_READ_LOG_KNOWN, after, limit, recorded_until)
        return [message_from_row(r) for r in rows]

    async def read_seller_log(
        self,
        seller_id: str,
        after: int,
        limit: int,
        *,
        types: Sequence[str],
        recorded_until: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """One seller's events of ``types`` after position ``after``, in log order.

        An index range (``seller_id, notification_id``): the cost is the
        seller's own events, whatever the length of the log.
        """
        rows = await self._pool.fetch(
            _READ_SELLER_LOG, seller_id, after, limit, list(types), recorded_until
        )
        return [message_from_row(r) for r in rows]

    async def money_events_between(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Captures and refunds that happened in ``[start, end)``, in log order."""
        rows = await self._pool.fetch(
            f"SELECT notification_id, originator_id, originator_version, type, state, recorded_at,"
            f" hash, prev_hash FROM {EVENTS_TABLE}"
            " WHERE occurred_at >= $1 AND occurred_at < $2"
            " AND type = ANY($3::text[]) ORDER BY notification_id",
            start,
            end,
            sorted(balances.GATEWAY_MONEY_TYPES),
        )
        return [message_from_row(r) for r in rows]

    async def read_stored_rows(self, after: int, limit: int, *, until: int) -> list[asyncpg.Record]:
        """Positions ``(after, until]`` as stored, for the verifier to re-hash.

        Each record is, by index: position, stream_id (text), version, type,
        library topic, state (bytes), occurred_at column, recorded_at, hash,
        prev_hash (see ``_READ_STORED``). Nothing is decoded here: reading a
        tampered row must not fail, it must be named.
        """
        return await self._pool.fetch(_READ_STORED, after, limit, until)

    async def iter_log(
        self, after: int = 0, until: int | None = None, page_size: int = 5000
    ) -> AsyncIterator[dict[str, Any]]:
        """Streams the log in position order, a page at a time (constant memory)."""
        while True:
            rows = await self._pool.fetch(_READ_LOG, after, page_size)
            for r in rows:
                if until is not None and r["notification_id"] > until:
                    return
                yield message_from_row(r)
            if len(rows) < page_size:
                return
            after = rows[-1]["notification_id"]

    async def stream_history(self, stream_id: UUID) -> list[dict[str, Any]]:
        return [message for message, _ in await self.stream_rows(stream_id)]

    async def stream_rows(self, stream_id: UUID) -> list[tuple[dict[str, Any], StoredRow]]:
        """One stream's events, each as the published message and as the library's row."""
        rows = await self._pool.fetch(
            f"SELECT notification_id, originator_id, originator_version, type, topic, state,"
            f" recorded_at, hash, prev_hash FROM {EVENTS_TABLE} WHERE originator_id = $1"
            " ORDER BY originator_version",
            stream_id,
        )
        return [
            (
                message_from_row(r),
                StoredRow(r["originator_id"], r["originator_version"], r["topic"], r["state"]),
            )
            for r in rows
        ]

    async def stream_exists(self, stream_id: UUID) -> bool:
        return bool(
            await self._pool.fetchval(
                f"SELECT 1 FROM {EVENTS_TABLE} WHERE originator_id = $1 LIMIT 1", stream_id
            )
        )

    # -- relay ----------------------------------------------------------------------
    async def relay_checkpoint(self, stream: str) -> int:
        value = await self._pool.fetchval(
            "SELECT position FROM relay_checkpoints WHERE stream = $1", stream
        )
        return int(value or 0)

    async def set_relay_checkpoint(self, stream: str, position: int) -> None:
        await self._pool.execute(
            "INSERT INTO relay_checkpoints (stream, position) VALUES ($1, $2)"
            " ON CONFLICT (stream) DO UPDATE SET position = excluded.position, updated_at = now()",
            stream,
            position,
        )


#: the stream id as text: the message's form, without a UUID object a row
_READ_LOG: Final = (
    f"SELECT notification_id, originator_id::text AS originator_id, originator_version, type,"
    f" state, recorded_at,"
    f" hash, prev_hash FROM {EVENTS_TABLE} WHERE notification_id > $1"
    " ORDER BY notification_id LIMIT $2"
)


_READ_LOG_KNOWN: Final = (
    f"SELECT notification_id, originator_id, originator_version, type, state, recorded_at,"
    f" hash, prev_hash FROM {EVENTS_TABLE} WHERE notification_id > $1 AND recorded_at <= $3"
    " ORDER BY notification_id LIMIT $2"
)
_READ_SELLER_LOG: Final = (
    f"SELECT notification_id, originator_id, originator_version, type, state, recorded_at,"
    f" hash, prev_hash FROM {EVENTS_TABLE} WHERE seller_id = $1 AND notification_id > $2"
    " AND type = ANY($4::text[]) AND ($5::timestamptz IS NULL OR recorded_at <= $5)"
    " ORDER BY notification_id LIMIT $3"
)
_READ_STORED: Final = (
    f"SELECT notification_id, originator_id::text AS originator_id, originator_version, type,"
    f" topic, state, occurred_at, recorded_at, hash, prev_hash FROM {EVENTS_TABLE}"
    " WHERE notification_id > $1 AND notification_id <= $3 ORDER BY notification_id LIMIT $2"
)


def _state_of(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    try:
        state = orjson.loads(row["state"])
        if not isinstance(state, dict) or not isinstance(state.get("occurred_at"), str):
            raise TypeError("state is not an event object")
    except (orjson.JSONDecodeError, TypeError):
        # Altered bytes: keep going so that the chain check names this position.
        state = {"occurred_at": "", "_undecodable_state": bytes(row["state"] or b"")[:64].hex()}
    return state


def message_from_row(
    row: asyncpg.Record | dict[str, Any], state: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The contract's event object, rebuilt from the stored row alone."""
    if state is None:
        state = _state_of(row)
    message = hashed_message(
        row["notification_id"],
        str(row["originator_id"]),
        row["originator_version"],
        row["type"],
        event_data(state),
        state["occurred_at"],
        format_instant(row["recorded_at"]),
    )
    message["hash"] = row["hash"]
    message["prev_hash"] = row["prev_hash"]
    return message
