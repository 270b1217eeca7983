"""Xendit's refund callbacks (``refund.succeeded``, ``refund.failed``), matched through the payment.

The mapping is documented in ``gateways.xendit``. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateways import _payload as p
from gateways._xendit_payments import GATEWAY
from ledger.domain.errors import ValidationError
from ledger.domain.money import parse_currency

__all__ = ["Refund", "refund"]


@dataclass(frozen=True, slots=True)
class Refund:
    ref: str  # rfd- id
    payment_ref: str
    succeeded: bool
    event_name: str
    amount: str
    currency: str
    occurred_at: str
    meta: dict[str, Any]

    def event(self) -> dict[str, Any]:
        if self.succeeded:
            return {
                "idempotency_key": p.idempotency_key(GATEWAY, "refund", self.ref),
                "type": "refund.issued",
                "occurred_at": self.occurred_at,
                "payment_ref": self.payment_ref,
                "amount": self.amount,
                "currency": self.currency,
                "gateway": GATEWAY,
                "gateway_ref": self.ref,
                "metadata": self.meta,
            }
        return {
            "idempotency_key": p.idempotency_key(GATEWAY, "status", self.ref, self.event_name),
            "type": "order.status_noted",
            "occurred_at": self.occurred_at,
            "payment_ref": self.payment_ref,
            "source": GATEWAY,
            "status": self.event_name,
            "gateway_ref": self.ref,
            "metadata": {**self.meta, "amount": self.amount, "currency": self.currency},
        }


def refund(payload: dict[str, Any], event: str) -> Refund:
    data = p.member_object(payload, "data", field="data")
    currency = parse_currency(data.get("currency"), field="data.currency")
    payment_ref = None
    for name in ("invoice_id", "payment_id", "payment_request_id"):
        if data.get(name) not in (None, ""):
            payment_ref = p.ident(data, name, field=f"data.{name}")
            break
    if payment_ref is None:
        raise ValidationError(
            "a refund needs data.payment_id (or invoice_id) to find its payment",
            field="data.payment_id",
        )
    status = data.get("status")
    succeeded = event == "refund.succeeded" and status in (None, "SUCCEEDED")
    time_field = "updated" if data.get("updated") not in (None, "") else "created"
    if data.get(time_field) not in (None, ""):
        occurred_at = p.rfc3339(data, time_field, field=f"data.{time_field}")
    else:
        occurred_at = p.rfc3339(payload, "created", field="created")
    return Refund(
        ref=p.ident(data, "id", field="data.id"),
        payment_ref=payment_ref,
        succeeded=succeeded,
        event_name=event,
        amount=p.amount_number(data.get("amount"), currency, field="data.amount"),
        currency=currency,
        occurred_at=occurred_at,
        meta=p.metadata(
            reason=p.loose_text(data, "reason"),
            channel_code=p.loose_text(data, "channel_code"),
            payment_method_type=p.loose_text(data, "payment_method_type"),
            failure_code=None if succeeded else p.loose_text(data, "failure_code"),
            refund_status=None if succeeded else p.loose_text(data, "status"),
        ),
    )
