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
  no way to ask for suspense by name; ``gateways/intake.py`` suspends an
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

This module is the adapter's public surface; each family of callbacks is
read in its own module: ``_xendit_payments`` (QR, invoice, e-wallet, flat
callbacks not mapped), ``_xendit_v3`` (Payments API v3), ``_xendit_refunds``.
"""

from __future__ import annotations

from typing import Any, Final

from gateways import _payload as p
from gateways import _xendit_payments as pay
from gateways import _xendit_refunds as refunds
from gateways import _xendit_v3 as v3
from gateways._xendit_payments import GATEWAY
from gateways.errors import SignatureInvalid
from ledger.domain.errors import ValidationError

__all__ = ["GATEWAY", "TOKEN_HEADER", "parse", "to_events", "verify"]

TOKEN_HEADER: Final = "x-callback-token"

_REFUND_EVENTS: Final = frozenset({"refund.succeeded", "refund.failed"})
#: Payments API v3 callbacks about one payment (``data.payment_id``).
_PAYMENT_EVENTS: Final = frozenset(
    {"payment.capture", "payment.authorization", "payment.failure", "payment.expiry"}
)
#: Members that mark a flat body (no ``event``) as Xendit's: the merchant's
#: reference or Xendit's account ids.
_FLAT_MARKERS: Final = frozenset({"external_id", "business_id", "owner_id", "user_id"})
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


_Callback = pay.Payment | refunds.Refund | pay.UnplacedPayment


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
            return [pay.qr_payment(payload)]
        return [pay.qr_payment_v1(payload)]
    if event in _REFUND_EVENTS:
        return [refunds.refund(payload, event)]
    if event == "ewallet.capture":
        return [pay.ewallet_capture(payload)]
    if event in _PAYMENT_EVENTS:
        return [*v3.payment_v3(payload, event)]
    return []  # a callback we do not map (e.g. qr.refund): acknowledged, no effect


def _flat(payload: dict[str, Any]) -> list[_Callback]:
    """A body with no ``event``: invoice, legacy e-wallet, or a shape not mapped."""
    if "status" in payload:
        return [pay.invoice(payload)]
    if "payment_status" in payload:
        return [pay.legacy_ewallet(payload)]
    if not _FLAT_MARKERS.intersection(payload):
        raise ValidationError("not a Xendit callback: no event and no Xendit fields")
    unplaced = pay.unplaced_payment(payload)
    return [] if unplaced is None else [unplaced]
