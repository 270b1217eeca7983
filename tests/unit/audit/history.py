"""Builders of recorded messages for the audit tests: a chained log, by hand or generated.

Not a test module (no ``test_`` prefix); ``bench_verify.py`` uses it too.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger.contract.messages import GENESIS_HASH, chain_hash, format_instant


def message(
    kind: str,
    data: dict[str, Any],
    occurred_at: str,
    *,
    recorded_at: str | None = None,
    stream_id: str | None = None,
    version: int = 1,
) -> dict[str, Any]:
    """An unsealed message: ``position``, ``hash`` and ``prev_hash`` come from :func:`seal`."""
    return {
        "position": None,
        "stream_id": stream_id or str(uuid.uuid4()),
        "version": version,
        "type": kind,
        "data": data,
        "occurred_at": occurred_at,
        "recorded_at": recorded_at or occurred_at.replace("+00:00", "Z"),
        "hash": None,
        "prev_hash": None,
    }


def seal(
    messages: Iterable[dict[str, Any]], *, first_position: int = 1, prev_hash: str = GENESIS_HASH
) -> list[dict[str, Any]]:
    """Numbers the messages from ``first_position`` and links them into a hash chain."""
    sealed = []
    for position, original in enumerate(messages, start=first_position):
        current = dict(original, position=position, prev_hash=prev_hash)
        current["hash"] = prev_hash = chain_hash(prev_hash, current)
        sealed.append(current)
    return sealed


def generated_log(count: int, *, seed: int = 5) -> list[dict[str, Any]]:
    """``count`` plausible chained messages (orders, captures with fees, refunds, payouts)."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    out = []
    for n in range(count):
        moment = start + timedelta(seconds=37 * n)
        seller = f"seller-{rng.randrange(20)}"
        order = f"o-{n}"
        amount = f"{rng.randrange(1, 5000) * 1000}.00"
        kind, data = rng.choice(
            [
                (
                    "order.placed",
                    {
                        "seller_id": seller,
                        "order_id": order,
                        "channel": "qris",
                        "amount": amount,
                        "currency": "IDR",
                    },
                ),
                (
                    "payment.captured",
                    {
                        "seller_id": seller,
                        "order_id": order,
                        "channel": "qris",
                        "amount": amount,
                        "fee": "350.00",
                        "currency": "IDR",
                        "gateway": "midtrans",
                        "gateway_ref": str(uuid.UUID(int=n)),
                    },
                ),
                (
                    "refund.issued",
                    {
                        "seller_id": seller,
                        "order_id": order,
                        "channel": "shopee",
                        "amount": "1000.00",
                        "currency": "IDR",
                        "gateway": "xendit",
                        "gateway_ref": f"rfd-{n}",
                    },
                ),
                (
                    "payout.sent",
                    {
                        "seller_id": seller,
                        "amount": "5000.00",
                        "currency": "IDR",
                        "reference": f"po-{n}",
                    },
                ),
            ]
        )
        out.append(
            message(
                kind,
                data,
                moment.isoformat(),
                recorded_at=format_instant(moment + timedelta(milliseconds=rng.randrange(900))),
                stream_id=str(uuid.UUID(int=rng.getrandbits(128))),
                version=rng.randrange(1, 5),
            )
        )
    return seal(out)
