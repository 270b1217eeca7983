"""What is already taken or known: idempotency keys, unique claims, the write path's
indexes (orders, payments, channel accounts), a seller's running totals, and API keys.

A claim is a unique name a fact takes (a gateway payment is credited once, a
refund returned once, ...). The service asks here before deciding; the append
asks again under the head lock (``ledger.store.append``) with the same SQL
(``claims_taken``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any, Final, NamedTuple
from uuid import UUID

import asyncpg

from ledger.store.connection import Connection
from ledger.store.log import StoredRow
from ledger.store.schema import EVENTS_TABLE

__all__ = ["FACT_CLAIMS", "Claim", "Found", "Keys", "claim_columns", "claims_taken"]

#: A unique name a fact takes: ``("payment", gateway, gateway_ref)`` (a gateway
#: payment is credited once), ``("account", channel, account)`` (a channel
#: account belongs to one seller), and the kinds of ``FACT_CLAIMS``.
Claim = tuple[str, str, str]

#: Claims kept in ``fact_claims``: ``("refund", gateway, gateway_ref)`` (a
#: refund is returned once), ``("payout", "", reference)`` (a transfer is paid
#: once) and ``("gateway_order", gateway, order_id)`` (a gateway that allows one
#: successful payment per merchant order id, which its signature covers).
FACT_CLAIMS: Final = frozenset({"refund", "payout", "gateway_order"})


def claim_columns(claims: Iterable[Claim]) -> list[list[str]]:
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


def claims_taken(first: int) -> str:
    """Claims already taken, of those in parameters ``$first`` .. ``$first + 6``
    (``claim_columns``): payments by gateway reference, channel accounts, the rest."""
    p = [f"${i}::text[]" for i in range(first, first + 7)]
    return (
        "SELECT 'payment' AS kind, gateway AS a, gateway_ref AS b FROM payment_index"
        f" WHERE (gateway, gateway_ref) IN (SELECT * FROM unnest({p[0]}, {p[1]}))"
        " UNION ALL SELECT 'account', channel, account FROM seller_channel_accounts"
        f" WHERE (channel, account) IN (SELECT * FROM unnest({p[2]}, {p[3]}))"
        " UNION ALL SELECT kind, a, b FROM fact_claims"
        f" WHERE (kind, a, b) IN (SELECT * FROM unnest({p[4]}, {p[5]}, {p[6]}))"
    )


_LOOKUP: Final = (
    "SELECT NULL::text AS kind, key, fingerprint, position, stream_id, version,"
    " NULL::text AS a, NULL::text AS b, NULL::text AS topic, NULL::bytea AS state"
    " FROM idempotency_keys WHERE key = ANY($1::text[])"
)


@functools.cache
def _lookup_sql(claims: bool, streams: bool) -> str:
    """The keys, plus the claims (``$2`` .. ``$8``) and the streams' events (the
    last parameter) when asked: rows told apart by ``kind``."""
    sql = _LOOKUP
    if claims:
        sql += (
            " UNION ALL SELECT kind, NULL, NULL, NULL, NULL, NULL, a, b, NULL, NULL"
            f" FROM ({claims_taken(2)}) c"
        )
    if streams:
        sql += (
            " UNION ALL SELECT '', NULL, NULL, NULL, originator_id, originator_version,"
            f" NULL, NULL, topic, state FROM {EVENTS_TABLE}"
            f" WHERE originator_id = ANY(${9 if claims else 2}::uuid[])"
        )
    return sql


class Found(NamedTuple):
    """What :meth:`Keys.lookup` found: the keys already recorded (with what they
    recorded), the claims already taken, and the events of the streams asked
    for, by stream in version order (a stream absent has none)."""

    known: dict[str, tuple[bytes, int, UUID, int]]
    taken: set[Claim]
    streams: dict[UUID, list[StoredRow]]


class Keys:
    """The keys-and-claims part of :class:`ledger.store.LedgerStore`."""

    _pool: asyncpg.Pool

    async def lookup_keys(
        self, keys: Sequence[str], conn: Connection | None = None
    ) -> dict[str, tuple[bytes, int, UUID, int]]:
        return (await self.lookup(keys, (), conn)).known

    async def lookup(
        self,
        keys: Sequence[str],
        claims: Iterable[Claim],
        conn: Connection | None = None,
        *,
        streams: Sequence[UUID] = (),
    ) -> Found:
        """In one round trip: the keys already recorded, the claims already taken
        and, for the writer's batch, the events of ``streams``."""
        found = Found({}, set(), {})
        claims = list(claims)
        args: list[Any] = [list(keys)]
        if claims:
            args += claim_columns(claims)
        if streams:
            args.append(list(streams))
        rows = await (conn or self._pool).fetch(_lookup_sql(bool(claims), bool(streams)), *args)
        for r in rows:
            kind = r["kind"]
            if kind is None:
                found.known[r["key"]] = (
                    bytes(r["fingerprint"]), r["position"], r["stream_id"], r["version"]
                )  # fmt: skip
            elif kind == "":
                found.streams.setdefault(r["stream_id"], []).append(
                    StoredRow(r["stream_id"], r["version"], r["topic"], r["state"])
                )
            else:
                found.taken.add((kind, r["a"], r["b"]))
        for events in found.streams.values():
            events.sort(key=_version)
        return found

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
        seller_id: str | None = await self._pool.fetchval(
            "SELECT seller_id FROM seller_channel_accounts WHERE channel = $1 AND account = $2",
            channel,
            account,
        )
        return seller_id

    async def account(
        self, seller_id: str, currency: str, conn: Connection | None = None
    ) -> dict[str, int] | None:
        row = await (conn or self._pool).fetchrow(
            "SELECT pending_minor, captured_minor, refunded_minor, fees_minor, paid_out_minor,"
            " position FROM seller_accounts WHERE seller_id = $1 AND currency = $2",
            seller_id,
            currency,
        )
        return None if row is None else {k: int(v) for k, v in row.items()}

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


def _version(row: StoredRow) -> int:
    return row.version
