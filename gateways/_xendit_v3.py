"""Xendit's Payments API v3 callbacks (``payment.capture``, ``.authorization``, ``.failure``,
``.expiry``): one :class:`Payment` per capture, or a status of the payment.

The mapping is documented in ``gateways.xendit``. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateways import _payload as p
from gateways._xendit_payments import SUCCEEDED, Payment, data_time, read_status
from ledger.domain.errors import ValidationError
from ledger.domain.money import parse_currency

__all__ = ["payment_v3"]


@dataclass(frozen=True, slots=True)
class _Capture:
    """One entry of a v3 payment's ``captures``."""

    capture_id: str
    amount: str
    occurred_at: str

    def order_key(self) -> tuple[datetime, str]:
        return datetime.fromisoformat(self.occurred_at), self.capture_id


def payment_v3(payload: dict[str, Any], event: str) -> list[Payment]:
    data = p.member_object(payload, "data", field="data")
    currency = parse_currency(data.get("currency"), field="data.currency")
    status = read_status(data, field="data.status")
    payment_id = p.ident(data, "payment_id", field="data.payment_id")
    order_id = p.ident(data, "reference_id", field="data.reference_id")
    updated_at = data_time(payload, data, "updated", "created")
    succeeded = event == "payment.capture" and status.upper() == SUCCEEDED
    meta = p.metadata(
        callback=event,
        channel_code=p.loose_text(data, "channel_code"),
        payment_request_id=p.loose_text(data, "payment_request_id"),
        failure_code=None if succeeded else p.loose_text(data, "failure_code"),
    )

    def payment(
        ref: str, amount: str, occurred_at: str, part_of: str | None = None, **extra: str
    ) -> Payment:
        return Payment(
            part_of=part_of,
            ref=ref,
            order_id=order_id,
            status=status,
            paid=succeeded,
            amount=amount,
            currency=currency,
            occurred_at=occurred_at,
            meta={**meta, **extra},
        )

    captures = _captures(data, currency, updated_at) if succeeded else []
    if not captures:  # a status, or a capture told without its captures list
        requested = p.amount_number(
            data.get("request_amount"), currency, field="data.request_amount"
        )
        return [payment(payment_id, requested, updated_at)]
    first, *later = sorted(captures, key=_Capture.order_key)
    return [
        payment(payment_id, first.amount, first.occurred_at, capture_id=first.capture_id),
        *(
            payment(c.capture_id, c.amount, c.occurred_at, payment_id, payment_id=payment_id)
            for c in later
        ),
    ]


def _captures(data: dict[str, Any], currency: str, updated_at: str) -> list[_Capture]:
    captures = data.get("captures")
    if captures is None:
        return []
    if not isinstance(captures, list):
        raise ValidationError("data.captures must be a list", field="data.captures")
    return [_capture(entry, currency, updated_at, index) for index, entry in enumerate(captures)]


def _capture(entry: object, currency: str, updated_at: str, index: int) -> _Capture:
    field = f"data.captures[{index}]"
    if not isinstance(entry, dict):
        raise ValidationError(f"{field} must be an object", field=field)
    if entry.get("capture_timestamp") in (None, ""):
        occurred_at = updated_at
    else:
        occurred_at = p.rfc3339(entry, "capture_timestamp", field=f"{field}.capture_timestamp")
    return _Capture(
        capture_id=p.ident(entry, "capture_id", field=f"{field}.capture_id"),
        amount=p.amount_number(
            entry.get("capture_amount"), currency, field=f"{field}.capture_amount"
        ),
        occurred_at=occurred_at,
    )
