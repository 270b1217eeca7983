"""Midtrans HTTP notification -> canonical events (CONTRACT section 3).

    verify(raw_body, server_key=...)   # SignatureInvalid unless signature_key matches
    payload = parse(raw_body)          # BadRequest / ValidationError
    events = to_events(payload)        # canonical event dicts for POST /v1/events

Authenticity lives in the body: ``signature_key = hex(SHA-512(order_id +
status_code + gross_amount + server_key))`` over the strings exactly as sent
(``"10000.00"``, not ``"10000"``). The body must therefore be decoded before
it is verified, but nothing in it is *used* before :func:`verify` passes.

Mapping (``transaction_status``; ``fraud_status`` may be absent):

- ``capture`` / ``settlement`` with fraud ``accept`` or none and
  ``status_code`` ``"200"`` (Midtrans' own three-field success rule) -> one
  ``payment.captured`` keyed ``midtrans:payment:<transaction_id>``. A card's
  ``settlement`` after its ``capture`` yields the same key AND the same body,
  so the ledger sees an exact duplicate, not a second payment.
- ``refund`` / ``partial_refund`` -> one ``refund.issued`` per entry of the
  ``refunds`` list, keyed ``midtrans:refund:<transaction_id>:<refund_key>``,
  matched through the payment it refunds (``payment_ref`` = the
  ``transaction_id``; CONTRACT 3), not by ``order_id``: the refund of a
  transaction the ledger never credited goes to suspense.
  Midtrans re-sends the whole list on every refund, and each refund twice
  (the second time with ``bank_confirmed_at``); an entry's event is built from
  that entry only, so every re-send is an exact duplicate.
- everything else -> ``order.status_noted`` (no balance effect), keyed by
  transaction, status and fraud status: ``pending``, ``authorize``, ``deny``,
  ``cancel``, ``expire``, ``failure``, a ``capture``/``settlement`` held by
  the fraud check (``challenge``/``deny``), a capture or refund whose
  ``status_code`` is not 200, ``chargeback`` and ``partial_chargeback`` (no
  public sample to build amounts from), a refund
  notification without a ``refunds`` list (the direct-refund sample has none;
  its ``refund_amount`` is cumulative, so it cannot be split into refunds
  safely), and statuses Midtrans adds later. A ``deny`` or ``cancel`` after a
  capture (Permata/Indomaret reversal) is noted with ``gateway_ref`` = the
  transaction id; deciding that money went back is the ledger's, not ours.

The signature covers neither ``transaction_status``, ``transaction_id`` nor
the ``refunds`` list, so no money moves on the notification's word alone:
:func:`confirm` (``gateways.midtrans_confirm``, re-exported here) checks the
money events against Midtrans' Get Status answer.

Midtrans does not name a sales channel, so ``channel`` is left out and the
ledger matches by ``order_id``. Midtrans sends no fee: ``fee`` is omitted.
Pure: no I/O, no clock, no environment.
"""

from __future__ import annotations

import hashlib
from typing import Any

from gateways import _payload as p
from gateways._midtrans_note import GATEWAY, events_of, read
from gateways.errors import SignatureInvalid
from gateways.midtrans_confirm import Checked, confirm, moves_money, unconfirmed

__all__ = [
    "GATEWAY",
    "Checked",
    "confirm",
    "moves_money",
    "parse",
    "to_events",
    "unconfirmed",
    "verify",
]


def verify(raw_body: bytes, *, server_key: str) -> None:
    """Checks ``signature_key``; raises ``SignatureInvalid`` if it is missing or wrong.

    ``BadRequest`` if the body is not a JSON object at all (there is no
    signature to look for). The comparison is constant-time.
    """
    payload = p.load_object(raw_body)
    signed: list[str] = []
    for name in ("order_id", "status_code", "gross_amount"):
        value = payload.get(name)
        if not isinstance(value, str):
            # the signature covers the strings exactly as sent: without them
            # (or with a number in their place) there is nothing to check
            raise SignatureInvalid(f"{name} must be a string to verify the signature")
        signed.append(value)
    received = payload.get("signature_key")
    if not isinstance(received, str) or not received:
        raise SignatureInvalid("signature_key is missing")
    if not server_key:
        raise SignatureInvalid("no Midtrans server key is configured")
    expected = hashlib.sha512(
        "".join([*signed, server_key]).encode("utf-8", "surrogatepass")
    ).hexdigest()
    if not p.secret_equals(received.lower(), expected):
        raise SignatureInvalid("signature_key does not match")


def parse(raw_body: bytes) -> dict[str, Any]:
    """Decodes and validates a notification; returns it as sent.

    JSON numbers with a fraction come back as ``Decimal`` (never float).
    """
    payload = p.load_object(raw_body)
    read(payload)
    return payload


def to_events(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Canonical events for one notification (see the module docstring for the mapping)."""
    return events_of(read(payload))
