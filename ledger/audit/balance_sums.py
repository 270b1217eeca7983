"""Seller balances summed in SQL straight from the log: the check that shares no fold.

``check-projections`` replays every read model through the model's own fold,
and the write side, the balances projection and the auditors' replay all
take what an event does to a balance from one place, ``ledger.domain.balances``.
A wrong rule there would be wrong in every copy and compare clean. So this
check deliberately does NOT take the totals from the money module, nor any fold
(only the projection's side is shown through it, as the API shows it): it restates
CONTRACT section 4 as set sums over the stored events, in another form than
the event-by-event rule:

- ``captured`` / ``fees`` / ``refunded`` / ``paid_out``: sums of the amounts
  (and capture fees) of their event type;
- ``pending``: per order placed (the first placement of a ``(channel,
  order_id)``), nothing if it was cancelled, else its amount less what was
  captured of it (never below zero);
- ``available``: written out below as ``captured - refunded - fees -
  paid_out``, on purpose not generated from ``AVAILABLE_SIGNS``.

The totals are read from the hashed ``state`` of each row (not the
``seller_id`` column), like the auditors' replay. A row whose state is not
JSON (tampered: ``omniledger verify`` names it) makes the query fail; the
check then reports that it could not sum the log rather than a verdict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

import asyncpg

from ledger.domain import balances as money_rule
from ledger.domain.money import format_minor
from ledger.store.connection import Connection
from ledger.store.schema import EVENTS_TABLE

__all__ = ["FIELDS", "balance_sums", "differences"]

#: The figures compared, by the API's names (``GET /v1/sellers/{id}/balance``).
FIELDS: Final = (
    "pending",
    "available",
    "captured_total",
    "refunded_total",
    "fees_total",
    "paid_out_total",
)

_SUMS: Final = f"""
WITH e AS MATERIALIZED (
    SELECT notification_id AS position, type, convert_from(state, 'UTF8')::jsonb AS s
    FROM {EVENTS_TABLE}
    WHERE notification_id <= $1
      AND type IN ('order.placed', 'order.cancelled', 'payment.captured',
                   'refund.issued', 'payout.sent')
), m AS (
    SELECT s->>'seller_id' AS seller_id, coalesce(s->>'currency', 'IDR') AS currency,
           type, (s->>'amount_minor')::numeric AS amount,
           coalesce((s->>'fee_minor')::numeric, 0) AS fee,
           s->>'channel' AS channel, s->>'order_id' AS order_id, position
    FROM e WHERE s->>'seller_id' IS NOT NULL
), moved AS (
    SELECT seller_id, currency,
           coalesce(sum(amount) FILTER (WHERE type = 'payment.captured'), 0) AS captured,
           coalesce(sum(fee) FILTER (WHERE type = 'payment.captured'), 0) AS fees,
           coalesce(sum(amount) FILTER (WHERE type = 'refund.issued'), 0) AS refunded,
           coalesce(sum(amount) FILTER (WHERE type = 'payout.sent'), 0) AS paid_out
    FROM m WHERE type IN ('payment.captured', 'refund.issued', 'payout.sent')
    GROUP BY seller_id, currency
), placed AS (
    SELECT DISTINCT ON (channel, order_id) channel, order_id, seller_id, currency, amount
    FROM m WHERE type = 'order.placed' ORDER BY channel, order_id, position
), paid AS (
    SELECT channel, order_id, sum(amount) AS captured
    FROM m WHERE type = 'payment.captured' GROUP BY channel, order_id
), closed AS (
    SELECT DISTINCT channel, order_id FROM m WHERE type = 'order.cancelled'
), pending AS (
    SELECT o.seller_id, o.currency,
           sum(CASE WHEN c.order_id IS NULL
                    THEN greatest(o.amount - coalesce(p.captured, 0), 0) ELSE 0 END) AS pending
    FROM placed o
    LEFT JOIN paid p USING (channel, order_id)
    LEFT JOIN closed c USING (channel, order_id)
    GROUP BY o.seller_id, o.currency
)
SELECT seller_id, currency,
       coalesce(pending.pending, 0) AS pending,
       coalesce(captured, 0) - coalesce(refunded, 0) - coalesce(fees, 0)
           - coalesce(paid_out, 0) AS available,
       coalesce(captured, 0) AS captured_total,
       coalesce(refunded, 0) AS refunded_total,
       coalesce(fees, 0) AS fees_total,
       coalesce(paid_out, 0) AS paid_out_total
FROM moved FULL JOIN pending USING (seller_id, currency)
"""


async def balance_sums(
    conn: Connection | asyncpg.Pool, until: int
) -> dict[tuple[str, str], dict[str, int]]:
    """``{(seller_id, currency): {field: minor units}}`` of the log up to ``until``."""
    rows = await conn.fetch(_SUMS, until)
    return {(r["seller_id"], r["currency"]): {name: _int(r[name]) for name in FIELDS} for r in rows}


def _int(value: Decimal | int) -> int:
    whole = int(value)
    assert whole == value, value  # sums of whole minor units
    return whole


def differences(
    projected_rows: Iterable[Mapping[str, Any]], sums: Mapping[tuple[str, str], Mapping[str, int]]
) -> list[str]:
    """Where the balances projection's rows, as the API answers them (the money
    module's ``balance_json``), differ from ``balance_sums``; one line each."""
    projected = {
        (r["seller_id"], r["currency"]): money_rule.balance_json(
            r["seller_id"], r["currency"], money_rule.Totals.of(r), 0
        )
        for r in projected_rows
    }
    out: list[str] = []
    for seller_id, currency in sorted(set(projected) | set(sums)):
        log = sums.get((seller_id, currency), dict.fromkeys(FIELDS, 0))
        expected = {k: format_minor(log[k], currency) for k in FIELDS}
        answer = projected.get((seller_id, currency))
        if answer is None:
            answer = money_rule.balance_json(seller_id, currency, money_rule.Totals(), 0)
        got = {k: answer[k] for k in FIELDS}
        if got != expected:
            out.append(f"seller {seller_id} {currency}: projection {got}, log {expected}")
    return out
