"""``/v1/events``: record canonical events (one, or a batch), read the global log."""

from __future__ import annotations

import logging
from typing import Any, Final

from aiohttp import web

from ledger.api.auth import Principal, principal, require
from ledger.api.context import LEDGER, READ_STORE, replica_fields
from ledger.api.context import METRICS as _METRICS
from ledger.api.responses import POSITION_MAX, bounded_error, int_param, json_response, read_json
from ledger.api.spec import POSITION, REPLICA_LAG_S, Param, Reply, nullable, obj, ref, spec
from ledger.app.ledger import Ledger
from ledger.domain.commands import Command, parse_command
from ledger.domain.errors import BadRequest, LedgerError, ValidationError

__all__ = ["BATCH_EVENTS_MAX", "LOG_PAGE_MAX", "get_events", "post_events"]

log = logging.getLogger("omniledger.http")

BATCH_EVENTS_MAX: Final = 1000
LOG_PAGE_MAX: Final = 1000
LOG_PAGE_DEFAULT: Final = 100

_BATCH_RESULT: Final = {
    "anyOf": [
        ref("Recorded"),
        obj({"status": {"const": "rejected"}, "error": ref("ErrorDetail")}),
    ]
}


@spec(
    f"Record one canonical event or a batch of up to {BATCH_EVENTS_MAX}",
    {
        201: Reply(ref("Recorded"), "recorded"),
        200: Reply(
            {
                "anyOf": [
                    ref("Recorded"),
                    obj({"results": {"type": "array", "items": _BATCH_RESULT}}),
                ]
            },
            "duplicate, or the per-event results of a batch (in the order sent)",
        ),
    },
    errors=(409, 422),
    body={
        "oneOf": [
            ref("Event"),
            obj(
                {
                    "events": {
                        "type": "array",
                        "items": ref("Event"),
                        "minItems": 1,
                        "maxItems": BATCH_EVENTS_MAX,
                    }
                }
            ),
        ]
    },
)
@require("admin", "gateway", "payouts", "seller")
async def post_events(request: web.Request) -> web.Response:
    ledger = request.app[LEDGER]
    caller = principal(request)
    body = await read_json(request)
    if isinstance(body, dict) and "events" in body and "type" not in body:
        items = body["events"]
        if not isinstance(items, list):
            raise ValidationError("events must be a list", field="events")
        if not 1 <= len(items) <= BATCH_EVENTS_MAX:
            raise ValidationError(f"a batch holds 1 to {BATCH_EVENTS_MAX} events", field="events")
        return json_response({"results": await _record_batch(ledger, caller, items)})
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    result = await ledger.record(caller.authorize(parse_command(body)))
    request.app[_METRICS].events.inc(result.status == "recorded")
    return json_response(result.as_dict(), 201 if result.status == "recorded" else 200)


async def _record_batch(
    ledger: Ledger, caller: Principal, items: list[Any]
) -> list[dict[str, Any]]:
    results: list[dict[str, Any] | None] = [None] * len(items)
    places: list[int] = []
    commands: list[Command] = []
    for index, item in enumerate(items):
        try:
            commands.append(caller.authorize(parse_command(item)))
            places.append(index)
        except LedgerError as e:
            results[index] = {"status": "rejected", "error": bounded_error(e)}
    outcomes = await ledger.record_many(commands) if commands else []
    for index, outcome in zip(places, outcomes, strict=True):
        if isinstance(outcome, LedgerError):
            results[index] = {"status": "rejected", "error": bounded_error(outcome)}
        elif isinstance(outcome, BaseException):
            log.error("batch item failed: %r", outcome)
            results[index] = {
                "status": "rejected",
                "error": {"code": "unavailable", "message": "retry this event later"},
            }
        else:
            results[index] = outcome.as_dict()
    return [r for r in results if r is not None]


@spec(
    "The global log in position order",
    {
        200: obj(
            {
                "events": {"type": "array", "items": ref("Message")},
                "next_after": {
                    **nullable(POSITION),
                    "description": "pass as after= for the next page; null at the end",
                },
                "replica_lag_s": REPLICA_LAG_S,
            },
            optional=("replica_lag_s",),
        )
    },
    errors=(422,),
    params=(
        Param("after", {"type": "integer", "minimum": 0, "maximum": POSITION_MAX, "default": 0}),
        Param(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": LOG_PAGE_MAX, "default": LOG_PAGE_DEFAULT},
        ),
    ),
)
@require("admin", "auditor")
async def get_events(request: web.Request) -> web.Response:
    after = int_param(request, "after", 0, low=0, high=POSITION_MAX)
    limit = int_param(request, "limit", LOG_PAGE_DEFAULT, low=1, high=LOG_PAGE_MAX)
    events = await request.app[READ_STORE].read_log(after, limit)
    next_after = events[-1]["position"] if len(events) == limit else None
    lag = await replica_fields(request.app)
    return json_response({"events": events, "next_after": next_after, **lag})
