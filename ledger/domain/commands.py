"""Canonical commands: one ``POST /v1/events`` object, validated into a typed value.

Parsing is pure and total: any JSON value either becomes a command or raises
a ``ValidationError`` naming the field. Nothing here touches the database, so
"never a 500 for bad input" is decided here, before any I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Final

import orjson

from ledger.domain.errors import ValidationError
from ledger.domain.fields import (
    CHANNELS,
    GATEWAY_REF,
    GATEWAYS,
    IDENTIFIER,
    STATUS,
    parse_day,
    parse_identifier,
    parse_timestamp,
    read_channel,
    read_gateway,
    read_metadata,
    read_text,
    reject_nul,
)
from ledger.domain.money import parse_amount, parse_currency

__all__ = [
    "CHANNELS",
    "EVENT_TYPES",
    "GATEWAYS",
    "CancelOrder",
    "CapturePayment",
    "Command",
    "FailPayment",
    "IssueRefund",
    "NoteOrderStatus",
    "OrderFact",
    "PlaceOrder",
    "SendPayout",
    "UnreadableFact",
    "amount_of",
    "parse_command",
    "parse_day",
    "parse_identifier",
    "parse_timestamp",
    "reject_nul",
]

#: Types a client may post. Internal types (seller.*, suspense.*, ...) are
#: recorded by their own endpoints, never through ``POST /v1/events``.
EVENT_TYPES: Final[frozenset[str]] = frozenset(
    {
        "order.placed",
        "order.cancelled",
        "order.status_noted",
        "payment.captured",
        "payment.failed",
        "refund.issued",
        "payout.sent",
    }
)

IDEMPOTENCY_KEY_CHARS_MAX: Final = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """What every validated canonical event carries; one subclass per ``type``.

    ``type`` is the subclass's, never a field: a ``PlaceOrder`` cannot claim
    to be a payout, and each type has only the fields it may hold.
    """

    type: ClassVar[str]
    idempotency_key: str
    occurred_at: datetime
    currency: str = "IDR"
    #: whether the body named a currency (a cancel or failed payment need not,
    #: but one that does must name its order's)
    currency_stated: bool = False
    metadata: dict[str, Any] | None = None
    #: canonical bytes of the request, for "same key, same body?" decisions
    fingerprint: bytes = field(default=b"", compare=False)
    #: the seller a key bound to one seller may act for: another seller's
    #: order is unknown to it (set by the API from the caller, never parsed)
    seller_scope: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaceOrder(Command):
    type: ClassVar[str] = "order.placed"
    seller_id: str
    order_id: str
    channel: str
    amount_minor: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SendPayout(Command):
    type: ClassVar[str] = "payout.sent"
    seller_id: str
    amount_minor: int
    reference: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderFact(Command):
    """A fact about an order already placed.

    ``channel`` may be ``None`` for gateway facts that name only an order id,
    and ``order_id`` too when the fact names the payment it concerns
    (``payment_ref``): ``Ledger.resolve_order`` fills them in before the
    fact is decided.
    """

    order_id: str | None
    channel: str | None
    payment_ref: str | None = None
    gateway: str | None = None
    gateway_ref: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelOrder(OrderFact):
    type: ClassVar[str] = "order.cancelled"
    shop_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NoteOrderStatus(OrderFact):
    type: ClassVar[str] = "order.status_noted"
    status: str
    source: str | None = None
    shop_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CapturePayment(OrderFact):
    type: ClassVar[str] = "payment.captured"
    amount_minor: int
    fee_minor: int = 0
    gateway: str
    gateway_ref: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FailPayment(OrderFact):
    type: ClassVar[str] = "payment.failed"
    gateway: str
    gateway_ref: str
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class IssueRefund(OrderFact):
    type: ClassVar[str] = "refund.issued"
    amount_minor: int
    gateway: str
    gateway_ref: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UnreadableFact(Command):
    """What is kept of an authenticated gateway fact that ``parse_command``
    refused (an order id over 64 characters): enough to hold it in suspense
    for an operator, never decided."""

    type: ClassVar[str] = "unreadable"
    amount_minor: int | None = None


def amount_of(command: Command) -> int | None:
    """The amount a command names, if its type has one (a suspense entry shows it)."""
    if isinstance(command, PlaceOrder | SendPayout | CapturePayment | IssueRefund | UnreadableFact):
        return command.amount_minor
    return None


def _require_order(raw: dict[str, Any], *, channel_required: bool = True) -> tuple[str, str | None]:
    if "order_id" not in raw:
        raise ValidationError("order_id is required", field="order_id")
    return parse_identifier(raw["order_id"], "order_id"), read_channel(
        raw, required=channel_required
    )


def parse_command(raw: object, *, gateway_facts: bool = False) -> Command:
    """Validates one canonical event object into the command of its type.

    ``gateway_facts`` admits the forms only gateway adapters produce: an
    order matched by id alone (no channel) and a refund matched by its payment.
    """
    if not isinstance(raw, dict):
        raise ValidationError("each event must be a JSON object")
    try:
        fingerprint = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        raise ValidationError("the event is nested too deeply or is not plain JSON") from None
    if b"\\u0000" in fingerprint:
        # orjson writes U+0000 as this escape: only then walk the object to name the field
        reject_nul(raw)
    key = raw.get("idempotency_key")
    if not isinstance(key, str) or not 1 <= len(key) <= IDEMPOTENCY_KEY_CHARS_MAX:
        raise ValidationError("idempotency_key must be 1-200 characters", field="idempotency_key")
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in EVENT_TYPES:
        raise ValidationError(f"type must be one of {', '.join(sorted(EVENT_TYPES))}", field="type")
    if "occurred_at" not in raw:
        raise ValidationError("occurred_at is required", field="occurred_at")
    occurred_at = parse_timestamp(raw["occurred_at"])
    currency = parse_currency(raw.get("currency"))
    common: dict[str, Any] = {
        "idempotency_key": key,
        "occurred_at": occurred_at,
        "currency": currency,
        "currency_stated": raw.get("currency") is not None,
        "metadata": read_metadata(raw),
        "fingerprint": fingerprint,
    }
    return _PARSERS[kind](raw, common, gateway_facts)


# Each parser reads the fields of its type in a fixed order: with several
# bad fields, the first one named in the answer stays the same.


def _parse_place_order(raw: dict[str, Any], common: dict[str, Any], relaxed: bool) -> Command:
    order_id, channel = _require_order(raw)
    assert channel is not None  # required above
    return PlaceOrder(
        **common,
        seller_id=parse_identifier(raw.get("seller_id"), "seller_id"),
        order_id=order_id,
        channel=channel,
        amount_minor=parse_amount(_present(raw, "amount"), common["currency"]),
    )


def _payment_ref(raw: dict[str, Any], kind: str, relaxed: bool) -> str | None:
    """A refund may name the payment it returns (CONTRACT 2); a gateway's fact
    may also be matched by it alone, without an order id."""
    if relaxed or kind == "refund.issued":
        return read_text(raw, "payment_ref", GATEWAY_REF, required=False)
    return None


def _order_or_payment(
    raw: dict[str, Any], payment_ref: str | None, relaxed: bool
) -> tuple[str | None, str | None]:
    """``(order_id, channel)``, or ``(None, channel)`` for a fact found by its payment."""
    if payment_ref is not None and "order_id" not in raw:
        return None, read_channel(raw, required=False)
    return _require_order(raw, channel_required=not relaxed)


def _parse_cancel(raw: dict[str, Any], common: dict[str, Any], relaxed: bool) -> Command:
    payment_ref = _payment_ref(raw, "order.cancelled", relaxed)
    order_id, channel = _order_or_payment(raw, payment_ref, relaxed)
    return CancelOrder(
        **common,
        order_id=order_id,
        channel=channel,
        shop_id=read_text(raw, "shop_id", IDENTIFIER, required=False),
        payment_ref=payment_ref,
        gateway=read_gateway(raw, required=False),
        gateway_ref=read_text(raw, "gateway_ref", GATEWAY_REF, required=False),
    )


def _parse_status_note(raw: dict[str, Any], common: dict[str, Any], relaxed: bool) -> Command:
    payment_ref = _payment_ref(raw, "order.status_noted", relaxed)
    order_id, channel = _order_or_payment(raw, payment_ref, relaxed)
    status = read_text(raw, "status", STATUS, required=True)
    assert status is not None  # required above
    source = read_text(raw, "source", STATUS, required=False)
    return NoteOrderStatus(
        **common,
        order_id=order_id,
        channel=channel,
        status=status,
        source=source,
        shop_id=read_text(raw, "shop_id", IDENTIFIER, required=False),
        payment_ref=payment_ref,
        gateway=read_gateway(raw, required=False),
        gateway_ref=read_text(raw, "gateway_ref", GATEWAY_REF, required=False),
    )


def _gateway_fact(raw: dict[str, Any]) -> dict[str, Any]:
    """The gateway and its reference, both required, and a well-formed ``reason``
    (checked on every payment fact; kept by a failed payment only)."""
    gateway = read_gateway(raw, required=True)
    gateway_ref = read_text(raw, "gateway_ref", GATEWAY_REF, required=True)
    reason = read_text(raw, "reason", STATUS, required=False)
    return {"gateway": gateway, "gateway_ref": gateway_ref, "reason": reason}


def _parse_capture(raw: dict[str, Any], common: dict[str, Any], relaxed: bool) -> Command:
    payment_ref = _payment_ref(raw, "payment.captured", relaxed)
    order_id, channel = _require_order(raw, channel_required=not relaxed)
    currency = common["currency"]
    amount = parse_amount(_present(raw, "amount"), currency)
    fee = 0
    if raw.get("fee") is not None:
        fee = parse_amount(raw["fee"], currency, field="fee", allow_zero=True)
        if fee > amount:
            raise ValidationError("fee must not exceed the amount", field="fee")
    fact = _gateway_fact(raw)
    return CapturePayment(
        **common,
        order_id=order_id,
        channel=channel,
        amount_minor=amount,
        fee_minor=fee,
        gateway=fact["gateway"],
        gateway_ref=fact["gateway_ref"],
        payment_ref=payment_ref,
    )


def _parse_failure(raw: dict[str, Any], common: dict[str, Any], relaxed: bool) -> Command:
    payment_ref = _payment_ref(raw, "payment.failed", relaxed)
    order_id, channel = _require_order(raw, channel_required=not relaxed)
    fact = _gateway_fact(raw)
    return FailPayment(
        **common, order_id=order_id, channel=channel, payment_ref=payment_ref, **fact
    )


def _parse_refund(raw: dict[str, Any], common: dict[str, Any], relaxed: bool) -> Command:
    payment_ref = _payment_ref(raw, "refund.issued", relaxed)
    if relaxed and payment_ref is not None and "order_id" not in raw:
        order_id, channel = None, read_channel(raw, required=False)
    else:
        order_id, channel = _require_order(raw, channel_required=not relaxed)
    amount = parse_amount(_present(raw, "amount"), common["currency"])
    fact = _gateway_fact(raw)
    return IssueRefund(
        **common,
        order_id=order_id,
        channel=channel,
        amount_minor=amount,
        gateway=fact["gateway"],
        gateway_ref=fact["gateway_ref"],
        payment_ref=payment_ref,
    )


def _parse_payout(raw: dict[str, Any], common: dict[str, Any], relaxed: bool) -> Command:
    # a gateway's form is checked for a well-formed payment_ref, as on every
    # other fact; a payout has no use for one
    _payment_ref(raw, "payout.sent", relaxed)
    seller_id = parse_identifier(raw.get("seller_id"), "seller_id")
    amount = parse_amount(_present(raw, "amount"), common["currency"])
    reference = read_text(raw, "reference", GATEWAY_REF, required=True)
    assert reference is not None  # required above
    return SendPayout(**common, seller_id=seller_id, amount_minor=amount, reference=reference)


_PARSERS: Final[dict[str, Callable[[dict[str, Any], dict[str, Any], bool], Command]]] = {
    "order.placed": _parse_place_order,
    "order.cancelled": _parse_cancel,
    "order.status_noted": _parse_status_note,
    "payment.captured": _parse_capture,
    "payment.failed": _parse_failure,
    "refund.issued": _parse_refund,
    "payout.sent": _parse_payout,
}
assert set(_PARSERS) == EVENT_TYPES


def _present(raw: dict[str, Any], name: str) -> object:
    if raw.get(name) is None:
        raise ValidationError(f"{name} is required", field=name)
    return raw[name]
