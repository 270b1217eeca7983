"""Audit routes: balances as of a time (from the log) and settlement-report reconciliation."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final

from aiohttp import web

from ledger.api.http import (
    AS_OF_READER,
    LEDGER,
    READ_STORE,
    SETTINGS,
    STORE,
    json_response,
    require,
)
from ledger.api.spec import DAY, Param, Reply, obj, ref, spec
from ledger.audit.findings import FINDING_LISTS as _FINDING_KINDS
from ledger.audit.replay import reconcile_report, replay_balances
from ledger.domain.errors import BadRequest, TooManyRequests, ValidationError
from ledger.store import LedgerStore

__all__ = ["AuditRoutes"]

_GATEWAYS: Final = frozenset({"midtrans", "xendit"})
_REPORT_BYTES_MAX: Final = 1024 * 1024


@spec(
    "Reconcile a gateway settlement report (CSV body)",
    {
        200: Reply(
            obj(
                {
                    "gateway": {"enum": sorted(_GATEWAYS)},
                    "date": DAY,
                    "timezone": {"type": "string"},
                    "summary": {"type": "object"},
                    "findings": obj(
                        {
                            kind: {"type": "array", "items": {"type": "object"}}
                            for kind in _FINDING_KINDS
                        }
                    ),
                    "recorded": ref("Recorded"),
                }
            ),
            "the findings, recorded in the log as reconciliation.recorded",
        )
    },
    errors=(422,),
    params=(
        Param("gateway", {"enum": sorted(_GATEWAYS)}, required=True),
        Param("date", DAY, required=True, description="the report's local day"),
    ),
    body={"type": "string", "description": "the gateway's settlement report, at most 1 MiB"},
    body_media="text/csv",
)
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


class AsOfLimit:
    """Time-travel reads in this process: at most ``reads_max`` in flight, one per
    seller, and together at most ``share_pct`` percent of the wall clock.

    Each read folds a seller's history inside the API process; without a bound
    a few looping readers took the CPU and the pool from the writers. Bounding
    the reads in flight is not enough: one reader looping back to back still
    holds the event loop most of the time. So the time the reads take is
    charged to a budget that refills at ``share_pct`` percent of real time (a
    burst of ``BURST_S`` seconds banked). Past any bound the answer is 429 at
    once (no queue to grow): the client retries.
    """

    BURST_S: Final = 1.0

    def __init__(
        self, reads_max: int, share_pct: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.reads_max = reads_max
        self._share = share_pct / 100
        self._clock = clock
        self._sellers: set[str] = set()
        self._credit_s = self.BURST_S
        self._refilled = clock()

    @contextmanager
    def slot(self, seller_id: str) -> Iterator[None]:
        # one event loop: the checks and the add cannot interleave with another read
        now = self._clock()
        self._credit_s = min(self.BURST_S, self._credit_s + (now - self._refilled) * self._share)
        self._refilled = now
        if seller_id in self._sellers:
            raise TooManyRequests(
                "a balance as of a time for this seller is being read already; retry in a second"
            )
        if len(self._sellers) >= self.reads_max:
            raise TooManyRequests(
                f"{self.reads_max} balances as of a time are being read already; retry in a second"
            )
        if self._credit_s <= 0:
            raise TooManyRequests(
                "balances as of a time took their share of this server; retry in a second"
            )
        self._sellers.add(seller_id)
        try:
            yield
        finally:
            self._sellers.discard(seller_id)
            self._credit_s -= self._clock() - now


class AuditRoutes:
    def setup(self, app: web.Application) -> None:
        # the log as of a time: from the read database when there is one
        store: LedgerStore = app[READ_STORE]
        settings = app[SETTINGS]
        limit = AsOfLimit(settings.as_of_reads_max, settings.as_of_time_share_pct)

        async def as_of(
            seller_id: str, currency: str, as_of: datetime, known_at: datetime | None
        ) -> dict[str, Any]:
            with limit.slot(seller_id):
                fold = await replay_balances(
                    store, as_of=as_of, known_at=known_at, seller_id=seller_id
                )
            balance = fold.balance(seller_id, currency)
            return balance | {
                "as_of": as_of.isoformat(),
                "known_at": known_at.isoformat() if known_at else None,
            }

        app[AS_OF_READER] = as_of
        app.router.add_post("/v1/reconciliations", post_reconciliation)
