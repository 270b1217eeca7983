"""Xendit's money-in callbacks: QR, invoice, e-wallet (both shapes), and flat ones not mapped.

The mapping is documented in ``gateways.xendit`` (the adapter's public
surface); this module reads each family into a :class:`Payment` (or an
:class:`UnplacedPayment`), which builds the canonical event. ``Payment`` and
the small readers (``read_status``, ``data_time``) are shared
with the Payments API v3 callbacks (``gateways._xendit_v3``). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Final

from gateways import _payload as p
from ledger.domain.errors import ValidationError
from ledger.domain.money import parse_currency

__all__ = [
    "GATEWAY",
    "SUCCEEDED",
    "Payment",
    "UnplacedPayment",
    "data_time",
    "ewallet_capture",
    "invoice",
    "legacy_ewallet",
    "qr_payment",
    "qr_payment_v1",
    "read_status",
    "unplaced_payment",
]

#: The name every Xendit fact carries (``gateway``) and its keys start with.
GATEWAY: Final = "xendit"

_PAID_QR: Final = frozenset({"SUCCEEDED", "COMPLETED"})
_PAID_INVOICE: Final = frozenset({"PAID", "SETTLED"})
_PAID_LEGACY_EWALLET: Final = frozenset({"PAID"})
SUCCEEDED: Final = "SUCCEEDED"
#: Where a flat callback Xendit's documentation does not cover says when it happened.
_FLAT_TIME_FIELDS: Final = (
    "transaction_timestamp",
    "transaction_date",
    "paid_at",
    "updated",
    "created",
)


@dataclass(frozen=True, slots=True)
class Payment:
    """An order's money in (QR, invoice, e-wallet, v3 capture), or a status of it."""

    ref: str  # qrpy_, invoice, ewc_, py-/cap- id, or the legacy e-wallet's reference
    order_id: str
    status: str
    paid: bool
    amount: str
    currency: str
    occurred_at: str
    meta: dict[str, Any]
    #: the v3 payment a later capture is part of: a refund names the payment,
    #: and may return what all its captures took
    part_of: str | None = None

    def event(self) -> dict[str, Any]:
        if self.paid:
            captured = {
                "idempotency_key": p.idempotency_key(GATEWAY, "payment", self.ref),
                "type": "payment.captured",
                "occurred_at": self.occurred_at,
                "order_id": self.order_id,
                "amount": self.amount,
                "currency": self.currency,
                "gateway": GATEWAY,
                "gateway_ref": self.ref,
                "metadata": self.meta,
            }
            if self.part_of is not None:
                captured["payment_ref"] = self.part_of
            return captured
        return {
            "idempotency_key": p.idempotency_key(GATEWAY, "status", self.ref, self.status),
            "type": "order.status_noted",
            "occurred_at": self.occurred_at,
            "order_id": self.order_id,
            "source": GATEWAY,
            "status": self.status,
            "gateway_ref": self.ref,
            "metadata": {**self.meta, "amount": self.amount, "currency": self.currency},
        }


@dataclass(frozen=True, slots=True)
class UnplacedPayment:
    """Money an unmapped flat callback reports: kept for an operator, never placed by itself.

    The event names no ``order_id`` on purpose: the ledger cannot take it, so
    the routes put it in suspense; resolving it names the order.
    """

    ref: str  # the callback's id, payment_id, or sha256:<digest of the body>
    amount: str
    currency: str
    occurred_at: str
    meta: dict[str, Any]

    def event(self) -> dict[str, Any]:
        return {
            "idempotency_key": p.idempotency_key(GATEWAY, "payment", self.ref),
            "type": "payment.captured",
            "occurred_at": self.occurred_at,
            "amount": self.amount,
            "currency": self.currency,
            "gateway": GATEWAY,
            "gateway_ref": self.ref,
            "metadata": self.meta,
        }


def read_status(container: dict[str, Any], *, field: str, name: str = "status") -> str:
    status = p.ident(container, name, field=field)
    if len(status) > 40:
        raise ValidationError(f"{field} is too long", field=field)
    return status


def _first_time(container: dict[str, Any], names: tuple[str, ...], *, prefix: str = "") -> str:
    """The first of ``names`` that is set, as RFC 3339; the first name is required otherwise."""
    for name in names:
        if container.get(name) not in (None, ""):
            return p.rfc3339(container, name, field=prefix + name)
    return p.rfc3339(container, names[0], field=prefix + names[0])


def data_time(payload: dict[str, Any], data: dict[str, Any], *names: str) -> str:
    """``data``'s first time of ``names`` that is set, else the envelope's ``created``."""
    if any(data.get(name) not in (None, "") for name in names):
        return _first_time(data, names, prefix="data.")
    return p.rfc3339(payload, "created", field="created")


def qr_payment(payload: dict[str, Any]) -> Payment:
    data = p.member_object(payload, "data", field="data")
    currency = parse_currency(data.get("currency"), field="data.currency")
    status = read_status(data, field="data.status")
    detail = data.get("payment_detail")
    detail = detail if isinstance(detail, dict) else {}
    if data.get("created") not in (None, ""):
        occurred_at = p.rfc3339(data, "created", field="data.created")
    else:
        occurred_at = p.rfc3339(payload, "created", field="created")
    return Payment(
        ref=p.ident(data, "id", field="data.id"),
        order_id=p.ident(data, "reference_id", field="data.reference_id"),
        status=status,
        paid=status.upper() in _PAID_QR,
        amount=p.amount_number(data.get("amount"), currency, field="data.amount"),
        currency=currency,
        occurred_at=occurred_at,
        meta=p.metadata(
            callback="qr.payment",
            channel_code=p.loose_text(data, "channel_code"),
            source=p.loose_text(detail, "source"),
            qr_id=p.loose_text(data, "qr_id"),
            qr_type=p.loose_text(data, "type"),
        ),
    )


def qr_payment_v1(payload: dict[str, Any]) -> Payment:
    # the pre-2022 flat shape, still seen live: {event, id, amount, created,
    # qr_code{id, external_id, type}, status: "COMPLETED", payment_details}
    qr_code = p.member_object(payload, "qr_code", field="qr_code")
    currency = parse_currency(payload.get("currency"))
    status = read_status(payload, field="status")
    detail = payload.get("payment_details")
    detail = detail if isinstance(detail, dict) else {}
    return Payment(
        ref=p.ident(payload, "id", field="id"),
        order_id=p.ident(qr_code, "external_id", field="qr_code.external_id"),
        status=status,
        paid=status.upper() in _PAID_QR,
        amount=p.amount_number(payload.get("amount"), currency, field="amount"),
        currency=currency,
        occurred_at=p.rfc3339(payload, "created", field="created"),
        meta=p.metadata(
            callback="qr.payment",
            source=p.loose_text(detail, "source"),
            qr_id=p.loose_text(qr_code, "id"),
            qr_type=p.loose_text(qr_code, "type"),
        ),
    )


def invoice(payload: dict[str, Any]) -> Payment:
    currency = parse_currency(payload.get("currency"))
    status = read_status(payload, field="status")
    paid = status.upper() in _PAID_INVOICE
    amount_field = "paid_amount" if paid and payload.get("paid_amount") is not None else "amount"
    # PAID and SETTLED must give the same body: paid_at is in both, `updated`
    # is not the same in both. A status note is timed by its own update.
    if paid:
        time_field = "paid_at" if payload.get("paid_at") not in (None, "") else "created"
    else:
        time_field = "updated" if payload.get("updated") not in (None, "") else "created"
    detail = payload.get("payment_details")
    detail = detail if isinstance(detail, dict) else {}
    return Payment(
        ref=p.ident(payload, "id", field="id"),
        order_id=p.ident(payload, "external_id", field="external_id"),
        status=status,
        paid=paid,
        amount=p.amount_number(payload.get(amount_field), currency, field=amount_field),
        currency=currency,
        occurred_at=p.rfc3339(payload, time_field, field=time_field),
        meta=p.metadata(
            callback="invoice",
            payment_method=p.loose_text(payload, "payment_method"),
            payment_channel=p.loose_text(payload, "payment_channel"),
            source=p.loose_text(detail, "source"),
        ),
    )


def ewallet_capture(payload: dict[str, Any]) -> Payment:
    data = p.member_object(payload, "data", field="data")
    currency = parse_currency(data.get("currency"), field="data.currency")
    status = read_status(data, field="data.status")
    paid = status.upper() == SUCCEEDED
    # what was taken from the wallet; a charge not (yet) captured is noted at its charge
    captured = paid and data.get("capture_amount") is not None
    amount_field = "capture_amount" if captured else "charge_amount"
    return Payment(
        ref=p.ident(data, "id", field="data.id"),
        order_id=p.ident(data, "reference_id", field="data.reference_id"),
        status=status,
        paid=paid,
        amount=p.amount_number(data.get(amount_field), currency, field=f"data.{amount_field}"),
        currency=currency,
        occurred_at=data_time(payload, data, "updated", "created"),
        meta=p.metadata(
            callback="ewallet.capture",
            channel_code=p.loose_text(data, "channel_code"),
            checkout_method=p.loose_text(data, "checkout_method"),
            failure_code=None if paid else p.loose_text(data, "failure_code"),
        ),
    )


def legacy_ewallet(payload: dict[str, Any]) -> Payment:
    # the 2019 flat e-wallet callback: {external_id, amount, business_id,
    # payment_status PAID|EXPIRED, transaction_date, ewallet_type, ...}
    currency = parse_currency(payload.get("currency"))
    status = read_status(payload, field="payment_status", name="payment_status")
    order_id = p.ident(payload, "external_id", field="external_id")
    ewallet_type = p.loose_text(payload, "ewallet_type")
    return Payment(
        ref=_legacy_ewallet_ref(payload, order_id),
        order_id=order_id,
        status=status,
        paid=status.upper() in _PAID_LEGACY_EWALLET,
        amount=p.amount_number(payload.get("amount"), currency, field="amount"),
        currency=currency,
        occurred_at=_first_time(payload, ("transaction_date", "created", "updated")),
        meta=p.metadata(callback="ewallet.legacy", ewallet_type=ewallet_type),
    )


def _legacy_ewallet_ref(payload: dict[str, Any], order_id: str) -> str:
    """Its ``id`` if sent, else ``<ewallet_type>:<external_id>`` (one payment per both)."""
    if payload.get("id") not in (None, ""):
        return p.ident(payload, "id", field="id")
    wallet = p.ident(payload, "ewallet_type", field="ewallet_type")
    return f"{wallet}:{order_id}"


def unplaced_payment(payload: dict[str, Any]) -> UnplacedPayment | None:
    """Money in a flat callback we do not map, if it says how much, for what and when."""
    timed = any(payload.get(name) not in (None, "") for name in _FLAT_TIME_FIELDS)
    if payload.get("external_id") in (None, "") or payload.get("amount") is None or not timed:
        return None  # nothing an operator could place: acknowledged, no effect
    currency = parse_currency(payload.get("currency"))
    return UnplacedPayment(
        ref=_flat_ref(payload),
        amount=p.amount_number(payload.get("amount"), currency, field="amount"),
        currency=currency,
        occurred_at=_first_time(payload, _FLAT_TIME_FIELDS),
        meta=p.metadata(
            callback="unmapped",
            external_id=p.ident(payload, "external_id", field="external_id"),
            bank_code=p.loose_text(payload, "bank_code"),
            retail_outlet_name=p.loose_text(payload, "retail_outlet_name"),
            ewallet_type=p.loose_text(payload, "ewallet_type"),
        ),
    )


def _flat_ref(payload: dict[str, Any]) -> str:
    """Xendit's id for the callback, else a digest of the whole body (same on a redelivery)."""
    for name in ("id", "payment_id"):
        if payload.get(name) not in (None, ""):
            return p.ident(payload, name, field=name)
    body = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=True)
    return "sha256:" + hashlib.sha256(body.encode("ascii")).hexdigest()
