"""The asyncpg event store: schema, group-committed append, loading, the log. All SQL of the core.

The events table keeps the ``eventsourcing`` stored-event layout
(``originator_id, originator_version, topic, state, notification_id``) so the
library's own ``PostgresApplicationRecorder`` reads what we write; the extra
columns (type, times, hash chain) sit beside it.

One commit is one transaction for many commands (group commit). It starts by
locking the single ``ledger_head`` row: that lock serialises writers across
processes, so positions are handed out as ``head + 1 ...`` in commit order
and a reader never sees position N+1 before N is committed (DESIGN rule 4).
A rolled-back transaction leaves the head where it was, so positions have no
gaps either, unlike a sequence. Under that lock every check that other
processes could have raced (aggregate versions, idempotency keys, a payout
against the balance) is re-done; a unit that fails one is dropped from the
batch and handed back to be decided again.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import asyncpg
import orjson

from ledger.contract.messages import GENESIS_HASH, chain_hash, format_instant
from ledger.domain import balances
from ledger.domain.money import format_minor

__all__ = [
    "EVENTS_TABLE",
    "NOTIFY_CHANNEL",
    "AccountDelta",
    "CommitOutcome",
    "LedgerStore",
    "NewEvent",
    "StoredRow",
    "Unit",
    "event_data",
]

#: The library names an application's table ``<name lowercased>_events``: an
#: ``eventsourcing`` Application called ``OmniLedger`` reads this one.
EVENTS_TABLE: Final = "omniledger_events"
NOTIFY_CHANNEL: Final = "omniledger_events"

_MIGRATIONS: Final[list[tuple[int, str, str]]] = [
    (
        1,
        "events, head, idempotency, write-side indexes",
        f"""
        CREATE TABLE IF NOT EXISTS {EVENTS_TABLE} (
            originator_id uuid NOT NULL,
            originator_version bigint NOT NULL,
            topic text,
            state bytea,
            notification_id bigserial,
            type text NOT NULL,
            occurred_at timestamptz NOT NULL,
            recorded_at timestamptz NOT NULL,
            hash text NOT NULL,
            prev_hash text NOT NULL,
            PRIMARY KEY (originator_id, originator_version)
        );
        CREATE UNIQUE INDEX IF NOT EXISTS {EVENTS_TABLE}_notification_id_idx
            ON {EVENTS_TABLE} (notification_id ASC);
        CREATE INDEX IF NOT EXISTS {EVENTS_TABLE}_recorded_at_idx
            ON {EVENTS_TABLE} (recorded_at);
        CREATE INDEX IF NOT EXISTS {EVENTS_TABLE}_occurred_at_idx
            ON {EVENTS_TABLE} (occurred_at);
        CREATE TABLE IF NOT EXISTS ledger_head (
            id boolean PRIMARY KEY DEFAULT true CHECK (id),
            position bigint NOT NULL,
            hash text NOT NULL
        );
        INSERT INTO ledger_head (id, position, hash) VALUES (true, 0, '{GENESIS_HASH}')
            ON CONFLICT DO NOTHING;
        CREATE TABLE IF NOT EXISTS idempotency_keys (
            key text PRIMARY KEY,
            fingerprint bytea NOT NULL,
            position bigint NOT NULL,
            stream_id uuid NOT NULL,
            version bigint NOT NULL
        );
        CREATE TABLE IF NOT EXISTS seller_accounts (
            seller_id text NOT NULL,
            currency text NOT NULL,
            pending_minor bigint NOT NULL DEFAULT 0,
            captured_minor bigint NOT NULL DEFAULT 0,
            refunded_minor bigint NOT NULL DEFAULT 0,
            fees_minor bigint NOT NULL DEFAULT 0,
            paid_out_minor bigint NOT NULL DEFAULT 0,
            position bigint NOT NULL DEFAULT 0,
            PRIMARY KEY (seller_id, currency)
        );
        CREATE TABLE IF NOT EXISTS order_index (
            channel text NOT NULL,
            order_id text NOT NULL,
            seller_id text NOT NULL,
            PRIMARY KEY (channel, order_id)
        );
        CREATE INDEX IF NOT EXISTS order_index_order_id_idx ON order_index (order_id);
        CREATE TABLE IF NOT EXISTS payment_index (
            gateway text NOT NULL,
            gateway_ref text NOT NULL,
            channel text NOT NULL,
            order_id text NOT NULL,
            PRIMARY KEY (gateway, gateway_ref)
        );
        CREATE TABLE IF NOT EXISTS seller_channel_accounts (
            channel text NOT NULL,
            account text NOT NULL,
            seller_id text NOT NULL,
            PRIMARY KEY (channel, account)
        );
        CREATE TABLE IF NOT EXISTS suspense_entries (
            id uuid PRIMARY KEY,
            gateway text NOT NULL,
            reason text NOT NULL,
            event jsonb NOT NULL,
            amount_minor bigint NOT NULL,
            currency text NOT NULL,
            position bigint NOT NULL,
            recorded_at timestamptz NOT NULL,
            resolved_position bigint
        );
        CREATE TABLE IF NOT EXISTS api_keys (
            key_sha256 bytea PRIMARY KEY,
            role text NOT NULL,
            seller_id text,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        """,
    ),
    (
        2,
        "relay checkpoint",
        """
        CREATE TABLE IF NOT EXISTS relay_checkpoints (
            stream text PRIMARY KEY,
            position bigint NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        """,
    ),
    (
        3,
        "unique claims of refunds, payouts and one-payment-per-order gateways",
        f"""
        CREATE TABLE IF NOT EXISTS fact_claims (
            kind text NOT NULL,
            a text NOT NULL,
            b text NOT NULL,
            PRIMARY KEY (kind, a, b)
        );
        -- The claims of what was recorded before this table existed (the
        -- first of any duplicates recorded then keeps the claim). A row whose
        -- state is not JSON (altered behind the ledger's back: verify names
        -- it) must not stop the migration: then row by row, skipping it.
        CREATE OR REPLACE FUNCTION pg_temp.claims_of(type text, s jsonb)
            RETURNS TABLE (kind text, a text, b text) LANGUAGE sql AS $f$
            SELECT 'refund', s->>'gateway', s->>'gateway_ref' WHERE type = 'refund.issued'
            UNION ALL SELECT 'payout', '', s->>'reference' WHERE type = 'payout.sent'
            UNION ALL SELECT 'gateway_order', s->>'gateway', s->>'order_id'
                WHERE type = 'payment.captured' AND s->>'gateway' = 'midtrans'
        $f$;
        DO $$
        DECLARE r record;
        BEGIN
            INSERT INTO fact_claims (kind, a, b)
            SELECT c.* FROM {EVENTS_TABLE} e,
                pg_temp.claims_of(e.type, convert_from(e.state, 'UTF8')::jsonb) c
            WHERE e.type IN ('refund.issued', 'payout.sent', 'payment.captured')
                AND c.a IS NOT NULL AND c.b IS NOT NULL
            ORDER BY e.notification_id
            ON CONFLICT DO NOTHING;
        EXCEPTION WHEN others THEN
            FOR r IN SELECT type, state FROM {EVENTS_TABLE}
                WHERE type IN ('refund.issued', 'payout.sent', 'payment.captured')
                ORDER BY notification_id
            LOOP
                BEGIN
                    INSERT INTO fact_claims (kind, a, b)
                    SELECT c.* FROM pg_temp.claims_of(
                        r.type, convert_from(r.state, 'UTF8')::jsonb) c
                    WHERE c.a IS NOT NULL AND c.b IS NOT NULL
                    ON CONFLICT DO NOTHING;
                EXCEPTION WHEN others THEN
                    NULL;
                END;
            END LOOP;
        END $$;
        """,
    ),
    (
        4,
        "a gateway key bound to one gateway name",
        "ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS gateway text;",
    ),
    (
        5,
        "events by seller (time travel reads one seller's events, not the log)",
        # An index beside the library's layout, never part of the hash chain:
        # the state (hashed) keeps the seller, this column only finds the rows.
        # Backfilled from the state's top-level seller_id in one pass; a row
        # whose state is not JSON (altered behind the ledger's back: verify
        # names it) must not stop the migration, so then row by row.
        f"""
        ALTER TABLE {EVENTS_TABLE} ADD COLUMN IF NOT EXISTS seller_id text;
        DO $$
        BEGIN
            UPDATE {EVENTS_TABLE}
                SET seller_id = convert_from(state, 'UTF8')::jsonb ->> 'seller_id'
                WHERE seller_id IS NULL;
        EXCEPTION WHEN others THEN
            DECLARE r record;
            BEGIN
                FOR r IN SELECT notification_id, state FROM {EVENTS_TABLE} LOOP
                    BEGIN
                        UPDATE {EVENTS_TABLE}
                            SET seller_id = convert_from(r.state, 'UTF8')::jsonb ->> 'seller_id'
                            WHERE notification_id = r.notification_id;
                    EXCEPTION WHEN others THEN
                        NULL;
                    END;
                END LOOP;
            END;
        END $$;
        CREATE INDEX IF NOT EXISTS {EVENTS_TABLE}_seller_idx
            ON {EVENTS_TABLE} (seller_id, notification_id) WHERE seller_id IS NOT NULL;
        ANALYZE {EVENTS_TABLE} (seller_id);
        """,
    ),
]


_NOT_DATA: Final = frozenset({"timestamp", "originator_topic", "occurred_at"})
#: "amount_minor" -> "amount"; filled as field names are first seen (hot path of every reader)
_MINOR_FIELDS: dict[str, str | None] = {}


def event_data(state: dict[str, Any]) -> dict[str, Any]:
    """The contract's ``data`` of an event from its stored state.

    Amounts are held as ``*_minor`` integers and published as strings with
    the currency's digits; the library's bookkeeping fields are left out.
    """
    currency = state.get("currency", "IDR")
    data: dict[str, Any] = {}
    for name, value in state.items():
        if value is None or name in _NOT_DATA:
            continue
        short = _MINOR_FIELDS.get(name, "")
        if short == "":
            short = _MINOR_FIELDS[name] = name[:-6] if name.endswith("_minor") else None
        if short is not None and type(value) is int:
            data[short] = format_minor(value, currency)
        else:
            data[name] = value
    return data


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One event to append, already mapped to its stored form by the service."""

    stream_id: UUID
    version: int
    topic: str
    state: bytes
    type: str
    data: dict[str, Any]
    occurred_at: str
    #: the state's top-level seller_id (orders, sellers, payouts), stored beside
    #: the event so that one seller's history is an index range (time travel)
    seller_id: str | None = None


#: A payout's limit re-read under the head lock: ``available`` in SQL, generated
#: from the money rule (``ledger.domain.balances``), never written out here.
_AVAILABLE_UNDER_LOCK: Final = (
    f"SELECT {balances.available_sql()} FROM seller_accounts WHERE seller_id = $1 AND currency = $2"
)


@dataclass(slots=True)
class AccountDelta:
    seller_id: str
    currency: str
    pending_minor: int = 0
    captured_minor: int = 0
    refunded_minor: int = 0
    fees_minor: int = 0
    paid_out_minor: int = 0

    @property
    def available_minor(self) -> int:
        return balances.available_minor(self)

    def add(self, other: AccountDelta) -> None:
        balances.add_to(self, other)


#: A unique name a fact takes: ``("payment", gateway, gateway_ref)`` (a gateway
#: payment is credited once), ``("account", channel, account)`` (a channel
#: account belongs to one seller), and the kinds of ``FACT_CLAIMS``.
Claim = tuple[str, str, str]

#: Claims kept in ``fact_claims``: ``("refund", gateway, gateway_ref)`` (a
#: refund is returned once), ``("payout", "", reference)`` (a transfer is paid
#: once) and ``("gateway_order", gateway, order_id)`` (a gateway that allows one
#: successful payment per merchant order id, which its signature covers).
FACT_CLAIMS: Final = frozenset({"refund", "payout", "gateway_order"})


@dataclass(slots=True)
class Unit:
    """What one command wants to write, all or nothing.

    ``base_versions`` are the versions each touched stream had when the unit
    was decided (0 for a new stream); ``payout`` asks the store to re-check
    under the lock that the seller's available balance covers the amount.
    """

    events: list[NewEvent]
    base_versions: dict[UUID, int]
    idempotency_key: str | None = None
    fingerprint: bytes = b""
    accounts: list[AccountDelta] = field(default_factory=list)
    payout: tuple[str, str, int] | None = None
    order_index: list[tuple[str, str, str]] = field(default_factory=list)
    payment_index: list[tuple[str, str, str, str]] = field(default_factory=list)
    channel_accounts: list[tuple[str, str, str]] = field(default_factory=list)
    suspense: dict[str, Any] | None = None
    suspense_resolved: UUID | None = None
    #: unique names of ``FACT_CLAIMS`` kinds this unit takes
    fact_claims: list[Claim] = field(default_factory=list)
    #: streams the decision read without writing (the seller of a new order):
    #: if one of them is dropped from the batch, this unit is dropped too
    reads: set[UUID] = field(default_factory=set)

    def claims(self) -> list[Claim]:
        """What this unit takes that nobody else may: its payments' gateway
        references, its seller's channel accounts."""
        return [
            *(("payment", g, ref) for g, ref, _, _ in self.payment_index),
            *(("account", channel, account) for channel, account, _ in self.channel_accounts),
            *self.fact_claims,
        ]


def _claim_columns(claims: Iterable[Claim]) -> list[list[str]]:
    """Claims as seven text arrays: payment gateways, their references, channels,
    accounts, and the kinds, first and second names of ``FACT_CLAIMS``."""
    claims = list(claims)
    payments = [(a, b) for kind, a, b in claims if kind == "payment"]
    accounts = [(a, b) for kind, a, b in claims if kind == "account"]
    facts = [c for c in claims if c[0] in FACT_CLAIMS]
    return [[a for a, _ in payments], [b for _, b in payments],
            [a for a, _ in accounts], [b for _, b in accounts],
            [k for k, _, _ in facts], [a for _, a, _ in facts],
            [b for _, _, b in facts]]  # fmt: skip


@dataclass(frozen=True, slots=True)
class CommitOutcome:
    """Per unit: the positions of its events, or why it was dropped."""

    positions: list[list[int] | None]
    dropped: list[str | None]
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class StoredRow:
    stream_id: UUID
    version: int
    topic: str
    state: bytes


def _fingerprint_digest(fingerprint: bytes) -> bytes:
    return hashlib.sha256(fingerprint).digest()


class LedgerStore:
    """Every statement the core sends to PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    # -- schema -------------------------------------------------------------
    async def migrate(self) -> list[int]:
        """Applies the migrations not yet applied; safe to run from many processes at once."""
        applied: list[int] = []
        async with self._pool.acquire() as conn, conn.transaction():
            # One migrator at a time: a transaction-level advisory lock.
            await conn.execute("SELECT pg_advisory_xact_lock(7203011)")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version int PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, name, sql in _MIGRATIONS:
                if version in done:
                    continue
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
                applied.append(version)
        return applied

    async def missing_migrations(self) -> list[int]:
        """The migrations not applied yet, read without writing anything (for
        read-only commands and read-only roles)."""
        exists = await self._pool.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        done: set[int] = set()
        if exists:
            done = {
                r["version"]
                for r in await self._pool.fetch("SELECT version FROM schema_migrations")
            }
        return [version for version, _, _ in _MIGRATIONS if version not in done]

    # -- reads for the write path ----------------------------------------------
    async def load_streams(
        self, stream_ids: Sequence[UUID], conn: asyncpg.Connection | None = None
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

    async def stream_versions(
        self, stream_ids: Sequence[UUID], conn: asyncpg.Connection | None = None
    ) -> dict[UUID, int]:
        """The current version of each stream that exists."""
        rows = await (conn or self._pool).fetch(_RACE_CHECK, list(stream_ids), [])
        return {r["stream_id"]: r["version"] for r in rows}

    async def lookup_keys(
        self, keys: Sequence[str], conn: asyncpg.Connection | None = None
    ) -> dict[str, tuple[bytes, int, UUID, int]]:
        known, _ = await self.lookup(keys, (), conn)
        return known

    async def lookup(
        self,
        keys: Sequence[str],
        claims: Iterable[Claim],
        conn: asyncpg.Connection | None = None,
    ) -> tuple[dict[str, tuple[bytes, int, UUID, int]], set[Claim]]:
        """In one round trip: the keys already recorded (with what they recorded)
        and the claims already taken."""
        known: dict[str, tuple[bytes, int, UUID, int]] = {}
        taken: set[Claim] = set()
        claims = list(claims)
        query, args = (
            (_LOOKUP_CLAIMS, [list(keys), *_claim_columns(claims)])
            if claims
            else (_LOOKUP, [list(keys)])
        )
        for r in await (conn or self._pool).fetch(query, *args):
            if r["kind"] is None:
                known[r["key"]] = (
                    bytes(r["fingerprint"]), r["position"], r["stream_id"], r["version"]
                )  # fmt: skip
            else:
                taken.add((r["kind"], r["a"], r["b"]))
        return known, taken

    async def find_orders(self, order_id: str) -> list[tuple[str, str]]:
        """``(channel, seller_id)`` of every order with this id, on any channel."""
        rows = await self._pool.fetch(
            "SELECT channel, seller_id FROM order_index WHERE order_id = $1 LIMIT 10", order_id
        )
        return [(r["channel"], r["seller_id"]) for r in rows]

    async def find_payment(self, gateway: str, gateway_ref: str) -> tuple[str, str] | None:
        row = await self._pool.fetchrow(
            "SELECT channel, order_id FROM payment_index WHERE gateway = $1 AND gateway_ref = $2",
            gateway,
            gateway_ref,
        )
        return None if row is None else (row["channel"], row["order_id"])

    async def seller_for_channel_account(self, channel: str, account: str) -> str | None:
        return await self._pool.fetchval(
            "SELECT seller_id FROM seller_channel_accounts WHERE channel = $1 AND account = $2",
            channel,
            account,
        )

    async def account(
        self, seller_id: str, currency: str, conn: asyncpg.Connection | None = None
    ) -> dict[str, int] | None:
        row = await (conn or self._pool).fetchrow(
            "SELECT pending_minor, captured_minor, refunded_minor, fees_minor, paid_out_minor,"
            " position FROM seller_accounts WHERE seller_id = $1 AND currency = $2",
            seller_id,
            currency,
        )
        return None if row is None else {k: int(v) for k, v in row.items()}

    async def commit(
        self, units: Sequence[Unit], conn: asyncpg.Connection | None = None
    ) -> CommitOutcome:
        """Appends every unit that still holds under the head lock, in one transaction."""
        if conn is None:
            async with self._pool.acquire() as own:
                return await self.commit(units, own)
        positions: list[list[int] | None] = [None] * len(units)
        dropped: list[str | None] = [None] * len(units)
        async with conn.transaction():
            head = await conn.fetchrow("SELECT position, hash FROM ledger_head FOR UPDATE")
            assert head is not None, "schema not migrated: ledger_head is empty"
            recorded_at = datetime.now(UTC)
            await self._drop_raced_units(conn, units, dropped)

            position, prev_hash = head["position"], head["hash"]
            recorded_text = format_instant(recorded_at)
            ev_rows: list[tuple[Any, ...]] = []
            key_rows: list[tuple[Any, ...]] = []
            accounts: dict[tuple[str, str], AccountDelta] = {}
            order_rows: list[tuple[str, str, str]] = []
            payment_rows: list[tuple[str, str, str, str]] = []
            channel_rows: list[tuple[str, str, str]] = []
            suspense_rows: list[tuple[Any, ...]] = []
            resolved: list[tuple[UUID, int]] = []
            fact_claims: list[Claim] = []
            for index, unit in enumerate(units):
                if dropped[index] is not None:
                    continue
                unit_positions: list[int] = []
                for ev in unit.events:
                    position += 1
                    message = {
                        "position": position,
                        "stream_id": str(ev.stream_id),
                        "version": ev.version,
                        "type": ev.type,
                        "data": ev.data,
                        "occurred_at": ev.occurred_at,
                        "recorded_at": recorded_text,
                    }
                    new_hash = chain_hash(prev_hash, message)
                    ev_rows.append(
                        (
                            ev.stream_id,
                            ev.version,
                            ev.topic,
                            ev.state,
                            position,
                            ev.type,
                            datetime.fromisoformat(ev.occurred_at),
                            recorded_at,
                            new_hash,
                            prev_hash,
                            ev.seller_id,
                        )
                    )
                    prev_hash = new_hash
                    unit_positions.append(position)
                positions[index] = unit_positions
                if unit.idempotency_key is not None and unit.events:
                    first = unit.events[0]
                    key_rows.append(
                        (
                            unit.idempotency_key,
                            _fingerprint_digest(unit.fingerprint),
                            unit_positions[0],
                            first.stream_id,
                            first.version,
                        )
                    )
                for delta in unit.accounts:
                    accounts.setdefault(
                        (delta.seller_id, delta.currency),
                        AccountDelta(delta.seller_id, delta.currency),
                    ).add(delta)
                order_rows.extend(unit.order_index)
                payment_rows.extend(unit.payment_index)
                channel_rows.extend(unit.channel_accounts)
                fact_claims.extend(unit.fact_claims)
                if unit.suspense is not None:
                    s = unit.suspense
                    suspense_rows.append(
                        (
                            unit.events[0].stream_id,
                            s["gateway"],
                            s["reason"],
                            orjson.dumps(s["event"]).decode(),
                            s["amount_minor"],
                            s["currency"],
                            unit_positions[0],
                            recorded_at,
                        )
                    )
                if unit.suspense_resolved is not None:
                    resolved.append((unit.suspense_resolved, unit_positions[-1]))

            if not ev_rows:
                return CommitOutcome(positions, dropped, recorded_at)
            account_rows = [
                (
                    d.seller_id,
                    d.currency,
                    d.pending_minor,
                    d.captured_minor,
                    d.refunded_minor,
                    d.fees_minor,
                    d.paid_out_minor,
                )
                for d in accounts.values()
            ]
            # Everything of the common path in ONE statement (one round trip):
            # the events, their keys, the sellers' running totals, the order
            # and payment indexes, the new head, and the relay's wake-up
            # (pg_notify is delivered at commit, never for a rolled-back batch).
            ev_columns = _columns(ev_rows, 11)
            await conn.execute(
                _APPEND,
                *ev_columns[:10],
                *_columns(key_rows, 5),
                *_columns(account_rows, 7),
                *_columns(order_rows, 3),
                *_columns(payment_rows, 4),
                position,
                prev_hash,
                NOTIFY_CHANNEL,
                ev_columns[10],
                *_columns(fact_claims, 3),
            )
            if channel_rows:
                await conn.executemany(
                    "INSERT INTO seller_channel_accounts (channel, account, seller_id)"
                    " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    channel_rows,
                )
            if suspense_rows:
                await conn.executemany(
                    "INSERT INTO suspense_entries (id, gateway, reason, event, amount_minor,"
                    " currency, position, recorded_at) VALUES ($1, $2, $3, $4::jsonb, $5, $6,"
                    " $7, $8)",
                    suspense_rows,
                )
            if resolved:
                await conn.executemany(
                    "UPDATE suspense_entries SET resolved_position = $2 WHERE id = $1", resolved
                )
        return CommitOutcome(positions, dropped, recorded_at)

    async def _drop_raced_units(
        self, conn: asyncpg.Connection, units: Sequence[Unit], dropped: list[str | None]
    ) -> None:
        """Marks units another process invalidated since they were decided.

        Under the head lock nobody else writes, so what these queries see is
        exactly what this transaction appends on top of. A dropped unit
        taints the streams and accounts it touched: later units of this batch
        on the same ones were decided on its state and are dropped too.
        """
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
            (_RACE_CHECK_CLAIMS, [list(base), keys, *_claim_columns(claims)])
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

    # -- the log -------------------------------------------------------------------
    async def head(self) -> tuple[int, str]:
        row = await self._pool.fetchrow("SELECT position, hash FROM ledger_head")
        assert row is not None
        return row["position"], row["hash"]

    async def head_recorded_at(self) -> datetime | None:
        return await self._pool.fetchval(
            f"SELECT recorded_at FROM {EVENTS_TABLE} ORDER BY notification_id DESC LIMIT 1"
        )

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

    # -- API keys -------------------------------------------------------------------
    async def add_key(
        self, key_sha256: bytes, role: str, seller_id: str | None, gateway: str | None = None
    ) -> None:
        await self._pool.execute(
            "INSERT INTO api_keys (key_sha256, role, seller_id, gateway) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (key_sha256) DO UPDATE SET role = excluded.role,"
            " seller_id = excluded.seller_id, gateway = excluded.gateway",
            key_sha256,
            role,
            seller_id,
            gateway,
        )

    async def find_key(self, key_sha256: bytes) -> tuple[str, str | None, str | None] | None:
        """A key's role and what it is bound to: ``(role, seller_id, gateway)``."""
        row = await self._pool.fetchrow(
            "SELECT role, seller_id, gateway FROM api_keys WHERE key_sha256 = $1", key_sha256
        )
        return None if row is None else (row["role"], row["seller_id"], row["gateway"])

    # -- suspense -------------------------------------------------------------------
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


def _claims_taken(first: int) -> str:
    """Claims already taken, of those in parameters ``$first`` .. ``$first + 6``
    (``_claim_columns``): payments by gateway reference, channel accounts, the rest."""
    p = [f"${i}::text[]" for i in range(first, first + 7)]
    return (
        "SELECT 'payment' AS kind, gateway AS a, gateway_ref AS b FROM payment_index"
        f" WHERE (gateway, gateway_ref) IN (SELECT * FROM unnest({p[0]}, {p[1]}))"
        " UNION ALL SELECT 'account', channel, account FROM seller_channel_accounts"
        f" WHERE (channel, account) IN (SELECT * FROM unnest({p[2]}, {p[3]}))"
        " UNION ALL SELECT kind, a, b FROM fact_claims"
        f" WHERE (kind, a, b) IN (SELECT * FROM unnest({p[4]}, {p[5]}, {p[6]}))"
    )


_RACE_CHECK: Final = (
    f"SELECT NULL::text AS kind, originator_id AS stream_id, max(originator_version) AS version,"
    f" NULL::text AS a, NULL::text AS b"
    f" FROM {EVENTS_TABLE} WHERE originator_id = ANY($1::uuid[]) GROUP BY originator_id"
    " UNION ALL SELECT 'key', NULL, NULL, key, NULL FROM idempotency_keys"
    " WHERE key = ANY($2::text[])"
)
_RACE_CHECK_CLAIMS: Final = (
    f"{_RACE_CHECK} UNION ALL SELECT kind, NULL, NULL, a, b FROM ({_claims_taken(3)}) c"
)
_LOOKUP: Final = (
    "SELECT NULL::text AS kind, key, fingerprint, position, stream_id, version,"
    " NULL::text AS a, NULL::text AS b FROM idempotency_keys WHERE key = ANY($1::text[])"
)
_LOOKUP_CLAIMS: Final = (
    f"{_LOOKUP} UNION ALL SELECT kind, NULL, NULL, NULL, NULL, NULL, a, b"
    f" FROM ({_claims_taken(2)}) c"
)

_APPEND: Final = f"""
WITH events AS (
    INSERT INTO {EVENTS_TABLE} (originator_id, originator_version, topic, state,
        notification_id, type, occurred_at, recorded_at, hash, prev_hash, seller_id)
    SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bytea[], $5::bigint[],
        $6::text[], $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[],
        $33::text[])
), keys AS (
    INSERT INTO idempotency_keys (key, fingerprint, position, stream_id, version)
    SELECT * FROM unnest($11::text[], $12::bytea[], $13::bigint[], $14::uuid[], $15::bigint[])
), accounts AS (
    INSERT INTO seller_accounts AS a (seller_id, currency, pending_minor, captured_minor,
        refunded_minor, fees_minor, paid_out_minor, position)
    SELECT s, c, p, cap, r, f, po, $30 FROM unnest($16::text[], $17::text[], $18::bigint[],
        $19::bigint[], $20::bigint[], $21::bigint[], $22::bigint[]) AS t(s, c, p, cap, r, f, po)
    ON CONFLICT (seller_id, currency) DO UPDATE SET
        pending_minor = a.pending_minor + excluded.pending_minor,
        captured_minor = a.captured_minor + excluded.captured_minor,
        refunded_minor = a.refunded_minor + excluded.refunded_minor,
        fees_minor = a.fees_minor + excluded.fees_minor,
        paid_out_minor = a.paid_out_minor + excluded.paid_out_minor,
        position = excluded.position
), orders AS (
    INSERT INTO order_index (channel, order_id, seller_id)
    SELECT * FROM unnest($23::text[], $24::text[], $25::text[])
    ON CONFLICT DO NOTHING
), payments AS (
    INSERT INTO payment_index (gateway, gateway_ref, channel, order_id)
    SELECT * FROM unnest($26::text[], $27::text[], $28::text[], $29::text[])
    ON CONFLICT DO NOTHING
), claims AS (
    -- no ON CONFLICT: every claim was re-checked under the head lock, so a
    -- conflict here is a bug, and it must fail the batch, not pass silently
    INSERT INTO fact_claims (kind, a, b)
    SELECT * FROM unnest($34::text[], $35::text[], $36::text[])
)
UPDATE ledger_head SET position = $30, hash = $31
RETURNING pg_notify($32, $30::text)
"""

_READ_LOG: Final = (
    f"SELECT notification_id, originator_id, originator_version, type, state, recorded_at,"
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
    return {
        "position": row["notification_id"],
        "stream_id": str(row["originator_id"]),
        "version": row["originator_version"],
        "type": row["type"],
        "data": event_data(state),
        "occurred_at": state["occurred_at"],
        "recorded_at": format_instant(row["recorded_at"]),
        "hash": row["hash"],
        "prev_hash": row["prev_hash"],
    }


def _columns(rows: Iterable[tuple[Any, ...]], width: int) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for i in range(width):
            cols[i].append(row[i])
    return cols
