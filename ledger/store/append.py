"""The group-committed append: many commands' events in one transaction. All of
the write path's SQL under the head lock.

One commit is one transaction for many commands (group commit). It starts by
locking the single ``ledger_head`` row: that lock serialises writers across
processes, so positions are handed out as ``head + 1 ...`` in commit order
and a reader never sees position N+1 before N is committed (DESIGN rule 4).
A rolled-back transaction leaves the head where it was, so positions have no
gaps either, unlike a sequence. Under that lock every check that other
processes could have raced (aggregate versions, idempotency keys, a payout
against the balance) is re-done; a unit that fails one is dropped from the
batch and handed back to be decided again.

While the head is where this store's own last commit left it, the whole of
that (lock, checks, write) runs as one statement, its own transaction
(``append_sql.APPEND_AT_HEAD``); a head moved by another process, or any
check that finds something, makes that statement write nothing, and the
batch is committed the long way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import asyncpg
import orjson

from ledger.contract.messages import format_instant, hash_fields, hashed_message
from ledger.domain import balances
from ledger.store.append_sql import APPEND, APPEND_AT_HEAD
from ledger.store.connection import Connection
from ledger.store.keys import Claim, claim_columns, claims_taken
from ledger.store.schema import EVENTS_TABLE, NOTIFY_CHANNEL
from ledger.store.suspense import write_suspense
from ledger.store.units import AccountDelta, CommitOutcome, NewEvent, Unit

__all__ = ["Append"]


def _fingerprint_digest(fingerprint: bytes) -> bytes:
    return hashlib.sha256(fingerprint).digest()


class Append:
    """The append part of :class:`ledger.store.LedgerStore`."""

    _pool: asyncpg.Pool

    async def stream_versions(
        self, stream_ids: Sequence[UUID], conn: Connection | None = None
    ) -> dict[UUID, int]:
        """The current version of each stream that exists."""
        rows = await (conn or self._pool).fetch(_RACE_CHECK, list(stream_ids), [])
        return {r["stream_id"]: r["version"] for r in rows}

    #: (position, hash) of the head as this store's last commit left it: a
    #: batch laid out on it may be written in one statement (``APPEND_AT_HEAD``)
    _at_head: tuple[int, str] | None = None

    async def commit(self, units: Sequence[Unit], conn: Connection | None = None) -> CommitOutcome:
        """Appends every unit that still holds under the head lock, in one transaction.

        The steps: lock the head; drop the units another process raced
        (:meth:`_drop_raced_units`); lay the others out on top of the head,
        positions counted on and hashes chained (:class:`_Batch`); write them
        in one round trip (:func:`_write`). The common case takes a shortcut
        (:meth:`_commit_at_head`) that does the same in one statement.
        """
        if conn is None:
            async with self._pool.acquire() as own:
                return await self.commit(units, own)
        if self._at_head is not None and all(_in_one_statement(u) for u in units):
            outcome = await self._commit_at_head(units, conn, *self._at_head)
            if outcome is not None:
                return outcome
        positions: list[list[int] | None] = [None] * len(units)
        dropped: list[str | None] = [None] * len(units)
        self._at_head = None
        async with conn.transaction():
            head = await conn.fetchrow("SELECT position, hash FROM ledger_head FOR UPDATE")
            assert head is not None, "schema not migrated: ledger_head is empty"
            recorded_at = datetime.now(UTC)
            await self._drop_raced_units(conn, units, dropped)
            batch = _Batch(head["position"], head["hash"], recorded_at)
            for index, unit in enumerate(units):
                if dropped[index] is None:
                    positions[index] = batch.add(unit)
            if batch.events:
                await _write(conn, batch)
        self._at_head = (batch.position, batch.prev_hash)
        return CommitOutcome(positions, dropped, recorded_at)

    async def _commit_at_head(
        self, units: Sequence[Unit], conn: Connection, position: int, prev_hash: str
    ) -> CommitOutcome | None:
        """All the units laid out on the head this store last left, written in
        one statement that is its own transaction (``APPEND_AT_HEAD``), or
        None if the head has moved or a race check finds something: then
        nothing was written, and the caller commits the long way.

        Its ``recorded_at`` is taken before the lock, not under it; it still
        grows with the positions, as every event below this batch's was
        committed before this store's last commit returned.
        """
        self._at_head = None  # known again only once this statement is answered
        recorded_at = datetime.now(UTC)
        batch = _Batch(position, prev_hash, recorded_at)
        positions: list[list[int] | None] = [batch.add(unit) for unit in units]
        base: dict[UUID, int] = {}
        for unit in units:
            for stream_id, version in unit.base_versions.items():
                base.setdefault(stream_id, version)
        claims = {c for u in units for c in u.claims()}
        args = [*_append_args(batch), position, list(base), list(base.values())]
        row = await conn.fetchrow(APPEND_AT_HEAD, *args, *claim_columns(claims))
        if row is None:
            return None
        self._at_head = (batch.position, batch.prev_hash)
        return CommitOutcome(positions, [None] * len(units), recorded_at)

    async def _drop_raced_units(
        self, conn: Connection, units: Sequence[Unit], dropped: list[str | None]
    ) -> None:
        """Marks units another process invalidated since they were decided.

        Under the head lock nobody else writes, so what these queries see is
        exactly what this transaction appends on top of. A dropped unit
        taints the streams and accounts it touched: later units of this batch
        on the same ones were decided on its state and are dropped too.
        """
        stale, taken, claimed = await _raced(conn, units)
        payouts = {(u.payout[0], u.payout[1]) for u in units if u.payout is not None}
        available: dict[tuple[str, str], int] = {}
        for seller_id, currency in payouts:
            row = await conn.fetchrow(
                _AVAILABLE_UNDER_LOCK,
                seller_id,
                currency,
            )
            available[(seller_id, currency)] = int(row[0]) if row else 0

        tainted_streams: set[UUID] = set(stale)
        tainted_accounts: set[tuple[str, str]] = set()
        for index, unit in enumerate(units):
            unit_accounts = {(d.seller_id, d.currency) for d in unit.accounts}
            reason = None
            if tainted_streams.intersection(unit.base_versions) or tainted_streams & unit.reads:
                reason = "conflict"
            elif claimed.intersection(unit.claims()):
                reason = "conflict"  # decided again, it is refused: another replica took it
            elif unit_accounts & tainted_accounts:
                reason = "conflict"
            elif unit.idempotency_key is not None and unit.idempotency_key in taken:
                reason = "duplicate"
            elif unit.payout is not None:
                seller_id, currency, amount = unit.payout
                if available[(seller_id, currency)] < amount:
                    reason = "balance_changed"
            if reason is None:
                for d in unit.accounts:
                    if (d.seller_id, d.currency) in available:
                        available[(d.seller_id, d.currency)] += d.available_minor
                continue
            dropped[index] = reason
            tainted_streams.update(unit.base_versions)
            tainted_accounts.update(unit_accounts)


async def _raced(conn: Connection, units: Sequence[Unit]) -> tuple[set[UUID], set[str], set[Claim]]:
    """What other processes changed since the units were decided: the streams
    no longer at their base version (stale), and the idempotency keys and
    claims now taken."""
    base: dict[UUID, int] = {}
    for unit in units:
        for stream_id, version in unit.base_versions.items():
            base.setdefault(stream_id, version)
    keys = [u.idempotency_key for u in units if u.idempotency_key is not None]
    claims = {c for u in units for c in u.claims()}
    # The checks in one round trip: stream versions, keys and claims now taken.
    current: dict[UUID, int] = {}
    taken: set[str] = set()
    claimed: set[Claim] = set()
    # (the claims' part of the query only when there are claims: every
    # statement of the writer is planned for its values, and this one runs
    # under the head lock)
    query, args = (
        (_RACE_CHECK_CLAIMS, [list(base), keys, *claim_columns(claims)])
        if claims
        else (_RACE_CHECK, [list(base), keys])
    )
    for r in await conn.fetch(query, *args):
        if r["kind"] == "key":
            taken.add(r["a"])
        elif r["kind"] is not None:
            claimed.add((r["kind"], r["a"], r["b"]))
        else:
            current[r["stream_id"]] = r["version"]
    stale = {s for s, v in base.items() if current.get(s, 0) != v}
    return stale, taken, claimed


class _Batch:
    """The rows of one commit, laid out on top of the locked head: positions
    counted on from it, each event's hash chained to the one before."""

    def __init__(self, position: int, prev_hash: str, recorded_at: datetime) -> None:
        #: the head the batch is laid out on, then the batch's last position
        self.head = self.position = position
        self.prev_hash = prev_hash
        self.recorded_at = recorded_at
        self.recorded_text = format_instant(recorded_at)
        self.events: list[tuple[Any, ...]] = []
        self.keys: list[tuple[Any, ...]] = []
        self.accounts: dict[tuple[str, str], AccountDelta] = {}
        self.orders: list[tuple[str, str, str]] = []
        self.payments: list[tuple[str, str, str, str]] = []
        self.channels: list[tuple[str, str, str]] = []
        self.suspense: list[tuple[Any, ...]] = []
        self.resolved: list[tuple[UUID, int]] = []
        self.fact_claims: list[Claim] = []

    def add(self, unit: Unit) -> list[int]:
        """Lays out one unit that holds; returns the positions of its events."""
        unit_positions = [self._add_event(ev) for ev in unit.events]
        if unit.idempotency_key is not None and unit.events:
            first = unit.events[0]
            self.keys.append(
                (
                    unit.idempotency_key,
                    _fingerprint_digest(unit.fingerprint),
                    unit_positions[0],
                    first.stream_id,
                    first.version,
                )
            )
        for delta in unit.accounts:
            self.accounts.setdefault(
                (delta.seller_id, delta.currency),
                AccountDelta(delta.seller_id, delta.currency),
            ).add(delta)
        self.orders.extend(unit.order_index)
        self.payments.extend(unit.payment_index)
        self.channels.extend(unit.channel_accounts)
        self.fact_claims.extend(unit.fact_claims)
        if unit.suspense is not None:
            s = unit.suspense
            self.suspense.append(
                (
                    unit.events[0].stream_id,
                    s["gateway"],
                    s["reason"],
                    orjson.dumps(s["event"]).decode(),
                    s["amount_minor"],
                    s["currency"],
                    unit_positions[0],
                    self.recorded_at,
                )
            )
        if unit.suspense_resolved is not None:
            self.resolved.append((unit.suspense_resolved, unit_positions[-1]))
        return unit_positions

    def _add_event(self, ev: NewEvent) -> int:
        """The next position, and the event's row hashed onto the chain."""
        self.position += 1
        new_hash = hash_fields(
            self.prev_hash,
            hashed_message(
                self.position,
                str(ev.stream_id),
                ev.version,
                ev.type,
                ev.data,
                ev.occurred_at,
                self.recorded_text,
            ),
        )
        # (the position and recorded_at are the statement's: the head it was
        # laid out on plus the row's number, and one instant for the batch)
        self.events.append(
            (
                ev.stream_id,
                ev.version,
                ev.topic,
                ev.state,
                ev.type,
                datetime.fromisoformat(ev.occurred_at),
                new_hash,
                self.prev_hash,
                ev.seller_id,
            )
        )
        self.prev_hash = new_hash
        return self.position

    def account_rows(self) -> list[tuple[str, str, int, int, int, int, int]]:
        return [
            (
                d.seller_id,
                d.currency,
                d.pending_minor,
                d.captured_minor,
                d.refunded_minor,
                d.fees_minor,
                d.paid_out_minor,
            )
            for d in self.accounts.values()
        ]


async def _write(conn: Connection, batch: _Batch) -> None:
    """Writes a laid-out batch under the head lock taken by ``commit``."""
    await conn.execute(APPEND, *_append_args(batch))
    if batch.channels:
        await conn.executemany(
            "INSERT INTO seller_channel_accounts (channel, account, seller_id)"
            " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            batch.channels,
        )
    await write_suspense(conn, batch.suspense, batch.resolved)


#: A payout's limit re-read under the head lock: ``available`` in SQL, generated
#: from the money rule (``ledger.domain.balances``), never written out here.
_AVAILABLE_UNDER_LOCK: Final = (
    f"SELECT {balances.available_sql()} FROM seller_accounts WHERE seller_id = $1 AND currency = $2"
)

_RACE_CHECK: Final = (
    f"SELECT NULL::text AS kind, originator_id AS stream_id, max(originator_version) AS version,"
    f" NULL::text AS a, NULL::text AS b"
    f" FROM {EVENTS_TABLE} WHERE originator_id = ANY($1::uuid[]) GROUP BY originator_id"
    " UNION ALL SELECT 'key', NULL, NULL, key, NULL FROM idempotency_keys"
    " WHERE key = ANY($2::text[])"
)
_RACE_CHECK_CLAIMS: Final = (
    f"{_RACE_CHECK} UNION ALL SELECT kind, NULL, NULL, a, b FROM ({claims_taken(3)}) c"
)


def _in_one_statement(unit: Unit) -> bool:
    """Whether ``APPEND_AT_HEAD`` can write this unit: not a payout (its balance
    is re-read under the lock), a seller's channel accounts or suspense (their
    own statements)."""
    return (
        unit.payout is None
        and not unit.channel_accounts
        and unit.suspense is None
        and unit.suspense_resolved is None
    )


def _append_args(batch: _Batch) -> list[Any]:
    """``APPEND``'s 36 parameters: the batch's rows as columns."""
    ev_columns = _columns(batch.events, 9)
    return [
        *ev_columns[:4],
        batch.head,
        *ev_columns[4:6],
        batch.recorded_at,
        *ev_columns[6:8],
        *_columns(batch.keys, 5),
        *_columns(batch.account_rows(), 7),
        *_columns(batch.orders, 3),
        *_columns(batch.payments, 4),
        batch.position,
        batch.prev_hash,
        NOTIFY_CHANNEL,
        ev_columns[8],
        *_columns(batch.fact_claims, 3),
    ]


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as ``width`` columns (transposed in C: one Python step per column)."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width
