"""Builds ledger messages for projection tests: positions in order, a valid hash chain.

Not a test module. ``LogBuilder`` makes message dicts in the shape of
``ledger/contract/messages.py``; ``synthetic_log`` makes a large plausible history
together with the balances a correct projection must end with, computed
here by plain bookkeeping (independent of ``projections.balances.fold``).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger.contract.messages import GENESIS_HASH, chain_hash
from ledger.domain.money import format_minor

__all__ = ["Expected", "LogBuilder", "synthetic_log"]

_NS = uuid.UUID("6f1d0c2e-7f0e-4a38-9a57-1b0f3f6b2a11")


class LogBuilder:
    """Appends messages with consecutive positions from ``first_position``."""

    def __init__(self, first_position: int = 1, prev_hash: str = GENESIS_HASH) -> None:
        self.position = first_position - 1
        self.prev_hash = prev_hash
        self.messages: list[dict[str, Any]] = []
        self._versions: dict[str, int] = {}
        self._stream_ids: dict[str, str] = {}

    def add(
        self,
        type_: str,
        data: dict[str, Any],
        *,
        at: str = "2026-11-30T10:00:00+00:00",
        stream: str | None = None,
    ) -> dict[str, Any]:
        self.position += 1
        stream_key = stream or data.get("order_id") or data.get("seller_id") or type_
        version = self._versions.get(stream_key, 0) + 1
        self._versions[stream_key] = version
        recorded = datetime(2026, 11, 30, 12, tzinfo=UTC) + timedelta(seconds=self.position)
        message: dict[str, Any] = {
            "position": self.position,
            "stream_id": self._stream_id(stream_key),
            "version": version,
            "type": type_,
            "data": data,
            "occurred_at": at,
            "recorded_at": recorded.isoformat().replace("+00:00", "Z"),
        }
        message["prev_hash"] = self.prev_hash
        message["hash"] = chain_hash(self.prev_hash, message)
        self.prev_hash = message["hash"]
        self.messages.append(message)
        return message

    def _stream_id(self, key: str) -> str:
        found = self._stream_ids.get(key)
        if found is None:
            found = self._stream_ids[key] = str(uuid.uuid5(_NS, key))
        return found

    def seller(self, seller_id: str, district: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"seller_id": seller_id, "name": f"Toko {seller_id}", "channels": {}}
        if district is not None:
            data["district"] = district
        return self.add("seller.registered", data)

    def order(
        self, seller_id: str, order_id: str, amount: str, channel: str = "qris", **kw: Any
    ) -> dict[str, Any]:
        data = {
            "seller_id": seller_id,
            "order_id": order_id,
            "channel": channel,
            "amount": amount,
            "currency": kw.pop("currency", "IDR"),
        }
        return self.add("order.placed", data, **kw)

    def capture(
        self,
        seller_id: str,
        order_id: str,
        amount: str,
        fee: str = "0.00",
        channel: str = "qris",
        **kw: Any,
    ) -> dict[str, Any]:
        data = {
            "seller_id": seller_id,
            "order_id": order_id,
            "channel": channel,
            "amount": amount,
            "fee": fee,
            "currency": kw.pop("currency", "IDR"),
            "gateway": "midtrans",
            "gateway_ref": f"ref-{self.position + 1}",
        }
        return self.add("payment.captured", data, **kw)

    def refund(
        self, seller_id: str, order_id: str, amount: str, channel: str = "qris", **kw: Any
    ) -> dict[str, Any]:
        data = {
            "seller_id": seller_id,
            "order_id": order_id,
            "channel": channel,
            "amount": amount,
            "currency": kw.pop("currency", "IDR"),
            "gateway": "midtrans",
            "gateway_ref": f"rf-{self.position + 1}",
        }
        return self.add("refund.issued", data, **kw)

    def cancel(
        self, seller_id: str, order_id: str, amount: str, channel: str = "qris", **kw: Any
    ) -> dict[str, Any]:
        data = {
            "seller_id": seller_id,
            "order_id": order_id,
            "channel": channel,
            "amount": amount,
            "currency": kw.pop("currency", "IDR"),
        }
        return self.add("order.cancelled", data, **kw)

    def payout(self, seller_id: str, amount: str, **kw: Any) -> dict[str, Any]:
        data = {
            "seller_id": seller_id,
            "amount": amount,
            "currency": kw.pop("currency", "IDR"),
            "reference": f"po-{self.position + 1}",
        }
        return self.add("payout.sent", data, **kw)


@dataclass
class Expected:
    """Balances in minor units per seller (IDR), kept by plain bookkeeping."""

    pending: dict[str, int] = field(default_factory=dict)
    captured: dict[str, int] = field(default_factory=dict)
    refunded: dict[str, int] = field(default_factory=dict)
    fees: dict[str, int] = field(default_factory=dict)
    paid_out: dict[str, int] = field(default_factory=dict)

    def available(self, seller: str) -> int:
        return (
            self.captured[seller]
            - self.refunded[seller]
            - self.fees[seller]
            - self.paid_out[seller]
        )

    def balance(self, seller: str) -> dict[str, str]:
        """The money fields of ``reads.seller_balance`` for ``seller``."""
        f = lambda v: format_minor(v, "IDR")  # noqa: E731
        return {
            "pending": f(self.pending[seller]),
            "available": f(self.available(seller)),
            "captured_total": f(self.captured[seller]),
            "refunded_total": f(self.refunded[seller]),
            "fees_total": f(self.fees[seller]),
            "paid_out_total": f(self.paid_out[seller]),
        }


def synthetic_log(
    events: int,
    *,
    sellers: int = 50,
    seed: int = 7,
    prefix: str = "s",
    log: LogBuilder | None = None,
) -> tuple[LogBuilder, Expected]:
    """A plausible history of about ``events`` messages and the balances it must give.

    Sellers in a few districts; orders on all channels, spread over a week of
    local days; full and partial captures with fees, refunds, cancellations
    of unpaid orders, payouts of part of the available balance; some
    ``payment.failed`` noise the balances ignore.
    """
    rng = random.Random(seed)
    log = log or LogBuilder()
    exp = Expected()
    districts = ["Panakkukang", "Tamalate", "Rappocini", "Mariso", None]
    channels = ["qris", "shopee", "tokopedia", "whatsapp", "instagram", "website", "pos"]
    seller_ids = [f"{prefix}{i}" for i in range(sellers)]
    for s in seller_ids:
        log.seller(s, rng.choice(districts))
        for book in (exp.pending, exp.captured, exp.refunded, exp.fees, exp.paid_out):
            book[s] = 0
    # open orders: order_id -> [seller, channel, amount, captured]
    open_orders: dict[str, list[Any]] = {}
    open_ids: list[str] = []  # the same keys, for an O(1) random pick
    slot: dict[str, int] = {}  # order_id -> its index in open_ids

    def pick() -> str:
        return open_ids[rng.randrange(len(open_ids))]

    def close(oid: str) -> list[Any]:
        i, last = slot.pop(oid), open_ids.pop()
        if last != oid:
            open_ids[i] = last
            slot[last] = i
        return open_orders.pop(oid)

    paid: list[tuple[str, str, str, int, int]] = []  # seller, order, channel, captured, refunded
    base = datetime(2026, 11, 24, tzinfo=UTC)
    n = 0
    while log.position < events:
        n += 1
        at = (base + timedelta(minutes=rng.randrange(7 * 24 * 60))).isoformat()
        roll = rng.random()
        if roll < 0.38 or not open_orders:
            s, ch = rng.choice(seller_ids), rng.choice(channels)
            amount = rng.randrange(1, 5000) * 1000
            oid = f"{prefix}o{n}"
            log.order(s, oid, format_minor(amount, "IDR"), ch, at=at)
            open_orders[oid] = [s, ch, amount, 0]
            slot[oid] = len(open_ids)
            open_ids.append(oid)
            exp.pending[s] += amount
        elif roll < 0.72:
            oid = pick()
            s, ch, amount, captured = open_orders[oid]
            pay = amount - captured if rng.random() < 0.8 else (amount - captured) // 2 or 1
            fee = pay * 7 // 1000
            log.capture(s, oid, format_minor(pay, "IDR"), format_minor(fee, "IDR"), ch, at=at)
            exp.captured[s] += pay
            exp.fees[s] += fee
            exp.pending[s] -= pay
            open_orders[oid][3] += pay
            if open_orders[oid][3] == amount:
                close(oid)
                paid.append((s, oid, ch, amount, 0))
        elif roll < 0.80:
            oid = pick()
            s, ch, amount, captured = close(oid)
            log.cancel(s, oid, format_minor(amount, "IDR"), ch, at=at)
            exp.pending[s] -= amount - captured
        elif roll < 0.88 and paid:
            i = rng.randrange(len(paid))
            s, oid, ch, captured, refunded = paid[i]
            if captured > refunded:
                back = rng.randrange(1, captured - refunded + 1)
                log.refund(s, oid, format_minor(back, "IDR"), ch, at=at)
                exp.refunded[s] += back
                paid[i] = (s, oid, ch, captured, refunded + back)
        elif roll < 0.95:
            s = rng.choice(seller_ids)
            available = exp.available(s)
            if available > 0:
                out = rng.randrange(1, available + 1)
                log.payout(s, format_minor(out, "IDR"), at=at)
                exp.paid_out[s] += out
        else:
            oid = pick()
            s, ch, _, _ = open_orders[oid]
            log.add(
                "payment.failed",
                {
                    "seller_id": s,
                    "order_id": oid,
                    "channel": ch,
                    "gateway": "xendit",
                    "gateway_ref": f"f{n}",
                    "reason": "expired",
                },
                at=at,
            )
    return log, exp
