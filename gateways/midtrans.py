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
the ``refunds`` list: a signed ``cancel`` (status code 200, like a payment)
could be relabelled ``settlement``, given another transaction id (another
idempotency key, so another credit) or a forged refund list. So no money
moves on the notification's word alone. The caller asks Midtrans' Get Status
API (``GET /v2/{order_id}/status``, I/O, not here) and :func:`confirm`
compares the two::

    checked = confirm(payload, answer)      # answer: the decoded status body
    checked = unconfirmed(payload, why)     # no usable answer (down, timeout, non-200)

Each :class:`Checked` is one event and, if it must not be applied, why.

- a capture is confirmed only if the answer names the same ``order_id`` and
  ``transaction_id``, the same ``gross_amount`` and currency, and a paid
  status: ``capture``/``settlement`` with fraud ``accept`` or none, or a
  status only a paid transaction reaches (``refund``, ``partial_refund``,
  ``chargeback``, ``partial_chargeback``: the payment happened; what went
  back is recorded by its own facts). The event is then built from the
  answer's fields, not the notification's unsigned ones;
- a refund entry is confirmed only if the answer, for the same transaction,
  lists an entry with the same refund key (or ``refund_chargeback_id``) and
  amount; its event is built from the answer's entry. Entries the answer
  does not list are not confirmed;
- events with no money effect (``order.status_noted``) need no answer.

Anything not confirmed is kept by the caller in suspense (reason
``unconfirmed``), never credited.

Midtrans does not name a sales channel, so ``channel`` is left out and the
ledger matches by ``order_id``. Midtrans sends no fee: ``fee`` is omitted.
Pure: no I/O, no clock, no environment.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any, Final

from gateways import _payload as p
from gateways.errors import SignatureInvalid
from ledger.domain import balances
from ledger.domain.errors import ValidationError
from ledger.domain.money import parse_currency

__all__ = ["Checked", "confirm", "moves_money", "parse", "to_events", "unconfirmed", "verify"]

GATEWAY: Final = "midtrans"

_CAPTURE_STATUSES: Final = frozenset({"capture", "settlement"})
_REFUND_STATUSES: Final = frozenset({"refund", "partial_refund"})
#: statuses of a transaction that was paid: only a settled payment can be
#: refunded or charged back (Midtrans' Transaction Status Cycle)
_PAID_STATUSES: Final = _CAPTURE_STATUSES | _REFUND_STATUSES | {"chargeback", "partial_chargeback"}
_MONEY_TYPES: Final = frozenset(balances.GATEWAY_MONEY_TYPES)
#: One notification cannot carry more refunds than one batch of events holds.
_REFUNDS_MAX: Final[int] = 1000
_STATUS_LENGTH_MAX: Final[int] = 40


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
    _read(payload)
    return payload


def to_events(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Canonical events for one notification (see the module docstring for the mapping)."""
    note = _read(payload)
    if _is_capture(note):
        return [_captured(note)]
    if _is_refund(note):
        events: list[dict[str, Any]] = []
        for refund in note.refunds:
            event = _refunded(note, refund)
            if event not in events:  # the same entry twice in one list is one refund
                events.append(event)
        return events
    return [_noted(note)]


def moves_money(events: list[dict[str, Any]]) -> bool:
    """Whether any of these events would move money (and so needs :func:`confirm`)."""
    return any(event.get("type") in _MONEY_TYPES for event in events)


@dataclass(frozen=True, slots=True)
class Checked:
    """One event of a notification, checked against Midtrans' status answer."""

    event: dict[str, Any]
    #: ``None``: apply ``event`` (confirmed, or moves no money); else why it
    #: must not be applied, and ``event`` is the notification's unconfirmed claim
    unconfirmed: str | None = None


def confirm(payload: dict[str, Any], answer: object) -> list[Checked]:
    """The notification's events checked against a Get Status answer (the decoded JSON body).

    Confirmed money events are built from ``answer``; the others keep the
    notification's event with the reason. One result per idempotency key.
    """
    note = _read(payload)
    try:
        theirs = _read_answer(answer)
    except ValidationError as error:
        return unconfirmed(payload, f"the status answer is unreadable: {error}")
    why = _another_transaction(note, theirs)
    if _is_capture(note):
        why = why or _unpaid(note, theirs)
        if why is not None:
            return [Checked(_captured(note), why)]
        return [Checked(_captured(theirs))]
    if not _is_refund(note):
        return [Checked(_noted(note))]
    listed = {refund.ref: refund for refund in theirs.refunds}
    checked: dict[str, Checked] = {}
    for refund in note.refunds:
        claim = _refunded(note, refund)
        key = claim["idempotency_key"]
        found = listed.get(refund.ref)
        if why is not None:
            result = Checked(claim, why)
        elif found is None:
            result = Checked(claim, f"refund {refund.ref} is not in the status answer's refunds")
        elif found.amount != refund.amount:
            result = Checked(
                claim,
                f"refund {refund.ref} is {found.amount} in the status answer, not {refund.amount}",
            )
        else:
            result = Checked(_refunded(theirs, found))
        # one result per key: a list naming one refund twice (once forged)
        # must not both credit it and suspend it
        if key not in checked or (checked[key].unconfirmed and not result.unconfirmed):
            checked[key] = result
    return list(checked.values())


def unconfirmed(payload: dict[str, Any], why: str) -> list[Checked]:
    """The notification's events when no status answer can be had: money ones held, with ``why``."""
    return [
        Checked(event, why if event["type"] in _MONEY_TYPES else None)
        for event in to_events(payload)
    ]


def _is_capture(note: _Notification) -> bool:
    return (
        note.status in _CAPTURE_STATUSES
        and note.fraud_status in (None, "accept")
        and note.status_code == "200"
    )


def _is_refund(note: _Notification) -> bool:
    return note.status in _REFUND_STATUSES and bool(note.refunds) and note.status_code == "200"


def _read_answer(answer: object) -> _Notification:
    if not isinstance(answer, dict):
        raise ValidationError("a status answer is a JSON object")
    code = answer.get("status_code")
    if code != "200" and not answer.get("transaction_id"):
        # "Transaction doesn't exist." comes back as HTTP 200 with status_code 404
        message = p.loose_text(answer, "status_message") or ""
        raise ValidationError(f"status_code {code!r}: {message[:100]}")
    note = _read(answer)
    # the answer lists refunds whatever the status it reports now (a refund
    # may be followed by a chargeback); the notification's list is checked
    # against it entry by entry
    return replace(note, refunds=_read_refunds(answer, note.currency, note.transaction_time))


def _another_transaction(note: _Notification, theirs: _Notification) -> str | None:
    if theirs.order_id != note.order_id:
        return f"the status answer is about order {theirs.order_id!r}"
    if theirs.transaction_id != note.transaction_id:
        return f"the status answer names transaction {theirs.transaction_id!r}"
    if theirs.currency != note.currency:
        return f"the status answer is in {theirs.currency}, not {note.currency}"
    return None


def _unpaid(note: _Notification, theirs: _Notification) -> str | None:
    if theirs.status not in _PAID_STATUSES or theirs.status_code != "200":
        return f"the status answer says {theirs.raw_status!r} (status_code {theirs.status_code})"
    if theirs.fraud_status not in (None, "accept"):
        return f"the status answer's fraud_status is {theirs.fraud_status!r}"
    if theirs.gross_amount != note.gross_amount:
        return f"the status answer's gross_amount is {theirs.gross_amount}"
    return None


@dataclass(frozen=True, slots=True)
class _Refund:
    ref: str
    amount: str
    occurred_at: str
    refund_method: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class _Notification:
    order_id: str
    transaction_id: str
    status: str  # lower-cased transaction_status
    raw_status: str
    status_code: str
    fraud_status: str | None  # lower-cased
    gross_amount: str
    currency: str
    transaction_time: str
    settlement_time: str | None
    payment_type: str | None
    refunds: tuple[_Refund, ...]
    payload: dict[str, Any]


def _read(payload: dict[str, Any]) -> _Notification:
    if not isinstance(payload, dict):
        raise ValidationError("a Midtrans notification is a JSON object")
    currency = parse_currency(payload.get("currency"))
    raw_status = p.ident(payload, "transaction_status", field="transaction_status")
    if len(raw_status) > _STATUS_LENGTH_MAX:
        raise ValidationError("transaction_status is too long", field="transaction_status")
    status = raw_status.lower()
    fraud_status = p.optional_text(payload, "fraud_status", field="fraud_status", length_max=40)
    transaction_id = p.ident(payload, "transaction_id", field="transaction_id")
    order_id = p.ident(payload, "order_id", field="order_id")
    transaction_time = p.jakarta_time(payload, "transaction_time", field="transaction_time")
    settlement_time = None
    if payload.get("settlement_time") not in (None, ""):
        settlement_time = p.jakarta_time(payload, "settlement_time", field="settlement_time")
    refunds: tuple[_Refund, ...] = ()
    if status in _REFUND_STATUSES:
        refunds = _read_refunds(payload, currency, transaction_time)
    return _Notification(
        order_id=order_id,
        transaction_id=transaction_id,
        status=status,
        raw_status=raw_status,
        status_code=p.text(payload, "status_code", field="status_code", length_max=10),
        fraud_status=fraud_status.lower() if fraud_status else None,
        gross_amount=p.amount_string(payload.get("gross_amount"), currency, field="gross_amount"),
        currency=currency,
        transaction_time=transaction_time,
        settlement_time=settlement_time,
        payment_type=p.loose_text(payload, "payment_type"),
        refunds=refunds,
        payload=payload,
    )


def _read_refunds(
    payload: dict[str, Any], currency: str, transaction_time: str
) -> tuple[_Refund, ...]:
    entries = payload.get("refunds")
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise ValidationError("refunds must be a list", field="refunds")
    if len(entries) > _REFUNDS_MAX:
        raise ValidationError(f"more than {_REFUNDS_MAX} refunds", field="refunds")
    refunds = []
    for index, entry in enumerate(entries):
        field = f"refunds[{index}]"
        if not isinstance(entry, dict):
            raise ValidationError(f"{field} must be an object", field=field)
        if entry.get("refund_key") not in (None, ""):
            ref = p.ident(entry, "refund_key", field=f"{field}.refund_key")
        else:
            # refund_key is optional on the request (Midtrans then makes one
            # up); the numeric refund_chargeback_id is the fallback identity
            chargeback_id = entry.get("refund_chargeback_id")
            if isinstance(chargeback_id, str) and chargeback_id:
                ref = p.ident(entry, "refund_chargeback_id", field=f"{field}.refund_chargeback_id")
            else:
                ref = str(p.integer(chargeback_id, field=f"{field}.refund_chargeback_id"))
        amount = p.amount_string(
            entry.get("refund_amount"), currency, field=f"{field}.refund_amount"
        )
        # created_at is in every documented entry; if Midtrans ever leaves it
        # out, the transaction's own time (identical in every re-send) keeps the
        # event byte-identical across notifications rather than refusing money
        occurred_at = transaction_time
        if entry.get("created_at") not in (None, ""):
            occurred_at = p.jakarta_time(entry, "created_at", field=f"{field}.created_at")
        refunds.append(
            _Refund(
                ref=ref,
                amount=amount,
                occurred_at=occurred_at,
                refund_method=p.loose_text(entry, "refund_method"),
                reason=p.loose_text(entry, "reason"),
            )
        )
    return tuple(refunds)


def _paid_at(note: _Notification) -> str:
    # A card is captured, then settled the next day: both notifications must
    # give the same body, and only the settlement has settlement_time, so a
    # card payment happened at transaction_time. Other methods are settled
    # once, when the buyer pays (a VA may be paid days after it was opened),
    # so settlement_time is when the money moved.
    if note.payment_type == "credit_card" or note.status == "capture":
        return note.transaction_time
    return note.settlement_time or note.transaction_time


def _va_bank(payload: dict[str, Any]) -> str | None:
    numbers = payload.get("va_numbers")
    if isinstance(numbers, list) and numbers and isinstance(numbers[0], dict):
        return p.loose_text(numbers[0], "bank")
    if payload.get("permata_va_number"):
        return "permata"
    return None


def _captured(note: _Notification) -> dict[str, Any]:
    payload = note.payload
    # only fields that are the same in a card's capture and its settlement
    # notification: never transaction_status, settlement_time or fraud_status
    meta = p.metadata(
        payment_type=note.payment_type,
        issuer=p.loose_text(payload, "issuer"),
        acquirer=p.loose_text(payload, "acquirer"),
        transaction_type=p.loose_text(payload, "transaction_type"),
        bank=p.loose_text(payload, "bank"),
        card_type=p.loose_text(payload, "card_type"),
        store=p.loose_text(payload, "store"),
        va_bank=_va_bank(payload),
    )
    return {
        "idempotency_key": p.idempotency_key(GATEWAY, "payment", note.transaction_id),
        "type": "payment.captured",
        "occurred_at": _paid_at(note),
        "order_id": note.order_id,
        "amount": note.gross_amount,
        "currency": note.currency,
        "gateway": GATEWAY,
        "gateway_ref": note.transaction_id,
        "metadata": meta,
    }


def _refunded(note: _Notification, refund: _Refund) -> dict[str, Any]:
    # built from the entry alone (plus the transaction's fixed facts): never
    # bank_confirmed_at, the cumulative refund_amount or transaction_status,
    # which change between the re-sends of the same refund
    return {
        "idempotency_key": p.idempotency_key(GATEWAY, "refund", note.transaction_id, refund.ref),
        "type": "refund.issued",
        "occurred_at": refund.occurred_at,
        # matched through the payment it refunds, never by order_id: a refund
        # of a transaction the ledger did not credit (one sent to suspense, or
        # a transaction id it never saw) must not take the seller's money
        "payment_ref": note.transaction_id,
        "amount": refund.amount,
        "currency": note.currency,
        "gateway": GATEWAY,
        # a refund_key is the merchant's, unique within its transaction only
        # (the documented sample "reference1" is anyone's): qualified by the
        # transaction, it names one refund at Midtrans, which is what a
        # refund's uniqueness (refund_exists) is claimed on
        "gateway_ref": f"{note.transaction_id}:{refund.ref}",
        "metadata": p.metadata(
            payment_type=note.payment_type,
            refund_method=refund.refund_method,
            reason=refund.reason,
        ),
    }


def _noted(note: _Notification) -> dict[str, Any]:
    payload = note.payload
    key_parts = [GATEWAY, "status", note.transaction_id, note.status]
    if note.fraud_status:
        key_parts.append(note.fraud_status)
    refund_amount = p.loose_text(payload, "refund_amount")
    if note.status in _REFUND_STATUSES and refund_amount:
        # a refund notification without its list: each cumulative total is
        # noted once, so a later refund is a new note, not a key conflict
        key_parts.append(refund_amount)
    return {
        "idempotency_key": p.idempotency_key(*key_parts),
        "type": "order.status_noted",
        "occurred_at": note.settlement_time or note.transaction_time,
        "order_id": note.order_id,
        "source": GATEWAY,
        "status": note.raw_status,
        "gateway_ref": note.transaction_id,
        "metadata": p.metadata(
            payment_type=note.payment_type,
            fraud_status=note.fraud_status,
            status_code=note.status_code,
            status_message=p.loose_text(payload, "status_message"),
            gross_amount=note.gross_amount,
            currency=note.currency,
            refund_amount=refund_amount,
        ),
    }
