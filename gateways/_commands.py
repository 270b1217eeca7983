"""Every construction and read of a ledger ``Command`` in gateways/, in one place.

``gateways.intake`` and ``gateways.suspense`` pass commands to the ``Ledger``
and otherwise only go through these functions, so a change to the shape of
``ledger.domain.commands`` touches this module alone.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from ledger.domain.commands import (
    CancelOrder,
    Command,
    NoteOrderStatus,
    UnreadableFact,
    parse_command,
)
from ledger.domain.errors import ValidationError
from ledger.domain.money import parse_amount, parse_currency

__all__ = [
    "command_onto",
    "fallback_command",
    "gateway_command",
    "is_cancellation",
    "key_of",
    "shop_of",
]


def gateway_command(raw: dict[str, Any]) -> Command:
    """A canonical event as the ledger's command (``ValidationError`` if it cannot be one)."""
    return parse_command(raw, gateway_facts=True)


def fallback_command(raw: dict[str, Any], cause: ValidationError) -> Command:
    """The few fields ``record_suspense`` needs, read from an event ``parse_command`` refused.

    The adapters always produce a valid key, time, currency and amount; if one
    of those is broken too, the notification is refused with the first error.
    """
    from ledger.domain.commands import parse_timestamp

    try:
        currency = parse_currency(raw.get("currency"))
        amount = raw.get("amount")
        return UnreadableFact(
            idempotency_key=str(raw["idempotency_key"]),
            occurred_at=parse_timestamp(raw.get("occurred_at")),
            amount_minor=None if amount is None else parse_amount(amount, currency),
            currency=currency,
            fingerprint=orjson.dumps(raw, option=orjson.OPT_SORT_KEYS),
        )
    except ValidationError:
        raise cause from None


def command_onto(stored: dict[str, Any], channel: str, order_id: str) -> Command:
    """The stored gateway fact, aimed at ``(channel, order_id)`` chosen by an operator.

    ``payment_ref`` and ``shop_id`` were the gateway's way of finding the
    order; the operator names it instead. The fingerprint stays the gateway
    body's, so a later redelivery of the notification is an exact duplicate.
    """
    fields = {k: v for k, v in stored.items() if k not in ("payment_ref", "shop_id")}
    fields["channel"] = channel
    fields["order_id"] = order_id
    command = gateway_command(fields)
    return replace(command, fingerprint=orjson.dumps(stored, option=orjson.OPT_SORT_KEYS))


def shop_of(command: Command) -> tuple[str, str] | None:
    """``(channel, shop_id)`` of a fact that names a marketplace shop (Shopee's ``shop_id``)."""
    if not isinstance(command, CancelOrder | NoteOrderStatus) or command.shop_id is None:
        return None  # only these types name a shop
    return command.channel or "shopee", command.shop_id


def is_cancellation(command: Command) -> bool:
    return command.type == "order.cancelled"


def key_of(command: Command) -> str:
    return command.idempotency_key
