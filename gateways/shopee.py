"""Shopee Open Platform v2 push -> canonical events (CONTRACT section 3).

    verify(raw_body, headers.get(SIGNATURE_HEADER), partner_key=..., callback_url=...)
    payload = parse(raw_body)      # BadRequest / ValidationError
    events = to_events(payload)    # canonical event dicts

``Authorization`` = lowercase hex HMAC-SHA256 keyed with the partner key over
``<registered callback URL>|<raw body>`` (gateways.md 4.1: third-party
sources, consistent with each other; the official page was not read). The URL
must be byte-for-byte the one registered with Shopee.

Only push code 3 (order status) is mapped; it carries no amounts:

- ``CANCELLED`` -> ``order.cancelled`` (channel ``shopee``, ``order_id`` =
  ``ordersn``, ``shop_id`` as a string: the ledger finds the seller by it);
- any other status (``UNPAID``, ``READY_TO_SHIP``, ``PROCESSED``,
  ``SHIPPED``, ``COMPLETED``, ``IN_CANCEL``, ``INVOICE_PENDING``, ...) ->
  ``order.status_noted`` with the raw status;
- every other push code -> no events (acknowledged, no effect).

Keys are ``shopee:status:<shop_id>:<ordersn>:<STATUS>``: each status of an
order is recorded once. ``occurred_at`` is ``data.update_time`` (unix
seconds, UTC). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Final

from gateways import _payload as p
from gateways.errors import SignatureInvalid
from ledger.domain.errors import ValidationError

__all__ = ["SIGNATURE_HEADER", "parse", "to_events", "verify"]

GATEWAY: Final = "shopee"
SIGNATURE_HEADER: Final = "Authorization"
ORDER_STATUS_PUSH: Final[int] = 3

_SIGNATURE_LENGTH_MAX: Final[int] = 256
_SHOP_ID_LENGTH_MAX: Final[int] = 20


def verify(
    raw_body: bytes, authorization: str | None, *, partner_key: str, callback_url: str
) -> None:
    """Checks the ``Authorization`` header against the raw body; ``SignatureInvalid`` if not."""
    if authorization is None or authorization == "":
        raise SignatureInvalid(f"{SIGNATURE_HEADER} header is missing")
    if not partner_key or not callback_url:
        raise SignatureInvalid("no Shopee partner key or callback URL is configured")
    if len(authorization) > _SIGNATURE_LENGTH_MAX:
        raise SignatureInvalid(f"{SIGNATURE_HEADER} does not match")
    message = callback_url.encode("utf-8") + b"|" + bytes(raw_body)
    expected = hmac.new(partner_key.encode("utf-8"), message, hashlib.sha256).hexdigest()
    if not p.secret_equals(authorization.lower(), expected):
        raise SignatureInvalid(f"{SIGNATURE_HEADER} does not match")


def parse(raw_body: bytes) -> dict[str, Any]:
    """Decodes and validates a push; returns it as sent."""
    payload = p.load_object(raw_body)
    _read(payload)
    return payload


def to_events(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Canonical events for one push (see the module docstring for the mapping)."""
    order = _read(payload)
    if order is None:
        return []
    shop_id, ordersn, status, occurred_at, meta = order
    key = p.idempotency_key(GATEWAY, "status", shop_id, ordersn, status)
    if status.upper() == "CANCELLED":
        return [
            {
                "idempotency_key": key,
                "type": "order.cancelled",
                "occurred_at": occurred_at,
                "channel": "shopee",
                "order_id": ordersn,
                "shop_id": shop_id,
                "metadata": meta,
            }
        ]
    return [
        {
            "idempotency_key": key,
            "type": "order.status_noted",
            "occurred_at": occurred_at,
            "channel": "shopee",
            "order_id": ordersn,
            "shop_id": shop_id,
            "source": GATEWAY,
            "status": status,
            "metadata": meta,
        }
    ]


def _shop_id(payload: dict[str, Any]) -> str:
    value = payload.get("shop_id")
    if isinstance(value, str) and value.isascii() and value.isdigit():
        if len(value) > _SHOP_ID_LENGTH_MAX:
            raise ValidationError("shop_id is too long", field="shop_id")
        return value
    return str(p.integer(value, field="shop_id", minimum=1))


def _read(payload: dict[str, Any]) -> tuple[str, str, str, str, dict[str, Any]] | None:
    if not isinstance(payload, dict):
        raise ValidationError("a Shopee push is a JSON object")
    code = p.integer(payload.get("code"), field="code", maximum=1_000_000)
    if code != ORDER_STATUS_PUSH:
        return None  # other pushes have other shapes and no ledger effect
    shop_id = _shop_id(payload)
    data = p.member_object(payload, "data", field="data")
    ordersn = p.ident(data, "ordersn", field="data.ordersn")
    status = p.ident(data, "status", field="data.status")
    if len(status) > 40:
        raise ValidationError("data.status is too long", field="data.status")
    if data.get("update_time") is not None:
        occurred_at = p.unix_time(data.get("update_time"), field="data.update_time")
    else:
        occurred_at = p.unix_time(payload.get("timestamp"), field="timestamp")
    meta = p.metadata(
        push_code=code,
        completed_scenario=p.loose_text(data, "completed_scenario"),
    )
    return shop_id, ordersn, status, occurred_at, meta
