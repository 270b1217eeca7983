"""Xendit callbacks -> canonical events (CONTRACT section 3).

    verify(headers.get(TOKEN_HEADER), expected_token=...)  # SignatureInvalid
    payload = parse(raw_body)                              # BadRequest / ValidationError
    events = to_events(payload)                            # canonical event dicts

Xendit signs nothing: every callback carries the account's static
verification token in ``x-callback-token``, compared here in constant time.

Callbacks understood (anything else that is a JSON object with an ``event``
is acknowledged with no events, so Xendit stops retrying):

- ``qr.payment`` (QR Codes API 2022-07-31, ``{"event", "data": {...}}``, and
  the legacy flat v1 shape with ``qr_code.external_id``): status
  ``SUCCEEDED``/``COMPLETED`` -> ``payment.captured`` keyed
  ``xendit:payment:<qrpy_ id>``, order from ``reference_id`` /
  ``external_id``; another status -> ``order.status_noted``.
- invoice callback (flat, no ``event``): ``PAID``/``SETTLED`` ->
  ``payment.captured`` keyed ``xendit:payment:<invoice id>`` (the ``SETTLED``
  re-notification gives the same key and body); ``PENDING``/``EXPIRED``/other
  -> ``order.status_noted``.
- ``refund.succeeded`` -> ``refund.issued`` keyed ``xendit:refund:<rfd id>``,
  matched through the payment: ``payment_ref`` is ``invoice_id`` when set (an
  invoice payment is recorded under the invoice id) else ``payment_id``; no
  ``order_id``. ``refund.failed`` -> ``order.status_noted`` with that
  ``payment_ref``.

Keys come from Xendit's own object ids, never from a ``webhook-id`` header
(not in any official source). Amounts are JSON integers or decimal strings; a
JSON number written with a zero fraction (``10000.0``) is taken because it is
decoded exactly and is a whole number; ``10000.5`` and ``1e4`` are refused.
Xendit names no sales channel: ``channel`` is left out. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from gateways import _payload as p
from gateways.errors import SignatureInvalid
from ledger.domain.errors import ValidationError
from ledger.domain.money import parse_currency

__all__ = ["TOKEN_HEADER", "parse", "to_events", "verify"]

GATEWAY: Final = "xendit"
TOKEN_HEADER: Final = "x-callback-token"

_PAID_QR: Final = frozenset({"SUCCEEDED", "COMPLETED"})
_PAID_INVOICE: Final = frozenset({"PAID", "SETTLED"})
_REFUND_EVENTS: Final = frozenset({"refund.succeeded", "refund.failed"})
_TOKEN_LENGTH_MAX: Final[int] = 1024


def verify(callback_token: str | None, *, expected_token: str) -> None:
    """Checks the ``x-callback-token`` header value; ``SignatureInvalid`` if missing or wrong."""
    if callback_token is None or callback_token == "":
        raise SignatureInvalid(f"{TOKEN_HEADER} header is missing")
    if len(callback_token) > _TOKEN_LENGTH_MAX or not p.secret_equals(
        callback_token, expected_token
    ):
        raise SignatureInvalid(f"{TOKEN_HEADER} does not match")


def parse(raw_body: bytes) -> dict[str, Any]:
    """Decodes and validates a callback; returns it as sent.

    JSON numbers with a fraction come back as ``Decimal`` (never float).
    """
    payload = p.load_object(raw_body)
    _read(payload)
    return payload


def to_events(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Canonical events for one callback (see the module docstring for the mapping)."""
    callback = _read(payload)
    if callback is None:
        return []
    return [callback.event()]


@dataclass(frozen=True, slots=True)
class _Payment:
    """A QR payment or an invoice: an order's money in, or a status of it."""

    ref: str  # qrpy_ id or invoice id
    order_id: str
    status: str
    paid: bool
    amount: str
    currency: str
    occurred_at: str
    meta: dict[str, Any]

    def event(self) -> dict[str, Any]:
        if self.paid:
            return {
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
class _Refund:
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


def _read(payload: dict[str, Any]) -> _Payment | _Refund | None:
    if not isinstance(payload, dict):
        raise ValidationError("a Xendit callback is a JSON object")
    event = payload.get("event")
    if event is None:
        if "external_id" in payload or "status" in payload:
            return _invoice(payload)
        raise ValidationError("not a Xendit callback: no event and no invoice fields")
    if not isinstance(event, str) or not event:
        raise ValidationError("event must be a non-empty string", field="event")
    if event == "qr.payment":
        if "data" in payload:
            return _qr_payment(payload)
        return _qr_payment_v1(payload)
    if event in _REFUND_EVENTS:
        return _refund(payload, event)
    return None  # a callback we do not map (e.g. ewallet.capture): acknowledged, no effect


def _status(container: dict[str, Any], *, field: str) -> str:
    status = p.ident(container, "status", field=field)
    if len(status) > 40:
        raise ValidationError(f"{field} is too long", field=field)
    return status


def _qr_payment(payload: dict[str, Any]) -> _Payment:
    data = p.member_object(payload, "data", field="data")
    currency = parse_currency(data.get("currency"), field="data.currency")
    status = _status(data, field="data.status")
    detail = data.get("payment_detail")
    detail = detail if isinstance(detail, dict) else {}
    if data.get("created") not in (None, ""):
        occurred_at = p.rfc3339(data, "created", field="data.created")
    else:
        occurred_at = p.rfc3339(payload, "created", field="created")
    return _Payment(
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


def _qr_payment_v1(payload: dict[str, Any]) -> _Payment:
    # the pre-2022 flat shape, still seen live: {event, id, amount, created,
    # qr_code{id, external_id, type}, status: "COMPLETED", payment_details}
    qr_code = p.member_object(payload, "qr_code", field="qr_code")
    currency = parse_currency(payload.get("currency"))
    status = _status(payload, field="status")
    detail = payload.get("payment_details")
    detail = detail if isinstance(detail, dict) else {}
    return _Payment(
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


def _invoice(payload: dict[str, Any]) -> _Payment:
    currency = parse_currency(payload.get("currency"))
    status = _status(payload, field="status")
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
    return _Payment(
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


def _refund(payload: dict[str, Any], event: str) -> _Refund:
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
    return _Refund(
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
