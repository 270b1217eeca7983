"""``GET /v1/sellers/{seller_id}/balance``: now (write side or projection), or as of a time."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

from aiohttp import web

from ledger.api.auth import principal, require
from ledger.api.context import (
    AS_OF_READER,
    BALANCE_POSITION,
    BALANCE_READER,
    STORE,
    replica_fields,
)
from ledger.api.responses import POSITION_MAX, int_param, json_response
from ledger.api.spec import ID, TIME, Param, ref, spec
from ledger.domain import balances
from ledger.domain.commands import parse_identifier, parse_timestamp
from ledger.domain.errors import Forbidden, NotFound, Unavailable, ValidationError
from ledger.domain.money import parse_currency
from ledger.domain.sellers import seller_stream_id
from ledger.store import LedgerStore

__all__ = ["BalanceReader", "get_balance", "write_side_balance", "zero_balance"]


class BalanceReader(Protocol):
    async def __call__(self, seller_id: str, currency: str) -> dict[str, Any] | None: ...


def write_side_balance(store: LedgerStore) -> BalanceReader:
    """The balance from the write side's own account rows (exact as of the last commit)."""

    async def read(seller_id: str, currency: str) -> dict[str, Any] | None:
        row = await store.account(seller_id, currency)
        if row is None:
            return None
        return balances.balance_json(seller_id, currency, balances.Totals.of(row), row["position"])

    return read


def zero_balance(seller_id: str, currency: str, position: int) -> dict[str, Any]:
    return balances.balance_json(seller_id, currency, balances.Totals(), position)


def head_position(store: LedgerStore) -> Callable[[], Awaitable[int]]:
    """The write side's account rows move with the head, in one transaction."""

    async def position() -> int:
        head, _ = await store.head()
        return head

    return position


#: How long ``?min_position=`` waits for the read model, and how often it looks.
MIN_POSITION_WAIT_S: Final = 2.0
_MIN_POSITION_POLL_S: Final = 0.02


async def _reached(position: Callable[[], Awaitable[int]], wanted: int) -> int:
    """The model's position once it is at least ``wanted``; 503 past the wait."""
    deadline = asyncio.get_running_loop().time() + MIN_POSITION_WAIT_S
    while True:
        at = await position()
        if at >= wanted:
            return at
        if asyncio.get_running_loop().time() >= deadline:
            raise Unavailable(
                f"the balance read model is at position {at}, not yet {wanted}; retry shortly"
            )
        await asyncio.sleep(_MIN_POSITION_POLL_S)


@spec(
    "A seller's balance (now, or as of a time from the log)",
    {200: ref("Balance")},
    errors=(404, 422, 429),
    params=(
        Param("seller_id", ID, "path", True),
        Param("currency", {"type": "string", "default": "IDR"}, description="ISO 4217"),
        Param("as_of", TIME, description="the balance at this time, replayed from the log"),
        Param("known_at", TIME, description="with as_of: only what was recorded by then"),
        Param(
            "min_position",
            {"type": "integer", "minimum": 0, "maximum": POSITION_MAX},
            description="the position a write returned: wait (at most"
            f" {MIN_POSITION_WAIT_S:g} s) until the answer includes it, else 503 with Retry-After",
        ),
    ),
)
@require("admin", "auditor", "seller")
async def get_balance(request: web.Request) -> web.Response:
    seller_id = parse_identifier(request.match_info["seller_id"], "seller_id")
    if not principal(request).may_see_seller(seller_id):
        raise Forbidden("a seller key reads only its own seller")
    currency = parse_currency(request.query.get("currency"))
    store = request.app[STORE]
    if "as_of" in request.query or "known_at" in request.query:
        as_of = _query_time(request, "as_of")
        known_at = _query_time(request, "known_at") if "known_at" in request.query else None
        reader = request.app.get(AS_OF_READER)
        if reader is None:
            raise NotFound("time travel is not enabled on this server")
        await _require_registered(store, seller_id)
        answer = await reader(seller_id, currency, as_of, known_at)  # type: ignore[operator]
        return json_response(answer | await replica_fields(request.app))
    position = request.app[BALANCE_POSITION]
    wanted = int_param(request, "min_position", 0, low=0, high=POSITION_MAX)
    if wanted:
        await _reached(position, wanted)  # type: ignore[arg-type]
    reader = request.app[BALANCE_READER]
    balance = await reader(seller_id, currency)  # type: ignore[operator]
    head, _ = await store.head()
    if balance is None:
        # Only then ask whether the seller exists at all: the common read is one query.
        await _require_registered(store, seller_id)
        # what the model has reached, never the log's head: a reader is not told
        # "as of N" of a state that does not include N (issue 13)
        at = await position()  # type: ignore[operator]
        balance = zero_balance(seller_id, currency, at) | {"seen": False}
    else:
        balance["seen"] = True
    # head from the primary: lag_events counts what replication has not brought yet too
    balance["lag_events"] = max(head - balance["as_of_position"], 0)
    return json_response(balance | await replica_fields(request.app))


#: ``2026-11-30T10:00:00 08:00``: a ``+08:00`` offset sent unencoded in a URL
#: reaches us with a space where the ``+`` was (``+`` means a space in a query).
_PLUS_AS_SPACE: Final = re.compile(r"\A\S+[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)? \d{2}:\d{2}\Z")


def _query_time(request: web.Request, name: str) -> Any:
    value = request.query.get(name)
    if isinstance(value, str) and _PLUS_AS_SPACE.match(value):
        raise ValidationError(
            f"{name} has a space where its offset's + should be: write + as %2B in a URL"
            f" ({name}=2026-11-30T10:00:00%2B08:00), or use Z",
            field=name,
        )
    return parse_timestamp(value, name)


async def _require_registered(store: LedgerStore, seller_id: str) -> None:
    if not await store.stream_exists(seller_stream_id(seller_id)):
        raise NotFound(f"seller {seller_id} is not registered")
