"""Canonical commands: one ``POST /v1/events`` object, validated into a typed value.

Parsing is pure and total: any JSON value either becomes a command or raises
a ``ValidationError`` naming the field. Nothing here touches the database, so
"never a 500 for bad input" is decided here, before any I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final

import orjson

from ledger.domain.errors import ValidationError
from ledger.domain.money import parse_amount, parse_currency

__all__ = [
    "CHANNELS",
    "EVENT_TYPES",
    "GATEWAYS",
    "Command",
    "parse_command",
    "parse_day",
    "parse_identifier",
    "parse_timestamp",
    "reject_nul",
]

CHANNELS: Final[frozenset[str]] = frozenset(
    {
        "qris",
        "shopee",
        "tokopedia",
        "lazada",
        "tiktok",
        "whatsapp",
        "instagram",
        "website",
        "pos",
        "other",
    }
)

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

#: The gateway names a fact may carry: one closed, lower-case list, so that a
#: payment's uniqueness (``payment_exists``) cannot be dodged by spelling its
#: gateway ``Midtrans``. ``cash`` and ``bank_transfer`` are the seller's own.
GATEWAYS: Final[frozenset[str]] = frozenset(
    {
        "midtrans",
        "xendit",
        "doku",
        "duitku",
        "ipaymu",
        "faspay",
        "shopee",
        "tokopedia",
        "lazada",
        "tiktok",
        "blibli",
        "bukalapak",
        "gopay",
        "ovo",
        "dana",
        "shopeepay",
        "linkaja",
        "bank_transfer",
        "cash",
    }
)

_IDENTIFIER = re.compile(r"\A[A-Za-z0-9._:-]{1,64}\Z")
_GATEWAY_REF = re.compile(r"\A[\x21-\x7e]{1,200}\Z")
_STATUS = re.compile(r"\A[A-Za-z0-9._ :-]{1,64}\Z")
_METADATA_BYTES_MAX: Final = 4096
_IDEMPOTENCY_KEY_CHARS_MAX: Final = 200


@dataclass(frozen=True, slots=True)
class Command:
    """One validated canonical event, ready for the aggregates to decide on.

    ``channel`` may be ``None`` for gateway facts that name only an order id;
    the service then matches the order by id alone. ``payment_ref`` lets a
    refund name the payment it refunds instead of the order.
    """

    type: str
    idempotency_key: str
    occurred_at: datetime
    seller_id: str | None = None
    order_id: str | None = None
    channel: str | None = None
    amount_minor: int | None = None
    fee_minor: int = 0
    currency: str = "IDR"
    #: whether the body named a currency (a cancel or failed payment need not,
    #: but one that does must name its order's)
    currency_stated: bool = False
    gateway: str | None = None
    gateway_ref: str | None = None
    payment_ref: str | None = None
    reference: str | None = None
    status: str | None = None
    source: str | None = None
    reason: str | None = None
    shop_id: str | None = None
    metadata: dict[str, Any] | None = None
    #: canonical bytes of the request, for "same key, same body?" decisions
    fingerprint: bytes = field(default=b"", compare=False)
    #: the seller a key bound to one seller may act for: another seller's
    #: order is unknown to it (set by the API from the caller, never parsed)
    seller_scope: str | None = field(default=None, compare=False)


def parse_identifier(value: object, field_name: str) -> str:
    """CONTRACT section 1: 1-64 characters of ``A-Za-z0-9._:-``, and not ``.`` or
    ``..``: an id becomes a URL path segment, where those two mean "here" and
    "up" and would not name the record."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value) or value in (".", ".."):
        raise ValidationError(
            f"{field_name} must be 1-64 characters of A-Z a-z 0-9 . _ : -, not . or ..",
            field=field_name,
        )
    return value


_RFC3339 = re.compile(
    r"\A(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})\Z"
)


_EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST: Final = datetime(2999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


_DAY: Final = re.compile(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")


def parse_day(value: object, field_name: str = "date") -> date:
    """A calendar day as ``YYYY-MM-DD`` only (Python would also take ``20261130``
    and week dates), within the years timestamps may have."""
    if not isinstance(value, str) or not _DAY.match(value):
        raise ValidationError(f"{field_name} must be a YYYY-MM-DD date", field=field_name)
    try:
        day = date.fromisoformat(value)
    except ValueError:
        # value is 10 characters here (checked above): echoing it is bounded
        raise ValidationError(
            f"{field_name} {value!r} is not a calendar day", field=field_name
        ) from None
    if not _EARLIEST.date() <= day <= _LATEST.date():
        raise ValidationError(
            f"{field_name} must lie between 2000-01-01 and 2999-12-31", field=field_name
        )
    return day


def parse_timestamp(value: object, field_name: str = "occurred_at") -> datetime:
    """RFC 3339 with an offset; a naive timestamp is refused, never guessed.

    Only RFC 3339's own form: other ISO 8601 spellings that Python would
    accept (week dates, ``+0800``, no seconds) are refused so that every
    client means the same instant by the same text.
    """
    if not isinstance(value, str):
        raise ValidationError(f"{field_name} must be an RFC 3339 timestamp", field=field_name)
    match = _RFC3339.match(value)
    if match is None:
        if isinstance(value, str) and re.match(r"\A\d{4}-\d{2}-\d{2}[Tt ][\d:.]+\Z", value):
            raise ValidationError(f"{field_name} must carry a UTC offset", field=field_name)
        raise ValidationError(
            f"{field_name} must be an RFC 3339 timestamp with an offset", field=field_name
        )
    day, clock, fraction, offset = match.groups()
    offset = "+00:00" if offset in ("Z", "z") else offset
    micro = f".{fraction[:6]}" if fraction else ""
    try:
        moment = datetime.fromisoformat(f"{day}T{clock}{micro}{offset}")
    except ValueError:
        raise ValidationError(
            f"{field_name} is not a valid date and time", field=field_name
        ) from None
    if not _EARLIEST <= moment <= _LATEST:
        raise ValidationError(
            f"{field_name} must lie between 2000-01-01 and 2999-12-31", field=field_name
        )
    return moment


def _text(
    raw: dict[str, Any], name: str, pattern: re.Pattern[str], *, required: bool
) -> str | None:
    value = raw.get(name)
    if value is None:
        if required:
            raise ValidationError(f"{name} is required", field=name)
        return None
    if not isinstance(value, str) or not pattern.match(value):
        raise ValidationError(f"{name} is malformed", field=name)
    return value


def _channel(raw: dict[str, Any], *, required: bool) -> str | None:
    value = raw.get("channel")
    if value is None and not required:
        return None
    if not isinstance(value, str) or value not in CHANNELS:
        raise ValidationError(
            f"channel must be one of {', '.join(sorted(CHANNELS))}", field="channel"
        )
    return str(value)


def _gateway(raw: dict[str, Any], *, required: bool) -> str | None:
    value = raw.get("gateway")
    if value is None and not required:
        return None
    if not isinstance(value, str) or value not in GATEWAYS:
        raise ValidationError(
            f"gateway must be one of {', '.join(sorted(GATEWAYS))} (lower case)", field="gateway"
        )
    return value


def _require_order(raw: dict[str, Any], *, channel_required: bool = True) -> tuple[str, str | None]:
    if "order_id" not in raw:
        raise ValidationError("order_id is required", field="order_id")
    return parse_identifier(raw["order_id"], "order_id"), _channel(raw, required=channel_required)


def _metadata(raw: dict[str, Any]) -> dict[str, Any] | None:
    value = raw.get("metadata")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError("metadata must be an object", field="metadata")
    try:
        size = len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        raise ValidationError("metadata is not plain JSON", field="metadata") from None
    if size > _METADATA_BYTES_MAX:
        raise ValidationError("metadata is larger than 4 KiB", field="metadata")
    return value


def reject_nul(value: object, field_name: str | None = None, *, depth: int = 0) -> None:
    """PostgreSQL text cannot hold U+0000: refuse it anywhere in a body, up front.

    Deeply nested values are refused too (a bound on everything we accept).
    """
    if depth > 32:
        raise ValidationError("the body is nested too deeply", field=field_name)
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationError("text must not contain NUL characters", field=field_name)
    elif isinstance(value, dict):
        for key, item in value.items():
            reject_nul(key, field_name or key, depth=depth + 1)
            reject_nul(item, field_name or key, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            reject_nul(item, field_name, depth=depth + 1)


def parse_command(raw: object, *, gateway_facts: bool = False) -> Command:
    """Validates one canonical event object.

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
    if not isinstance(key, str) or not 1 <= len(key) <= _IDEMPOTENCY_KEY_CHARS_MAX:
        raise ValidationError("idempotency_key must be 1-200 characters", field="idempotency_key")
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in EVENT_TYPES:
        raise ValidationError(f"type must be one of {', '.join(sorted(EVENT_TYPES))}", field="type")
    if "occurred_at" not in raw:
        raise ValidationError("occurred_at is required", field="occurred_at")
    occurred_at = parse_timestamp(raw["occurred_at"])
    currency = parse_currency(raw.get("currency"))
    common: dict[str, Any] = {
        "type": kind,
        "idempotency_key": key,
        "occurred_at": occurred_at,
        "currency": currency,
        "currency_stated": raw.get("currency") is not None,
        "metadata": _metadata(raw),
        "fingerprint": fingerprint,
    }
    relaxed = gateway_facts
    order_id: str | None
    amount: int | None
    if kind == "order.placed":
        order_id, channel = _require_order(raw)
        return Command(
            **common,
            seller_id=parse_identifier(raw.get("seller_id"), "seller_id"),
            order_id=order_id,
            channel=channel,
            amount_minor=parse_amount(_present(raw, "amount"), currency),
        )
    # a refund may name the payment it returns (CONTRACT 2); a gateway's fact
    # may also be matched by it alone, without an order id
    payment_ref = (
        _text(raw, "payment_ref", _GATEWAY_REF, required=False)
        if relaxed or kind == "refund.issued"
        else None
    )
    if kind in ("order.cancelled", "order.status_noted"):
        if payment_ref is not None and "order_id" not in raw:
            order_id, channel = None, _channel(raw, required=False)
        else:
            order_id, channel = _require_order(raw, channel_required=not relaxed)
        status: str | None = None
        source: str | None = None
        if kind == "order.status_noted":
            status = _text(raw, "status", _STATUS, required=True)
            source = _text(raw, "source", _STATUS, required=False)
        return Command(
            **common,
            order_id=order_id,
            channel=channel,
            status=status,
            source=source,
            shop_id=_text(raw, "shop_id", _IDENTIFIER, required=False),
            payment_ref=payment_ref,
            gateway=_gateway(raw, required=False),
            gateway_ref=_text(raw, "gateway_ref", _GATEWAY_REF, required=False),
        )
    if kind in ("payment.captured", "payment.failed", "refund.issued"):
        by_payment = kind == "refund.issued" and payment_ref is not None
        if relaxed and by_payment and "order_id" not in raw:
            order_id, channel = None, _channel(raw, required=False)
        else:
            order_id, channel = _require_order(raw, channel_required=not relaxed)
        amount = None
        fee = 0
        if kind != "payment.failed":
            amount = parse_amount(_present(raw, "amount"), currency)
        if kind == "payment.captured" and raw.get("fee") is not None:
            fee = parse_amount(raw["fee"], currency, field="fee", allow_zero=True)
            if amount is not None and fee > amount:
                raise ValidationError("fee must not exceed the amount", field="fee")
        return Command(
            **common,
            order_id=order_id,
            channel=channel,
            amount_minor=amount,
            fee_minor=fee,
            gateway=_gateway(raw, required=True),
            gateway_ref=_text(raw, "gateway_ref", _GATEWAY_REF, required=True),
            payment_ref=payment_ref,
            reason=_text(raw, "reason", _STATUS, required=False),
        )
    # payout.sent
    return Command(
        **common,
        seller_id=parse_identifier(raw.get("seller_id"), "seller_id"),
        amount_minor=parse_amount(_present(raw, "amount"), currency),
        reference=_text(raw, "reference", _GATEWAY_REF, required=True),
    )


def _present(raw: dict[str, Any], name: str) -> object:
    if raw.get(name) is None:
        raise ValidationError(f"{name} is required", field=name)
    return raw[name]
