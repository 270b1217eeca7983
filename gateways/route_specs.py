"""What the gateway routes promise: the specs their OpenAPI entries are built from.

Kept beside ``gateways/routes.py`` (which applies them) so that the handlers
stay thin; the limits are the same constants the handlers check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

from ledger.api.responses import POSITION_MAX
from ledger.api.spec import (
    CHANNEL,
    ID,
    MONEY,
    POSITION,
    TIME,
    Param,
    Reply,
    nullable,
    obj,
    recorded_and,
    spec,
)

H = TypeVar("H")

__all__ = ["LIST_SUSPENSE", "RESOLVE_SUSPENSE", "SUSPENSE_PAGE_MAX", "webhook"]

#: ``GET /v1/suspense`` answers at most this many open entries (oldest first).
SUSPENSE_PAGE_MAX: Final[int] = 1000

_RESULT: Final = obj(
    {
        "idempotency_key": nullable({"type": "string"}),
        "type": nullable({"type": "string"}),
        "status": {"enum": ["recorded", "duplicate", "suspense", "ignored"]},
        "position": POSITION,
        "suspense_id": {"type": "string", "format": "uuid"},
        "reason": {"type": "string", "description": "suspense or ignored: why"},
        "conflict": {"const": True, "description": "the key holds another body; kept the first"},
        "duplicate": {"const": True, "description": "suspense: the entry existed already"},
    },
    optional=("idempotency_key", "type", "position", "suspense_id", "reason", "conflict",
              "duplicate"),
)  # fmt: skip
_ACK: Final = Reply(
    obj(
        {
            "status": {"const": "ok"},
            "gateway": {"type": "string"},
            "results": {"type": "array", "items": _RESULT, "minItems": 1},
        }
    ),
    "read: one result per canonical fact (recorded, duplicate, suspense or ignored)",
)
_WEBHOOK_ERRORS: Final = (401, 422, 503)


def webhook(summary: str) -> Callable[[H], H]:
    return spec(
        summary,
        {200: _ACK},
        errors=_WEBHOOK_ERRORS,
        body={"type": "object", "description": "the gateway's own notification body"},
        description="Public: authenticated by the gateway's signature or token, not a key."
        " 401 gateway_not_configured while the gateway's secret is not set.",
    )


_SUSPENSE_ENTRY: Final = obj(
    {
        "id": {"type": "string", "format": "uuid"},
        "gateway": {"type": "string"},
        "reason": {"type": "string"},
        "event": {"type": "object", "description": "the canonical fact, as the gateway said it"},
        "amount": MONEY,
        "currency": {"type": "string"},
        "position": POSITION,
        "recorded_at": TIME,
    }
)
_RESOLVED_ONTO: Final = {"suspense_id": {"type": "string"}, "channel": CHANNEL, "order_id": ID}
_RESOLVED: Final = {
    "anyOf": [
        recorded_and(_RESOLVED_ONTO),
        obj({"status": {"const": "duplicate"}, **_RESOLVED_ONTO}),
    ]
}


LIST_SUSPENSE: Final = spec(
    "Gateway money that could not be applied (open entries, in log order)",
    {
        200: obj(
            {
                "suspense": {"type": "array", "items": _SUSPENSE_ENTRY},
                "next_after": nullable(POSITION),
            }
        )
    },
    errors=(422,),
    params=(
        Param("after", {"type": "integer", "minimum": 0, "maximum": POSITION_MAX, "default": 0}),
        Param(
            "limit",
            {
                "type": "integer",
                "minimum": 1,
                "maximum": SUSPENSE_PAGE_MAX,
                "default": SUSPENSE_PAGE_MAX,
            },
        ),
    ),
)


RESOLVE_SUSPENSE: Final = spec(
    "Apply a suspense entry to an order",
    {
        201: Reply(_RESOLVED, "applied; the entry is closed"),
        200: Reply(_RESOLVED, "already resolved onto this order (safe to retry)"),
    },
    errors=(404, 409, 422),
    params=(Param("suspense_id", {"type": "string", "format": "uuid"}, "path", True),),
    body=obj({"channel": CHANNEL, "order_id": ID}),
    description="422 suspense_closed when it was resolved onto another order; 422 for a"
    " rule the fact breaks on that order (the entry stays open).",
)
