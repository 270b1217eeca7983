"""Xendit callbacks -> canonical events (CONTRACT section 3).

    verify(headers.get(TOKEN_HEADER), expected_token=...)  # SignatureInvalid
    payload = parse(raw_body)                              # BadRequest / ValidationError
    events = to_events(payload)                            # canonical event dicts

Xendit signs nothing: every callback carries the account's static
verification token in ``x-callback-token``, compared here in constant time.

Callbacks understood (any other JSON object with an ``event`` is
acknowledged with no events, so Xendit stops retrying):

- ``qr.payment`` (QR Codes API 2022-07-31, ``{"event", "data": {...}}``, and
  the legacy flat v1 shape with ``qr_code.external_id``): status
  ``SUCCEEDED``/``COMPLETED`` -> ``payment.captured`` keyed
  ``xendit:payment:<qrpy_ id>``, order from ``reference_id`` /
  ``external_id``; another status -> ``order.status_noted``.
- ``payment.capture`` (Payments API v3, how QRIS arrives on ``/v3``), status
  ``SUCCEEDED``: one ``payment.captured`` per entry of ``data.captures``,
  order from ``data.reference_id``. The earliest capture (by
  ``capture_timestamp``, then ``capture_id``) is the payment itself: keyed
  ``xendit:payment:<py- payment_id>`` with ``gateway_ref`` = ``payment_id``,
  because that is what a ``refund.succeeded`` names (``data.payment_id``)
  and the ledger finds a refunded order by a capture's ``gateway_ref``. Any
  further (partial, card) capture is keyed and referenced by its own
  ``cap-`` ``capture_id``: a payment is captured once per ``gateway_ref``,
  and a refund by ``payment_id`` still finds the order through the first.
  Per capture rather than one per payment at ``request_amount``: the
  captures are what moved (a manual card capture may take less than was
  requested), and a later callback listing more captures adds only the new
  ones. Xendit's own example carries no ``captures``: then one capture of
  ``request_amount``, the same key. ``payment.authorization``,
  ``payment.failure``, ``payment.expiry`` and a capture not ``SUCCEEDED`` ->
  ``order.status_noted`` keyed ``xendit:status:<payment_id>:<status>``
  (``failure_code`` kept in the metadata), no balance effect.
- ``ewallet.capture``: status ``SUCCEEDED`` -> ``payment.captured`` keyed
  ``xendit:payment:<ewc_ id>``, order from ``data.reference_id``, amount
  ``capture_amount`` (``charge_amount`` if absent); another status
  (``PENDING``, ``FAILED``, ``VOIDED``, ...) -> ``order.status_noted``.
- invoice callback (flat, no ``event``, with ``status``): ``PAID``/``SETTLED``
  -> ``payment.captured`` keyed ``xendit:payment:<invoice id>`` (the
  ``SETTLED`` re-notification gives the same key and body);
  ``PENDING``/``EXPIRED``/other -> ``order.status_noted``.
- legacy (2019) e-wallet callback (flat, ``payment_status``): ``PAID`` ->
  ``payment.captured``, order from ``external_id``, timed by
  ``transaction_date``; ``EXPIRED``/other -> ``order.status_noted``. The
  documented body has no id of its own: it is keyed by its ``id`` when one
  is sent, else ``xendit:payment:<ewallet_type>:<external_id>`` (a merchant
  creates one e-wallet payment per external id and wallet; the wallet keeps
  it apart from an invoice or QR paying the same order).
- any other flat callback (no ``event``, no ``status``: a virtual-account or
  retail-outlet "paid" callback, say) is not understood, so it is never
  credited by itself. With an ``external_id``, an ``amount`` and a time it is
  a ``payment.captured`` with **no** ``order_id`` (``external_id`` in the
  metadata), keyed by its ``id`` (else ``payment_id``, else a digest of the
  body): the ledger cannot place it, so the gateway routes keep it in the
  suspense list (reason ``validation_error``) and an operator who resolves it
  onto an order records the capture under Xendit's key. (The adapter API has
  no way to ask for suspense by name; ``gateways/routes.py`` suspends an
  authenticated fact whose order the ledger cannot take.) Without those
  fields it is acknowledged with no events. A flat body with none of Xendit's
  fields (``external_id``, ``business_id``, ``owner_id``, ``user_id``) is no
  Xendit callback: ``ValidationError``.
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

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
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
_PAID_LEGACY_EWALLET: Final = frozenset({"PAID"})
_SUCCEEDED: Final = "SUCCEEDED"
_REFUND_EVENTS: Final = frozenset({"refund.succeeded", "refund.failed"})
#: Payments API v3 callbacks about one payment (``data.payment_id``).
_PAYMENT_EVENTS: Final = frozenset(
    {"payment.capture", "payment.authorization", "payment.failure", "payment.expiry"}
)
#: Members that mark a flat body (no ``event``) as Xendit's: the merchant's
#: reference or Xendit's account ids.
_FLAT_MARKERS: Final = frozenset({"external_id", "business_id", "owner_id", "user_id"})
#: Where a flat callback Xendit's documentation does not cover says when it happened.
_FLAT_TIME_FIELDS: Final = (
    "transaction_timestamp",
    "transaction_date",
    "paid_at",
    "updated",
    "created",
)
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
    return [callback.event() for callback in _read(payload)]


@dataclass(frozen=True, slots=True)
class _Payment:
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


@dataclass(frozen=True, slots=True)
class _UnplacedPayment:
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


_Callback = _Payment | _Refund | _UnplacedPayment


def _read(payload: dict[str, Any]) -> list[_Callback]:
    if not isinstance(payload, dict):
        raise ValidationError("a Xendit callback is a JSON object")
    event = payload.get("event")
    if event is None:
        return _flat(payload)
    if not isinstance(event, str) or not event:
        raise ValidationError("event must be a non-empty string", field="event")
    if event == "qr.payment":
        if "data" in payload:
            return [_qr_payment(payload)]
        return [_qr_payment_v1(payload)]
    if event in _REFUND_EVENTS:
        return [_refund(payload, event)]
    if event == "ewallet.capture":
        return [_ewallet_capture(payload)]
    if event in _PAYMENT_EVENTS:
        return _payment_v3(payload, event)
    return []  # a callback we do not map (e.g. qr.refund): acknowledged, no effect


def _flat(payload: dict[str, Any]) -> list[_Callback]:
    """A body with no ``event``: invoice, legacy e-wallet, or a shape not mapped."""
    if "status" in payload:
        return [_invoice(payload)]
    if "payment_status" in payload:
        return [_legacy_ewallet(payload)]
    if not _FLAT_MARKERS.intersection(payload):
        raise ValidationError("not a Xendit callback: no event and no Xendit fields")
    unplaced = _unplaced_payment(payload)
    return [] if unplaced is None else [unplaced]


def _status(container: dict[str, Any], *, field: str, name: str = "status") -> str:
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


def _data_time(payload: dict[str, Any], data: dict[str, Any], *names: str) -> str:
    """``data``'s first time of ``names`` that is set, else the envelope's ``created``."""
    if any(data.get(name) not in (None, "") for name in names):
        return _first_time(data, names, prefix="data.")
    return p.rfc3339(payload, "created", field="created")


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


def _ewallet_capture(payload: dict[str, Any]) -> _Payment:
    data = p.member_object(payload, "data", field="data")
    currency = parse_currency(data.get("currency"), field="data.currency")
    status = _status(data, field="data.status")
    paid = status.upper() == _SUCCEEDED
    # what was taken from the wallet; a charge not (yet) captured is noted at its charge
    captured = paid and data.get("capture_amount") is not None
    amount_field = "capture_amount" if captured else "charge_amount"
    return _Payment(
        ref=p.ident(data, "id", field="data.id"),
        order_id=p.ident(data, "reference_id", field="data.reference_id"),
        status=status,
        paid=paid,
        amount=p.amount_number(data.get(amount_field), currency, field=f"data.{amount_field}"),
        currency=currency,
        occurred_at=_data_time(payload, data, "updated", "created"),
        meta=p.metadata(
            callback="ewallet.capture",
            channel_code=p.loose_text(data, "channel_code"),
            checkout_method=p.loose_text(data, "checkout_method"),
            failure_code=None if paid else p.loose_text(data, "failure_code"),
        ),
    )


@dataclass(frozen=True, slots=True)
class _Capture:
    """One entry of a v3 payment's ``captures``."""

    capture_id: str
    amount: str
    occurred_at: str

    def order_key(self) -> tuple[datetime, str]:
        return datetime.fromisoformat(self.occurred_at), self.capture_id


def _payment_v3(payload: dict[str, Any], event: str) -> list[_Payment]:
    data = p.member_object(payload, "data", field="data")
    currency = parse_currency(data.get("currency"), field="data.currency")
    status = _status(data, field="data.status")
    payment_id = p.ident(data, "payment_id", field="data.payment_id")
    order_id = p.ident(data, "reference_id", field="data.reference_id")
    updated_at = _data_time(payload, data, "updated", "created")
    succeeded = event == "payment.capture" and status.upper() == _SUCCEEDED
    meta = p.metadata(
        callback=event,
        channel_code=p.loose_text(data, "channel_code"),
        payment_request_id=p.loose_text(data, "payment_request_id"),
        failure_code=None if succeeded else p.loose_text(data, "failure_code"),
    )

    def payment(
        ref: str, amount: str, occurred_at: str, part_of: str | None = None, **extra: str
    ) -> _Payment:
        return _Payment(
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


def _legacy_ewallet(payload: dict[str, Any]) -> _Payment:
    # the 2019 flat e-wallet callback: {external_id, amount, business_id,
    # payment_status PAID|EXPIRED, transaction_date, ewallet_type, ...}
    currency = parse_currency(payload.get("currency"))
    status = _status(payload, field="payment_status", name="payment_status")
    order_id = p.ident(payload, "external_id", field="external_id")
    ewallet_type = p.loose_text(payload, "ewallet_type")
    return _Payment(
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


def _unplaced_payment(payload: dict[str, Any]) -> _UnplacedPayment | None:
    """Money in a flat callback we do not map, if it says how much, for what and when."""
    timed = any(payload.get(name) not in (None, "") for name in _FLAT_TIME_FIELDS)
    if payload.get("external_id") in (None, "") or payload.get("amount") is None or not timed:
        return None  # nothing an operator could place: acknowledged, no effect
    currency = parse_currency(payload.get("currency"))
    return _UnplacedPayment(
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
