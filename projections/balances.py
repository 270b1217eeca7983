"""Seller balances: a pure fold over messages into row deltas, and one SQL apply.

Per seller and currency (CONTRACT section 4):

- ``pending``: the unpaid value of the seller's open orders. ``order.placed``
  adds the order amount; a capture takes off what it pays, at most what is
  still unpaid; ``order.cancelled`` takes off the remainder and closes it.
- ``captured``, ``refunded``, ``fees``, ``paid_out``: running totals, and
  ``available`` (computed on read).

What each event does to them is ``ledger.domain.balances`` (the money rule,
shared with the write side and the auditors' replay); ``check-projections``
also compares this model with sums computed in SQL straight from the log.

Pending needs each order's amount and what was captured so far, across
batches, so the projection keeps ``proj_balance_orders`` beside
``proj_balances``. ``fold`` is given the states of the orders a batch
touches and returns their new states; it does no I/O and never mutates its
input. Suspense entries are never credited to a seller (DESIGN rule 8), so
``suspense.*`` are ignored; so are ``payment.failed`` and status notes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple

from ledger.domain import balances as money_rule
from ledger.store.connection import Connection
from projections import envelope
from projections.projection import Projection

__all__ = [
    "BalanceChanges",
    "BalanceDelta",
    "BalanceFact",
    "BalancesProjection",
    "OrderKey",
    "OrderState",
    "fold",
    "order_keys",
    "parse",
]

Kind = Literal["registered", "placed", "cancelled", "captured", "refunded", "paid_out"]
#: ``(channel, order_id)``: an order's identity (CONTRACT section 1).
OrderKey = tuple[str, str]
#: ``(seller_id, currency)``: one balance row.
BalanceKey = tuple[str, str]

#: A registered seller gets a zero row in this currency so that its balance
#: reads as zeros rather than "unknown" before its first order.
REGISTRATION_CURRENCY: Final = "IDR"


class BalanceFact(NamedTuple):
    """One message's balance facts. A ``NamedTuple``: immutable like a frozen
    dataclass, and built in a fifth of the time (one is built per message)."""

    position: int
    kind: Kind
    seller_id: str
    currency: str = REGISTRATION_CURRENCY
    channel: str = ""
    order_id: str = ""
    amount_minor: int = 0
    fee_minor: int = 0

    @property
    def order_key(self) -> OrderKey:
        return (self.channel, self.order_id)


@dataclass(slots=True)
class OrderState:
    seller_id: str
    currency: str
    amount_minor: int
    captured_minor: int = 0
    open: bool = True

    @property
    def unpaid_minor(self) -> int:
        return money_rule.unpaid_minor(self.amount_minor, self.captured_minor, open=self.open)


@dataclass(slots=True)
class BalanceDelta(money_rule.Totals):
    """A change to one balance row: the money rule's totals, and the last position."""

    last_position: int = 0


@dataclass(slots=True)
class BalanceChanges:
    balances: dict[BalanceKey, BalanceDelta] = field(default_factory=dict)
    #: New state of every order the facts touched.
    orders: dict[OrderKey, OrderState] = field(default_factory=dict)


def parse(message: dict[str, Any]) -> BalanceFact | None:
    """The balance fact of one decoded message; raises ``PoisonMessage`` if unusable."""
    kind = _KINDS.get(message["type"])
    if kind is None:
        return None
    data = message["data"]
    position = message["position"]
    seller_id = envelope.text(data, "seller_id")
    if kind == "registered":
        return BalanceFact(position, kind, seller_id)
    currency = envelope.currency(data)
    amount = envelope.amount_minor(data, "amount", currency, absent_ok=kind == "cancelled")
    if kind == "paid_out":
        return BalanceFact(position, kind, seller_id, currency, amount_minor=amount)
    channel = envelope.text(data, "channel")
    order_id = envelope.text(data, "order_id")
    fee = envelope.amount_minor(data, "fee", currency, absent_ok=True) if kind == "captured" else 0
    return BalanceFact(position, kind, seller_id, currency, channel, order_id, amount, fee)


_KINDS: Final[dict[str, Kind]] = {
    "seller.registered": "registered",
    money_rule.PLACED: "placed",
    money_rule.CANCELLED: "cancelled",
    money_rule.CAPTURED: "captured",
    money_rule.REFUNDED: "refunded",
    money_rule.PAID_OUT: "paid_out",
}
#: the event type of each money kind, to ask the money rule its effect
_TYPES: Final[dict[Kind, str]] = {kind: type_ for type_, kind in _KINDS.items()}


def order_keys(facts: Iterable[BalanceFact]) -> set[OrderKey]:
    """The orders whose earlier state ``fold`` needs."""
    return {(f.channel, f.order_id) for f in facts if f.kind in _ORDER_KINDS}


#: the kinds whose fold reads or starts an order's state
_ORDER_KINDS: Final = frozenset({"placed", "cancelled", "captured"})


def fold(facts: Iterable[BalanceFact], orders: Mapping[OrderKey, OrderState]) -> BalanceChanges:
    """Folds facts (in position order) into balance deltas and new order states.

    ``orders`` holds the state before this batch of every order in
    ``order_keys(facts)`` that exists; it is not modified.
    """
    changes = BalanceChanges()
    touched = changes.orders
    balances = changes.balances

    def delta(seller_id: str, currency: str, position: int) -> BalanceDelta:
        d = balances.get((seller_id, currency))
        if d is None:
            d = balances[(seller_id, currency)] = BalanceDelta()
        if position > d.last_position:
            d.last_position = position
        return d

    def state(key: OrderKey) -> OrderState | None:
        st = touched.get(key)
        if st is None and key in orders:
            st = touched[key] = dataclasses.replace(orders[key])
        return st

    # Which total an event moves, and by how much, is the money rule's
    # (``ledger.domain.balances.effect``); this fold only decides which row and
    # which order state it applies to, and keeps the first of a doubled order.
    # (One pass per message of the log in a rebuild: the order's key is built
    # once a fact, and the kinds are tested most frequent first.)
    for f in facts:
        kind = f.kind
        if kind == "captured":
            st = state((f.channel, f.order_id))
            change = money_rule.effect(
                money_rule.CAPTURED, amount_minor=f.amount_minor, fee_minor=f.fee_minor, order=st
            )
            # the capture's own row takes the money; the order's row its pending
            # (the same row unless a log names another seller or currency)
            pending, change.pending_minor = change.pending_minor, 0
            delta(f.seller_id, f.currency, f.position).add(change)
            if st is not None and pending:
                delta(st.seller_id, st.currency, f.position).pending_minor += pending
        elif kind == "placed":
            key = (f.channel, f.order_id)
            if state(key) is not None:
                continue  # placed twice: the ledger refuses it (order_exists); keep the first
            touched[key] = OrderState(f.seller_id, f.currency, f.amount_minor)
            delta(f.seller_id, f.currency, f.position).add(
                money_rule.effect(money_rule.PLACED, amount_minor=f.amount_minor)
            )
        elif kind == "registered":
            delta(f.seller_id, f.currency, f.position)
        elif kind == "cancelled":
            st = state((f.channel, f.order_id))
            if st is not None and st.open:
                change = money_rule.effect(money_rule.CANCELLED, order=st)
                delta(st.seller_id, st.currency, f.position).add(change)
        else:
            change = money_rule.effect(_TYPES[kind], amount_minor=f.amount_minor)
            delta(f.seller_id, f.currency, f.position).add(change)
    return changes


class BalancesProjection(Projection):
    name = "balances"
    tables = ("proj_balances", "proj_balance_orders")

    def __init__(self, *, suffix: str = "") -> None:
        super().__init__(suffix=suffix)
        balances, orders = self.table("proj_balances"), self.table("proj_balance_orders")
        self._ddl = [
            f"""
            CREATE TABLE IF NOT EXISTS {balances} (
                seller_id text NOT NULL,
                currency text NOT NULL,
                pending_minor bigint NOT NULL DEFAULT 0,
                captured_minor bigint NOT NULL DEFAULT 0,
                refunded_minor bigint NOT NULL DEFAULT 0,
                fees_minor bigint NOT NULL DEFAULT 0,
                paid_out_minor bigint NOT NULL DEFAULT 0,
                last_position bigint NOT NULL,
                CONSTRAINT {balances}_pkey PRIMARY KEY (seller_id, currency)
            )""",
            f"""
            CREATE TABLE IF NOT EXISTS {orders} (
                channel text NOT NULL,
                order_id text NOT NULL,
                seller_id text NOT NULL,
                currency text NOT NULL,
                amount_minor bigint NOT NULL,
                captured_minor bigint NOT NULL,
                open boolean NOT NULL,
                CONSTRAINT {orders}_pkey PRIMARY KEY (channel, order_id)
            )""",
        ]
        # LATERAL ... LIMIT 1: one primary-key lookup per order of the batch.
        # A plain join on unnest() (or a LATERAL the planner can flatten) is
        # planned as a hash join over the whole table, whose cost grows with
        # every order ever placed.
        self._load_orders = f"""
            SELECT o.channel, o.order_id, o.seller_id, o.currency, o.amount_minor,
                   o.captured_minor, o.open
            FROM unnest($1::text[], $2::text[]) AS k(channel, order_id)
            CROSS JOIN LATERAL (
                SELECT * FROM {orders} x
                WHERE x.channel = k.channel AND x.order_id = k.order_id
                LIMIT 1
            ) o"""
        self._upsert_orders = f"""
            INSERT INTO {orders} AS o
                (channel, order_id, seller_id, currency, amount_minor, captured_minor, open)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                                 $5::bigint[], $6::bigint[], $7::boolean[])
            ON CONFLICT (channel, order_id) DO UPDATE
               SET captured_minor = EXCLUDED.captured_minor, open = EXCLUDED.open"""
        self._upsert_balances = f"""
            INSERT INTO {balances} AS b
                (seller_id, currency, pending_minor, captured_minor, refunded_minor,
                 fees_minor, paid_out_minor, last_position)
            SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[],
                                 $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[])
            ON CONFLICT (seller_id, currency) DO UPDATE SET
                pending_minor = b.pending_minor + EXCLUDED.pending_minor,
                captured_minor = b.captured_minor + EXCLUDED.captured_minor,
                refunded_minor = b.refunded_minor + EXCLUDED.refunded_minor,
                fees_minor = b.fees_minor + EXCLUDED.fees_minor,
                paid_out_minor = b.paid_out_minor + EXCLUDED.paid_out_minor,
                last_position = GREATEST(b.last_position, EXCLUDED.last_position)"""

    def ddl(self) -> list[str]:
        return list(self._ddl)

    def parse(self, message: dict[str, Any]) -> BalanceFact | None:
        return parse(message)

    async def apply(self, conn: Connection, facts: Sequence[BalanceFact]) -> None:
        keys = sorted(order_keys(facts))
        before: dict[OrderKey, OrderState] = {}
        if keys:
            rows = await conn.fetch(self._load_orders, [k[0] for k in keys], [k[1] for k in keys])
            before = {
                (r["channel"], r["order_id"]): OrderState(
                    r["seller_id"], r["currency"], r["amount_minor"], r["captured_minor"], r["open"]
                )
                for r in rows
            }
        changes = fold(facts, before)
        if changes.orders:
            items = sorted(changes.orders.items())
            await conn.execute(
                self._upsert_orders,
                [k[0] for k, _ in items],
                [k[1] for k, _ in items],
                [s.seller_id for _, s in items],
                [s.currency for _, s in items],
                [s.amount_minor for _, s in items],
                [s.captured_minor for _, s in items],
                [s.open for _, s in items],
            )
        if changes.balances:
            # sorted: two writers never lock the same rows in different orders
            rows_ = sorted(changes.balances.items())
            await conn.execute(
                self._upsert_balances,
                [k[0] for k, _ in rows_],
                [k[1] for k, _ in rows_],
                [d.pending_minor for _, d in rows_],
                [d.captured_minor for _, d in rows_],
                [d.refunded_minor for _, d in rows_],
                [d.fees_minor for _, d in rows_],
                [d.paid_out_minor for _, d in rows_],
                [d.last_position for _, d in rows_],
            )
