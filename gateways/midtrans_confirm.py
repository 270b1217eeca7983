"""Midtrans' money facts checked against its Get Status answer (CONTRACT section 3).

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

Pure: no I/O (the call itself is ``gateways.midtrans_api``'s, and
``gateways.intake`` decides what becomes of each result). ``gateways.midtrans``
re-exports everything public here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Final

from gateways import _payload as p
from gateways._midtrans_note import (
    CAPTURE_STATUSES,
    REFUND_STATUSES,
    Notification,
    captured,
    events_of,
    is_capture,
    is_refund,
    noted,
    read,
    read_refunds,
    refunded,
)
from ledger.domain import balances
from ledger.domain.errors import ValidationError

__all__ = ["Checked", "confirm", "moves_money", "unconfirmed"]

#: statuses of a transaction that was paid: only a settled payment can be
#: refunded or charged back (Midtrans' Transaction Status Cycle)
_PAID_STATUSES: Final = CAPTURE_STATUSES | REFUND_STATUSES | {"chargeback", "partial_chargeback"}
_MONEY_TYPES: Final = frozenset(balances.GATEWAY_MONEY_TYPES)


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
    note = read(payload)
    try:
        theirs = _read_answer(answer)
    except ValidationError as error:
        return unconfirmed(payload, f"the status answer is unreadable: {error}")
    why = _another_transaction(note, theirs)
    if is_capture(note):
        why = why or _unpaid(note, theirs)
        if why is not None:
            return [Checked(captured(note), why)]
        return [Checked(captured(theirs))]
    if not is_refund(note):
        return [Checked(noted(note))]
    listed = {refund.ref: refund for refund in theirs.refunds}
    checked: dict[str, Checked] = {}
    for refund in note.refunds:
        claim = refunded(note, refund)
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
            result = Checked(refunded(theirs, found))
        # one result per key: a list naming one refund twice (once forged)
        # must not both credit it and suspend it
        if key not in checked or (checked[key].unconfirmed and not result.unconfirmed):
            checked[key] = result
    return list(checked.values())


def unconfirmed(payload: dict[str, Any], why: str) -> list[Checked]:
    """The notification's events when no status answer can be had: money ones held, with ``why``."""
    return [
        Checked(event, why if event["type"] in _MONEY_TYPES else None)
        for event in events_of(read(payload))
    ]


def _read_answer(answer: object) -> Notification:
    if not isinstance(answer, dict):
        raise ValidationError("a status answer is a JSON object")
    code = answer.get("status_code")
    if code != "200" and not answer.get("transaction_id"):
        # "Transaction doesn't exist." comes back as HTTP 200 with status_code 404
        message = p.loose_text(answer, "status_message") or ""
        raise ValidationError(f"status_code {code!r}: {message[:100]}")
    note = read(answer)
    # the answer lists refunds whatever the status it reports now (a refund
    # may be followed by a chargeback); the notification's list is checked
    # against it entry by entry
    return replace(note, refunds=read_refunds(answer, note.currency, note.transaction_time))


def _another_transaction(note: Notification, theirs: Notification) -> str | None:
    if theirs.order_id != note.order_id:
        return f"the status answer is about order {theirs.order_id!r}"
    if theirs.transaction_id != note.transaction_id:
        return f"the status answer names transaction {theirs.transaction_id!r}"
    if theirs.currency != note.currency:
        return f"the status answer is in {theirs.currency}, not {note.currency}"
    return None


def _unpaid(note: Notification, theirs: Notification) -> str | None:
    if theirs.status not in _PAID_STATUSES or theirs.status_code != "200":
        return f"the status answer says {theirs.raw_status!r} (status_code {theirs.status_code})"
    if theirs.fraud_status not in (None, "accept"):
        return f"the status answer's fraud_status is {theirs.fraud_status!r}"
    if theirs.gross_amount != note.gross_amount:
        return f"the status answer's gross_amount is {theirs.gross_amount}"
    return None
