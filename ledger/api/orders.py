"""``GET /v1/orders/{channel}/{order_id}``: an order's state and its history."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from ledger.api.auth import principal, require
from ledger.api.context import LEDGER
from ledger.api.responses import json_response
from ledger.api.spec import CHANNEL, ID, MONEY, Param, obj, ref, spec
from ledger.domain.commands import CHANNELS, parse_identifier
from ledger.domain.errors import NotFound
from ledger.domain.money import format_minor
from ledger.domain.orders import ORDER_STATUSES, Order, order_status, order_stream_id

__all__ = ["get_order"]

#: Every field ``get_order`` answers.
ORDER: Final = obj(
    {
        "channel": CHANNEL,
        "order_id": ID,
        "seller_id": ID,
        "stream_id": {"type": "string", "format": "uuid"},
        "version": {"type": "integer", "description": "the order stream's last version"},
        "status": {
            "enum": list(ORDER_STATUSES),
            "description": "refunded: captured, then all of it refunded",
        },
        "currency": {"type": "string"},
        "amount": {**MONEY, "description": "the order's amount"},
        "captured": {**MONEY, "description": "every capture together"},
        "refunded": {**MONEY, "description": "every refund together"},
        "fees": {**MONEY, "description": "every fee together"},
        "history": {
            "type": "array",
            "items": ref("Message"),
            "description": "the order's events, oldest first",
        },
    }
)


@spec(
    "An order's state and history",
    {200: ORDER},
    errors=(404, 422),
    params=(
        Param("channel", {"type": "string"}, "path", True, f"one of {', '.join(sorted(CHANNELS))}"),
        Param("order_id", ID, "path", True),
    ),
    description="Another seller's order answers 404, as a missing one does.",
)
@require("admin", "auditor", "seller")  # a gateway key may post, not read (CONTRACT 5)
async def get_order(request: web.Request) -> web.Response:
    channel = request.match_info["channel"]
    order_id = parse_identifier(request.match_info["order_id"], "order_id")
    order, history = await request.app[LEDGER].read_stream(order_stream_id(channel, order_id))
    # another seller's order is answered as a missing one: a seller key must
    # not learn which order ids other sellers have
    if not history or not principal(request).may_see_seller(history[0]["data"]["seller_id"]):
        # channel comes from the path unchecked: quoted only when it is one we know
        on = f" on channel {channel}" if channel in CHANNELS else ""
        raise NotFound(f"no order {order_id}{on}")
    assert isinstance(order, Order)
    currency = order.currency
    status = order_status(
        order.amount_minor, order.captured_minor, order.refunded_minor, cancelled=order.cancelled
    )
    return json_response(
        {
            "channel": channel,
            "order_id": order_id,
            "seller_id": order.seller_id,
            "stream_id": str(order.id),
            "version": order.version,
            "status": status,
            "currency": currency,
            "amount": format_minor(order.amount_minor, currency),
            "captured": format_minor(order.captured_minor, currency),
            "refunded": format_minor(order.refunded_minor, currency),
            "fees": format_minor(order.fees_minor, currency),
            "history": history,
        }
    )
