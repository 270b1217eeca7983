"""A seller's recent orders and payouts, for the seller's page (issue 14).

Per order: its seller, amount, what was captured and refunded, whether it was
cancelled, and when it was placed (``occurred_at`` of ``order.placed``); its
status is ``ledger.domain.orders.order_status`` of those, on read. Per payout:
its reference, amount and when it was recorded.

Why a read model rather than the log (``events.seller_id`` is indexed): an
order's status is a fold over all its events, and the log keeps them as the
library's pickled-JSON states in the ledger's own layout. Reading the 50
newest orders of a seller from the log means finding the seller's events,
then every later event of those orders, then folding them on each page view;
here it is one index range scan (``proj_orders_by_seller``) of 50 rows.

``fold`` is pure: given the orders a batch touches as they were before it,
it returns their new rows and the batch's payouts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, NamedTuple

from ledger.domain import balances as money_rule
from ledger.store.connection import Connection
from projections import envelope
from projections.projection import Projection

__all__ = [
    "OrderFact",
    "OrderRow",
    "OrdersChanges",
    "OrdersProjection",
    "PayoutRow",
    "fold",
    "parse",
]

OrderKey = tuple[str, str]  # channel, order_id
Kind = Literal["placed", "captured", "refunded", "cancelled"]

_KINDS: Final[dict[str, Kind]] = {
    money_rule.PLACED: "placed",
    money_rule.CAPTURED: "captured",
    money_rule.REFUNDED: "refunded",
    money_rule.CANCELLED: "cancelled",
}


class OrderFact(NamedTuple):
    """``NamedTuple``s built positionally, as the other models' facts: immutable,
    and built in a fraction of a frozen dataclass's time (one per message)."""

    position: int
    kind: Kind
    seller_id: str
    channel: str
    order_id: str
    currency: str
    amount_minor: int
    at: datetime

    @property
    def key(self) -> OrderKey:
        return (self.channel, self.order_id)


class OrderRow(NamedTuple):
    seller_id: str
    currency: str
    amount_minor: int
    placed_at: datetime
    captured_minor: int = 0
    refunded_minor: int = 0
    cancelled: bool = False


class PayoutRow(NamedTuple):
    position: int
    seller_id: str
    reference: str
    currency: str
    amount_minor: int
    recorded_at: datetime


@dataclass(slots=True)
class OrdersChanges:
    orders: dict[OrderKey, OrderRow] = field(default_factory=dict)
    payouts: list[PayoutRow] = field(default_factory=list)


def parse(message: dict[str, Any]) -> OrderFact | PayoutRow | None:
    """The fact of one decoded message; raises ``PoisonMessage`` if unusable."""
    data = message["data"]
    if message["type"] == money_rule.PAID_OUT:
        currency = envelope.currency(data)
        return PayoutRow(
            message["position"],
            envelope.text(data, "seller_id"),
            envelope.text(data, "reference"),
            currency,
            envelope.amount_minor(data, "amount", currency),
            envelope.recorded_at(message),
        )
    kind = _KINDS.get(message["type"])
    if kind is None:
        return None
    currency = envelope.currency(data)
    return OrderFact(
        message["position"],
        kind,
        envelope.text(data, "seller_id"),
        envelope.text(data, "channel"),
        envelope.text(data, "order_id"),
        currency,
        envelope.amount_minor(data, "amount", currency, absent_ok=kind == "cancelled"),
        datetime.fromisoformat(message["occurred_at"]),  # checked by envelope.check
    )


def fold(
    facts: Iterable[OrderFact | PayoutRow], before: Mapping[OrderKey, OrderRow]
) -> OrdersChanges:
    """New rows of the orders ``facts`` touch (in position order), and the payouts.

    ``before`` holds the rows, before this batch, of the orders the facts name
    that exist. A fact about an order never placed is skipped, and so is a
    second placing of one (the ledger refuses both).
    """
    changes = OrdersChanges()
    rows = changes.orders
    for f in facts:
        if isinstance(f, PayoutRow):
            changes.payouts.append(f)
            continue
        key = (f.channel, f.order_id)
        row = rows.get(key) or before.get(key)
        if f.kind == "placed":
            if row is None:
                rows[key] = OrderRow(f.seller_id, f.currency, f.amount_minor, f.at)
        elif row is None:
            continue
        elif f.kind == "captured":
            rows[key] = row._replace(captured_minor=row.captured_minor + f.amount_minor)
        elif f.kind == "refunded":
            rows[key] = row._replace(refunded_minor=row.refunded_minor + f.amount_minor)
        else:
            rows[key] = row._replace(cancelled=True)
    return changes


class OrdersProjection(Projection):
    name = "orders"
    tables = ("proj_orders", "proj_payouts")

    def __init__(self, *, suffix: str = "") -> None:
        super().__init__(suffix=suffix)
        orders, payouts = self.table("proj_orders"), self.table("proj_payouts")
        self._ddl = [
            # the unique constraint is the "newest orders of a seller" index: as a
            # constraint, a rebuild's swap renames it with the table (an index
            # would keep its __rebuild name); it holds, since (channel, order_id)
            # alone is unique
            f"""
            CREATE TABLE IF NOT EXISTS {orders} (
                channel text NOT NULL,
                order_id text NOT NULL,
                seller_id text NOT NULL,
                currency text NOT NULL,
                amount_minor bigint NOT NULL,
                captured_minor bigint NOT NULL,
                refunded_minor bigint NOT NULL,
                cancelled boolean NOT NULL,
                placed_at timestamptz NOT NULL,
                CONSTRAINT {orders}_pkey PRIMARY KEY (channel, order_id),
                CONSTRAINT {orders}_by_seller UNIQUE (seller_id, placed_at, channel, order_id)
            )""",
            f"""
            CREATE TABLE IF NOT EXISTS {payouts} (
                seller_id text NOT NULL,
                position bigint NOT NULL,
                reference text NOT NULL,
                currency text NOT NULL,
                amount_minor bigint NOT NULL,
                recorded_at timestamptz NOT NULL,
                CONSTRAINT {payouts}_pkey PRIMARY KEY (seller_id, position)
            )""",
        ]
        # LATERAL ... LIMIT 1: one primary-key lookup per order (as in balances.py)
        self._load = f"""
            SELECT o.* FROM unnest($1::text[], $2::text[]) AS k(channel, order_id)
            CROSS JOIN LATERAL (
                SELECT * FROM {orders} x
                WHERE x.channel = k.channel AND x.order_id = k.order_id LIMIT 1
            ) o"""
        self._upsert = f"""
            INSERT INTO {orders} (channel, order_id, seller_id, currency, amount_minor,
                                  captured_minor, refunded_minor, cancelled, placed_at)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                                 $6::bigint[], $7::bigint[], $8::boolean[], $9::timestamptz[])
            ON CONFLICT (channel, order_id) DO UPDATE SET
                captured_minor = EXCLUDED.captured_minor,
                refunded_minor = EXCLUDED.refunded_minor,
                cancelled = EXCLUDED.cancelled"""
        self._insert_payouts = f"""
            INSERT INTO {payouts} (seller_id, position, reference, currency, amount_minor,
                                   recorded_at)
            SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[],
                                 $5::bigint[], $6::timestamptz[])
            ON CONFLICT DO NOTHING"""

    def ddl(self) -> list[str]:
        return list(self._ddl)

    def constraint_names(self) -> dict[str, list[str]]:
        return {
            "proj_orders": ["proj_orders_pkey", "proj_orders_by_seller"],
            "proj_payouts": ["proj_payouts_pkey"],
        }

    def parse(self, message: dict[str, Any]) -> OrderFact | PayoutRow | None:
        return parse(message)

    async def apply(self, conn: Connection, facts: Sequence[OrderFact | PayoutRow]) -> None:
        keys = sorted({f.key for f in facts if isinstance(f, OrderFact)})
        before: dict[OrderKey, OrderRow] = {}
        if keys:
            for r in await conn.fetch(self._load, [k[0] for k in keys], [k[1] for k in keys]):
                before[(r["channel"], r["order_id"])] = OrderRow(
                    r["seller_id"],
                    r["currency"],
                    r["amount_minor"],
                    r["placed_at"],
                    r["captured_minor"],
                    r["refunded_minor"],
                    r["cancelled"],
                )
        changes = fold(facts, before)
        if changes.orders:
            items = sorted(changes.orders.items())
            await conn.execute(
                self._upsert,
                [k[0] for k, _ in items],
                [k[1] for k, _ in items],
                [r.seller_id for _, r in items],
                [r.currency for _, r in items],
                [r.amount_minor for _, r in items],
                [r.captured_minor for _, r in items],
                [r.refunded_minor for _, r in items],
                [r.cancelled for _, r in items],
                [r.placed_at for _, r in items],
            )
        if changes.payouts:
            p = changes.payouts
            await conn.execute(
                self._insert_payouts,
                [x.seller_id for x in p],
                [x.position for x in p],
                [x.reference for x in p],
                [x.currency for x in p],
                [x.amount_minor for x in p],
                [x.recorded_at for x in p],
            )
