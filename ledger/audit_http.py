"""Audit routes: balances as of a time (from the log) and settlement-report reconciliation."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from aiohttp import web

from ledger.audit import reconcile_report, replay_balances
from ledger.domain.errors import BadRequest, ValidationError
from ledger.http import AS_OF_READER, LEDGER, SETTINGS, STORE, json_response, require
from ledger.store import EventStore

__all__ = ["AuditRoutes"]

_GATEWAYS: Final = frozenset({"midtrans", "xendit"})
_REPORT_BYTES_MAX: Final = 1024 * 1024


@require("admin")
async def post_reconciliation(request: web.Request) -> web.Response:
    gateway = request.query.get("gateway")
    if gateway not in _GATEWAYS:
        raise ValidationError("gateway must be midtrans or xendit", field="gateway")
    day = request.query.get("date")
    if not day:
        raise ValidationError("date is required (YYYY-MM-DD)", field="date")
    report = await request.read()
    if not report:
        raise BadRequest("the body is empty; send the settlement report as CSV")
    _, result = await reconcile_report(
        request.app[STORE],
        request.app[LEDGER],
        gateway=gateway,
        day=day,
        report=report,
        timezone=request.app[SETTINGS].timezone,
    )
    return json_response(result)


class AuditRoutes:
    def setup(self, app: web.Application) -> None:
        store: EventStore = app[STORE]

        async def as_of(
            seller_id: str, currency: str, as_of: datetime, known_at: datetime | None
        ) -> dict[str, Any]:
            fold = await replay_balances(store, as_of=as_of, known_at=known_at, seller_id=seller_id)
            balance = fold.balance(seller_id, currency)
            return balance | {
                "as_of": as_of.isoformat(),
                "known_at": known_at.isoformat() if known_at else None,
            }

        app[AS_OF_READER] = as_of
        app.router.add_post("/v1/reconciliations", post_reconciliation)
