"""A Midtrans notification read (:class:`Notification`), and the canonical events it gives.

Shared by the adapter (``gateways.midtrans``, which documents the mapping)
and the confirmation against Midtrans' status answer
(``gateways.midtrans_confirm``), which reads an answer with the same
:func:`read` because it has the notification's shape. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from gateways import _payload as p
from ledger.domain.errors import ValidationError
from ledger.domain.money import parse_currency

__all__ = [
    "CAPTURE_STATUSES",
    "GATEWAY",
    "REFUND_STATUSES",
    "Notification",
    "Refund",
    "captured",
    "events_of",
    "is_capture",
    "is_refund",
    "noted",
    "read",
    "read_refunds",
    "refunded",
]

#: The name every Midtrans fact carries (``gateway``) and its keys start with.
GATEWAY: Final = "midtrans"

CAPTURE_STATUSES: Final = frozenset({"capture", "settlement"})
REFUND_STATUSES: Final = frozenset({"refund", "partial_refund"})
#: One notification cannot carry more refunds than one batch of events holds.
_REFUNDS_MAX: Final[int] = 1000
_STATUS_LENGTH_MAX: Final[int] = 40


def events_of(note: Notification) -> list[dict[str, Any]]:
    """Canonical events for one notification (``gateways.midtrans`` documents the mapping)."""
    if is_capture(note):
        return [captured(note)]
    if is_refund(note):
        events: list[dict[str, Any]] = []
        for refund in note.refunds:
            event = refunded(note, refund)
            if event not in events:  # the same entry twice in one list is one refund
                events.append(event)
        return events
    return [noted(note)]


def is_capture(note: Notification) -> bool:
    return (
        note.status in CAPTURE_STATUSES
        and note.fraud_status in (None, "accept")
        and note.status_code == "200"
    )


def is_refund(note: Notification) -> bool:
    return note.status in REFUND_STATUSES and bool(note.refunds) and note.status_code == "200"


@dataclass(frozen=True, slots=True)
class Refund:
    ref: str
    amount: str
    occurred_at: str
    refund_method: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class Notification:
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
    refunds: tuple[Refund, ...]
    payload: dict[str, Any]


def read(payload: dict[str, Any]) -> Notification:
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
    refunds: tuple[Refund, ...] = ()
    if status in REFUND_STATUSES:
        refunds = read_refunds(payload, currency, transaction_time)
    return Notification(
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


def read_refunds(
    payload: dict[str, Any], currency: str, transaction_time: str
) -> tuple[Refund, ...]:
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
            Refund(
                ref=ref,
                amount=amount,
                occurred_at=occurred_at,
                refund_method=p.loose_text(entry, "refund_method"),
                reason=p.loose_text(entry, "reason"),
            )
        )
    return tuple(refunds)


def _paid_at(note: Notification) -> str:
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


def captured(note: Notification) -> dict[str, Any]:
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


def refunded(note: Notification, refund: Refund) -> dict[str, Any]:
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


def noted(note: Notification) -> dict[str, Any]:
    payload = note.payload
    key_parts = [GATEWAY, "status", note.transaction_id, note.status]
    if note.fraud_status:
        key_parts.append(note.fraud_status)
    refund_amount = p.loose_text(payload, "refund_amount")
    if note.status in REFUND_STATUSES and refund_amount:
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
