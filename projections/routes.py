"""The read routes served from projections: balances, seller recaps, the city recap, lag.

Added to the core's app as an extension (``ledger/ops/bootstrap.py``); the core
knows nothing of the read tables.
"""

from __future__ import annotations

from typing import Any, Final

import asyncpg
from aiohttp import web

from ledger.api.http import (
    BALANCE_POSITION,
    BALANCE_READER,
    SETTINGS,
    STORE,
    HealthPart,
    add_health_check,
    json_response,
    principal,
    replica_fields,
    require,
)
from ledger.api.spec import DAY, ID, MONEY, POSITION, REPLICA_LAG_S, Param, nullable, obj, spec
from ledger.domain.commands import CHANNELS, parse_day, parse_identifier
from ledger.domain.errors import Forbidden, NotFound, ValidationError
from projections import reads

__all__ = ["ProjectionRoutes"]

#: the read models' reads: OMNILEDGER_READ_DATABASE_URL's pool when set
_POOL = web.AppKey("projection_pool", asyncpg.Pool)
#: in every answer read from the read database (``replica_fields``)
_LAG: Final = {"replica_lag_s": REPLICA_LAG_S}

# -- what the routes promise (the OpenAPI document is built from these) ---------------------

_COUNT: Final = {"type": "integer", "minimum": 0}
#: ``projections.reads._sums``: one currency's counts and sums
_SUMS: Final[dict[str, Any]] = {
    "currency": {"type": "string"},
    "orders": _COUNT,
    "order_value": MONEY,
    "payments": _COUNT,
    "captured": MONEY,
    "refunds": _COUNT,
    "refunded": MONEY,
    "fees": MONEY,
    "net": {**MONEY, "description": "captured - refunded - fees"},
}
# the channel a row is about: a known channel, or whatever an older log named
_CHANNEL_NAME: Final = {"type": "string", "examples": sorted(CHANNELS)}


@spec(
    "A seller's daily recaps per local day and channel",
    {
        200: obj(
            {
                "seller_id": ID,
                "recaps": {
                    "type": "array",
                    "items": obj({"date": DAY, "channel": _CHANNEL_NAME, **_SUMS}),
                },
                **_LAG,
            },
            optional=_LAG,
        )
    },
    errors=(404, 422),
    params=(
        Param("seller_id", ID, "path", True),
        Param("from", DAY, required=True),
        Param("to", DAY, required=True, description=f"at most {reads.RECAP_DAYS_MAX} days"),
    ),
)
@require("admin", "auditor", "seller")
async def get_seller_recaps(request: web.Request) -> web.Response:
    seller_id = parse_identifier(request.match_info["seller_id"], "seller_id")
    if not principal(request).may_see_seller(seller_id):
        raise Forbidden("a seller key reads only its own seller")
    date_from, date_to = request.query.get("from"), request.query.get("to")
    if not date_from or not date_to:
        raise ValidationError("from and to are required (YYYY-MM-DD)", field="from")
    parse_day(date_from, "from")  # the request is checked before the data is looked at
    parse_day(date_to, "to")
    if await reads.seller_balance(request.app[_POOL], seller_id) is None:
        raise NotFound(f"seller {seller_id} is not known to the recaps yet")
    rows = await reads.seller_recaps(request.app[_POOL], seller_id, date_from, date_to)
    lag = await replica_fields(request.app)
    return json_response({"seller_id": seller_id, "recaps": rows, **lag})


@spec(
    "The city recap of one local day",
    {
        200: obj(
            {
                "date": DAY,
                "active_sellers": _COUNT,
                "channels": {
                    "type": "array",
                    "items": obj({"channel": _CHANNEL_NAME, **_SUMS}),
                },
                "districts": {
                    "type": "array",
                    "items": obj(
                        {
                            "district": nullable({"type": "string"}),
                            "active_sellers": _COUNT,
                            **_SUMS,
                        }
                    ),
                },
                **_LAG,
            },
            optional=_LAG,
        )
    },
    errors=(422,),
    params=(Param("date", DAY, required=True),),
)
@require("admin", "auditor")
async def get_city_recap(request: web.Request) -> web.Response:
    day = request.query.get("date")
    if not day:
        raise ValidationError("date is required (YYYY-MM-DD)", field="date")
    recap = await reads.city_recap(request.app[_POOL], day)
    return json_response(recap | await replica_fields(request.app))


@spec(
    "Projection positions and lag",
    {
        200: obj(
            {
                "head_position": POSITION,
                "projections": {
                    "type": "array",
                    "items": obj(
                        {
                            "name": {"type": "string"},
                            "position": POSITION,
                            "lag_events": _COUNT,
                            "lag_seconds": nullable({"type": "number", "minimum": 0}),
                        }
                    ),
                },
                **_LAG,
            },
            optional=_LAG,
        )
    },
    errors=(422,),  # documented so since issue 10; kept so the document only grows
)
@require("admin", "auditor")
async def get_projections(request: web.Request) -> web.Response:
    store = request.app[STORE]
    head, _ = await store.head()
    head_recorded_at = await store.head_recorded_at()
    # head from the primary, positions from the read database: a read model's lag
    # there counts what replication has not brought yet too
    status = await reads.projection_status(request.app[_POOL], head, head_recorded_at)
    lag = await replica_fields(request.app)
    return json_response({"head_position": head, "projections": status, **lag})


class ProjectionRoutes:
    """``read_pool``: OMNILEDGER_READ_DATABASE_URL's, for the read routes; /healthz
    asks the primary (``pool``), which the projections write."""

    def __init__(self, pool: asyncpg.Pool, read_pool: asyncpg.Pool | None = None) -> None:
        self._pool = pool
        self._read_pool = read_pool or pool

    def setup(self, app: web.Application) -> None:
        pool = self._read_pool
        app[_POOL] = pool

        async def balance(seller_id: str, currency: str) -> dict[str, Any] | None:
            return await reads.seller_balance(pool, seller_id, currency)

        async def balance_position() -> int:
            return await reads.model_position(pool, "balances")

        async def health(head: int) -> HealthPart:
            # from the database, not from a process of ours: a read model run by
            # another machine's `omniledger project` shows here too
            status = await reads.projection_status(self._pool, head, None)
            lag_max = app[SETTINGS].health_lag_events_max
            lagging = [p for p in status if p["lag_events"] > lag_max]
            fields = {
                "projections": {
                    p["name"]: {"position": p["position"], "lag_events": p["lag_events"]}
                    for p in status
                }
            }
            problems = tuple(
                f"projection {p['name']}: {p['lag_events']} events behind the log" for p in lagging
            )
            gauges = tuple(
                ("omniledger_projection_lag_events", f'{{name="{p["name"]}"}}', p["lag_events"])
                for p in status
            )
            return HealthPart(fields, problems, gauges)

        app[BALANCE_READER] = balance
        app[BALANCE_POSITION] = balance_position
        add_health_check(app, health)
        app.router.add_get("/v1/sellers/{seller_id}/recaps", get_seller_recaps)
        app.router.add_get("/v1/recaps/daily", get_city_recap)
        app.router.add_get("/v1/projections", get_projections)
