"""The HTTP API of the core (aiohttp): routes, authentication, the error middleware.

Errors map to statuses in one table (``ERROR_STATUS``), looked up along the
exception's MRO; the body is always ``{"error": {"code", "message", ...}}``.
Bad input is a 4xx, never a 500; an unreachable database is a 503 with
``Retry-After``; anything else is a 500 that logs the traceback and leaks
nothing. Gateways, projections and audit add their routes through
``Extension`` objects passed to ``create_app``: this module imports none of them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import resource
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import asyncpg
import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from ledger.api.openapi import openapi_document
from ledger.app.ledger import DB_ERRORS, Ledger
from ledger.domain.commands import (
    CHANNELS,
    GATEWAYS,
    Command,
    OrderFact,
    PlaceOrder,
    SendPayout,
    parse_command,
    parse_day,
    parse_identifier,
    parse_timestamp,
    reject_nul,
)
from ledger.domain.errors import (
    BadRequest,
    ChannelAccountTaken,
    Forbidden,
    IdempotencyConflict,
    LedgerError,
    NotFound,
    PayloadTooLarge,
    RuleViolation,
    SellerExists,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    UnknownSeller,
    ValidationError,
)
from ledger.domain.json_input import loads_unique
from ledger.domain.money import format_minor, parse_currency
from ledger.domain.orders import Order, order_stream_id
from ledger.domain.sellers import CERTIFICATION_KINDS, CURATION_STATUSES, seller_stream_id
from ledger.ops.settings import Settings
from ledger.store.postgres import LedgerStore

__all__ = [
    "AS_OF_READER",
    "BALANCE_READER",
    "HEALTH_LAG_EVENTS_MAX",
    "LEDGER",
    "ROLES",
    "SETTINGS",
    "STORE",
    "Extension",
    "HealthPart",
    "Principal",
    "add_health_check",
    "bounded_error",
    "create_app",
    "int_param",
    "json_response",
    "principal",
    "read_json",
    "require",
    "serve",
]

log = logging.getLogger("omniledger.http")

BODY_BYTES_MAX: Final = 1024 * 1024
BATCH_EVENTS_MAX: Final = 1000
LOG_PAGE_MAX: Final = 1000
ROLES: Final = frozenset({"admin", "gateway", "payouts", "seller", "auditor"})
#: Text in an error body is cut to this many characters: an answer may quote
#: a prefix of what was sent, never all of it (a 900 KB currency came back whole).
ERROR_TEXT_CHARS_MAX: Final = 200
#: The status a client that hung up mid-request is counted under (nginx's 499):
#: not a 5xx, which would page someone about the database.
CLIENT_CLOSED: Final = 499

ERROR_STATUS: Final[dict[type[LedgerError], int]] = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    IdempotencyConflict: 409,
    SellerExists: 409,
    ChannelAccountTaken: 409,
    PayloadTooLarge: 413,
    ValidationError: 422,
    RuleViolation: 422,
    TooManyRequests: 429,
    Unavailable: 503,
    LedgerError: 400,
}

LEDGER: Final = web.AppKey("ledger", Ledger)
STORE: Final = web.AppKey("store", LedgerStore)
SETTINGS: Final = web.AppKey("settings", Settings)
_METRICS: Final = web.AppKey("metrics", "Metrics")
_KEYS: Final = web.AppKey("key_cache", dict)
BALANCE_READER: Final = web.AppKey("balance_reader", object)
PRINCIPAL: Final = web.RequestKey("principal", object)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who calls: a role, and what the key is bound to (a seller key's seller;
    a gateway key's seller and gateway name, when it was made with them)."""

    role: str
    seller_id: str | None
    gateway: str | None = None

    def may_see_seller(self, seller_id: str) -> bool:
        return self.role in ("admin", "auditor") or (
            self.role == "seller" and self.seller_id == seller_id
        )

    def authorize(self, command: Command) -> Command:
        """The command as this key may post it, or ``Forbidden`` (least privilege).

        A payout moves the seller's money out: only ``admin`` and ``payouts``
        keys post one, and a ``payouts`` key posts nothing else. A gateway key
        bound to a gateway posts only facts naming that gateway; one bound to a
        seller only that seller's facts (checked where the order is loaded: the
        command carries the scope, and another seller's order is unknown to it).
        """
        if self.role == "admin":
            return command
        if isinstance(command, SendPayout):
            if self.role != "payouts":
                raise Forbidden("payouts need an admin or payouts key", field="type")
        elif self.role == "payouts":
            raise Forbidden("a payouts key posts only payout.sent", field="type")
        gateway = command.gateway if isinstance(command, OrderFact) else None
        if self.gateway is not None and gateway != self.gateway:
            raise Forbidden(
                f"this key posts only {self.gateway}'s facts (with gateway {self.gateway})",
                field="gateway",
            )
        if self.seller_id is not None:
            seller_id = command.seller_id if isinstance(command, PlaceOrder | SendPayout) else None
            if seller_id not in (None, self.seller_id):
                raise Forbidden(f"this key posts only seller {self.seller_id}'s facts",
                                field="seller_id")  # fmt: skip
            return replace(command, seller_scope=self.seller_id)
        return command


class Extension(Protocol):
    """A part that adds routes (gateways, projections, audit) to the app."""

    def setup(self, app: web.Application) -> None: ...


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "omniledger_http_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "omniledger_http_request_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.events = Counter(
            "omniledger_events_recorded", "Events recorded by this process", registry=self.registry
        )
        self.connections_closed = Counter(
            "omniledger_http_connections_closed",
            "Connections the server closed on a limit (header_timeout, cap, refused, malformed)",
            ["reason"],
            registry=self.registry,
        )


def status_for(error: LedgerError) -> int:
    for cls in type(error).__mro__:
        if cls in ERROR_STATUS:
            return ERROR_STATUS[cls]  # type: ignore[index]
    return 400


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def _bounded(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        if len(value) <= ERROR_TEXT_CHARS_MAX:
            return value
        return value[:ERROR_TEXT_CHARS_MAX] + f"... ({len(value)} characters)"
    if depth >= 4:
        return None
    if isinstance(value, dict):
        return {_bounded(k, 4): _bounded(v, depth + 1) for k, v in list(value.items())[:50]}
    if isinstance(value, list | tuple):
        return [_bounded(v, depth + 1) for v in value[:50]]
    return value


def bounded_error(error: LedgerError) -> dict[str, Any]:
    """``error.as_dict()`` with every text cut to ``ERROR_TEXT_CHARS_MAX``: a message
    that quotes the input (``unsupported currency '...'``) quotes only its start."""
    return _bounded(error.as_dict())  # type: ignore[no-any-return]


def error_response(error: LedgerError) -> web.Response:
    status = status_for(error)
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return json_response({"error": bounded_error(error)}, status, headers)


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, or a 400/413/422 naming what is wrong (a key
    given twice in one object is ``duplicate_key``, never "the last one wins")."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge("the body is larger than 1 MiB") from None
    if not raw:
        raise BadRequest("the body is empty; send a JSON object")
    try:
        return loads_unique(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"the body is not valid JSON: {e.msg[:100]}") from None


def require(*roles: str) -> Callable[[Callable[..., Awaitable[web.StreamResponse]]], Any]:
    """Marks a handler with the roles that may call it (checked by the auth middleware)."""

    def mark(handler: Callable[..., Awaitable[web.StreamResponse]]) -> Any:
        handler.roles = frozenset(roles)  # type: ignore[attr-defined]
        return handler

    return mark


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]  # type: ignore[return-value]


def hash_key(key: str) -> bytes:
    # a header's bytes that are not UTF-8 arrive as surrogates: hashed as they
    # came (an unknown key, 401), never an encoding error
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


# -- middlewares ----------------------------------------------------------------------


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[..., Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    metrics: Metrics = request.app[_METRICS]
    started = time.perf_counter()
    route = (
        request.match_info.route.resource.canonical
        if request.match_info.route.resource
        else "unmatched"
    )
    try:
        response = await handler(request)
    except LedgerError as e:
        response = error_response(e)
    except _BodyOverdue as e:
        response = _slow_body(request, e.timeout_s)
    except _ClientClosed:
        # not the database, and no one to answer: counted as 499, not a 503
        log.debug("client closed the connection during %s %s", request.method, request.path)
        response = web.Response(status=CLIENT_CLOSED)
    except web.HTTPRequestEntityTooLarge:
        response = error_response(PayloadTooLarge("the body is larger than 1 MiB"))
    except web.HTTPException as e:
        if e.status >= 400:
            code = {404: "not_found", 405: "method_not_allowed"}.get(e.status, "http_error")
            allow = {"Allow": e.headers["Allow"]} if "Allow" in e.headers else None
            response = json_response(
                {"error": {"code": code, "message": e.reason}}, e.status, allow
            )
        else:
            raise
    except (*DB_ERRORS, asyncpg.PostgresError) as e:
        if isinstance(e, asyncpg.PostgresError) and not isinstance(
            e, asyncpg.PostgresConnectionError | asyncpg.CannotConnectNowError
        ):
            log.exception("database error on %s %s", request.method, request.path)
        else:
            log.warning("database unavailable on %s %s: %s", request.method, request.path, e)
        response = error_response(Unavailable("the database is unavailable; retry later"))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        response = json_response(
            {"error": {"code": "internal_error", "message": "internal error"}}, 500
        )
    metrics.requests.labels(route, str(response.status)).inc()
    metrics.latency.labels(route).observe(time.perf_counter() - started)
    return response


class _BodyOverdue(Exception):
    def __init__(self, timeout_s: float) -> None:
        super().__init__(timeout_s)
        self.timeout_s = timeout_s


class _ClientClosed(Exception):
    """The client hung up while its request body was being read."""


@web.middleware
async def _read_body(
    request: web.Request, handler: Callable[..., Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Reads every body whole within ``http_body_timeout_s`` of its head, once
    the caller is authenticated; the handlers' ``request.read()`` then returns
    these bytes at once. A client that hangs up meanwhile (aiohttp hands the
    reader a ``ConnectionResetError``, an ``OSError`` like the database's) is
    told apart here, where nothing else can raise it."""
    if request.body_exists:
        timeout_s = request.app[SETTINGS].http_body_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                await request.read()
        except TimeoutError:
            raise _BodyOverdue(timeout_s) from None
        except ConnectionError:
            raise _ClientClosed from None
    return await handler(request)


def _slow_body(request: web.Request, body_timeout_s: float) -> web.Response:
    log.info(
        "408 to %s: the body of %s %s did not arrive within %s s",
        request.remote,
        request.method,
        request.path[:100],
        body_timeout_s,
    )
    response = json_response(
        {
            "error": {
                "code": "request_timeout",
                "message": f"the body did not arrive within {body_timeout_s} s",
            }
        },
        408,
    )
    response.force_close()  # the rest of the body is not waited for
    return response


@web.middleware
async def _auth(
    request: web.Request, handler: Callable[..., Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    roles = getattr(request.match_info.handler, "roles", None)
    if roles is None:  # public: /healthz, /metrics, and 404/405 answers
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("send Authorization: Bearer <key>")
    digest = hash_key(key.strip())
    cache: dict[bytes, Principal] = request.app[_KEYS]
    found = cache.get(digest)
    if found is None:
        row = await request.app[STORE].find_key(digest)
        if row is None:
            raise Unauthorized("unknown key")
        found = Principal(*row)
        cache[digest] = found
    if found.role not in roles:
        raise Forbidden(f"role {found.role} may not call this")
    request[PRINCIPAL] = found
    return await handler(request)


# -- handlers --------------------------------------------------------------------------


@require("admin", "gateway", "payouts")
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
    pending: list[tuple[int, Awaitable[Any]]] = []
    for index, item in enumerate(items):
        try:
            pending.append((index, ledger.record(caller.authorize(parse_command(item)))))
        except LedgerError as e:
            results[index] = {"status": "rejected", "error": bounded_error(e)}
    outcomes = await asyncio.gather(*(aw for _, aw in pending), return_exceptions=True)
    for (index, _), outcome in zip(pending, outcomes, strict=True):
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


_DIGITS: Final = re.compile(r"\A[0-9]{1,19}\Z")


def int_param(request: web.Request, name: str, default: int, *, low: int, high: int) -> int:
    """A query parameter of ASCII digits only (Python's ``int`` also takes
    ``+3``, `` 1``, ``1_0`` and other scripts' digits); absent or empty: ``default``."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not _DIGITS.match(raw):
        raise ValidationError(f"{name} must be a whole number of digits 0-9", field=name)
    value = int(raw)
    if not low <= value <= high:
        raise ValidationError(f"{name} must be between {low} and {high}", field=name)
    return value


@require("admin", "auditor")
async def get_events(request: web.Request) -> web.Response:
    after = int_param(request, "after", 0, low=0, high=2**62)
    limit = int_param(request, "limit", 100, low=1, high=LOG_PAGE_MAX)
    events = await request.app[STORE].read_log(after, limit)
    next_after = events[-1]["position"] if len(events) == limit else None
    return json_response({"events": events, "next_after": next_after})


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
    status = (
        "cancelled"
        if order.cancelled
        else (
            "refunded"
            if order.captured_minor and order.net_captured_minor == 0
            else "paid"
            if order.captured_minor >= order.amount_minor
            else "partially_paid"
            if order.captured_minor
            else "open"
        )
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


#: a channel's account id (a Shopee shop id, a Tokopedia shop domain): printable, no spaces
_CHANNEL_ACCOUNT: Final = re.compile(r"\A[\x21-\x7e]{1,64}\Z")


@require("admin")
async def post_sellers(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    reject_nul(body)
    seller_id = parse_identifier(body.get("seller_id"), "seller_id")
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
        raise ValidationError("name must be 1-200 characters", field="name")
    district = _optional_text(body, "district", 100)
    nib = _optional_text(body, "nib", 32)
    channels = body.get("channels")
    if channels is None:
        channels = {}
    if not isinstance(channels, dict):
        raise ValidationError("channels must map a channel to an account id", field="channels")
    clean: dict[str, str] = {}
    for channel, account in channels.items():
        if channel not in CHANNELS:
            raise ValidationError(
                f"unknown channel {channel[:20]!r}; known: {', '.join(sorted(CHANNELS))}",
                field="channels",
            )
        if isinstance(account, int) and not isinstance(account, bool):
            account = str(account)
        if not isinstance(account, str) or not _CHANNEL_ACCOUNT.match(account):
            raise ValidationError(
                f"account for {channel} must be 1-64 printable characters without spaces",
                field="channels",
            )
        clean[channel] = account
    occurred_at = datetime.now(UTC).isoformat()
    fingerprint = orjson.dumps(
        {"seller_id": seller_id, "name": name, "district": district, "nib": nib, "channels": clean},
        option=orjson.OPT_SORT_KEYS,
    )
    result = await request.app[LEDGER].register_seller(
        seller_id=seller_id,
        name=name.strip(),
        district=district,
        nib=nib,
        channels=clean,
        occurred_at=occurred_at,
        fingerprint=fingerprint,
    )
    body_out = result.as_dict() | {"seller_id": seller_id}
    return json_response(body_out, 201 if result.status == "recorded" else 200)


def _optional_text(body: dict[str, Any], name: str, chars_max: int) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= chars_max:
        raise ValidationError(f"{name} must be 1-{chars_max} characters", field=name)
    return value


@require("admin")
async def post_curation(request: web.Request) -> web.Response:
    seller_id = parse_identifier(request.match_info["seller_id"], "seller_id")
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    reject_nul(body)
    status = body.get("status")
    if not isinstance(status, str) or status not in CURATION_STATUSES:
        raise ValidationError(
            f"status must be one of {', '.join(sorted(CURATION_STATUSES))}", field="status"
        )
    certs_in = body.get("certifications") or []
    if not isinstance(certs_in, list) or len(certs_in) > 50:
        raise ValidationError("certifications must be a list of at most 50", field="certifications")
    certs: list[dict[str, Any]] = []
    for cert in certs_in:
        if (
            not isinstance(cert, dict)
            or not isinstance(cert.get("kind"), str)
            or (cert["kind"] not in CERTIFICATION_KINDS)
        ):
            raise ValidationError(
                f"each certification needs kind in {', '.join(sorted(CERTIFICATION_KINDS))}",
                field="certifications",
            )
        number = cert.get("number")
        if not isinstance(number, str) or not 1 <= len(number) <= 64:
            raise ValidationError("each certification needs a number", field="certifications")
        entry: dict[str, Any] = {"kind": cert["kind"], "number": number}
        if cert.get("valid_until") is not None:
            valid = cert["valid_until"]
            # strptime's %m and %d also took "2026-1-5": one spelling per day
            try:
                entry["valid_until"] = parse_day(valid, "valid_until").isoformat()
            except ValidationError as e:
                raise ValidationError(e.message, field="certifications") from None
        certs.append(entry)
    result = await request.app[LEDGER].curate_seller(
        seller_id=seller_id,
        status=status,
        certifications=certs,
        occurred_at=datetime.now(UTC).isoformat(),
    )
    return json_response(result.as_dict(), 201)


@require("admin")
async def post_keys(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    role = body.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(sorted(ROLES))}", field="role")
    seller_id = body.get("seller_id")
    gateway = body.get("gateway")
    if role == "seller" or (role == "gateway" and seller_id is not None):
        seller_id = parse_identifier(seller_id, "seller_id")
        if not await request.app[STORE].stream_exists(seller_stream_id(seller_id)):
            # a key for a typo would never work, or would open a later seller's data
            raise UnknownSeller(f"seller {seller_id} is not registered", field="seller_id")
    elif seller_id is not None:
        raise ValidationError("only a seller or gateway key names a seller_id", field="seller_id")
    if gateway is not None:
        if role != "gateway":
            raise ValidationError("only a gateway key names a gateway", field="gateway")
        if not isinstance(gateway, str) or gateway not in GATEWAYS:
            raise ValidationError(
                f"gateway must be one of {', '.join(sorted(GATEWAYS))}", field="gateway"
            )
    key = "olk_" + secrets.token_urlsafe(32)
    await request.app[STORE].add_key(hash_key(key), role, seller_id, gateway)
    return json_response(
        {"key": key, "role": role, "seller_id": seller_id, "gateway": gateway}, 201
    )


class BalanceReader(Protocol):
    async def __call__(self, seller_id: str, currency: str) -> dict[str, Any] | None: ...


def write_side_balance(store: LedgerStore) -> BalanceReader:
    """The balance from the write side's own account rows (exact as of the last commit)."""

    async def read(seller_id: str, currency: str) -> dict[str, Any] | None:
        row = await store.account(seller_id, currency)
        if row is None:
            return None
        available = (
            row["captured_minor"]
            - row["refunded_minor"]
            - row["fees_minor"]
            - row["paid_out_minor"]
        )
        return {
            "seller_id": seller_id,
            "currency": currency,
            "pending": format_minor(row["pending_minor"], currency),
            "available": format_minor(available, currency),
            "captured_total": format_minor(row["captured_minor"], currency),
            "refunded_total": format_minor(row["refunded_minor"], currency),
            "fees_total": format_minor(row["fees_minor"], currency),
            "paid_out_total": format_minor(row["paid_out_minor"], currency),
            "as_of_position": row["position"],
        }

    return read


def zero_balance(seller_id: str, currency: str, position: int) -> dict[str, Any]:
    zero = format_minor(0, currency)
    return {
        "seller_id": seller_id,
        "currency": currency,
        "pending": zero,
        "available": zero,
        "captured_total": zero,
        "refunded_total": zero,
        "fees_total": zero,
        "paid_out_total": zero,
        "as_of_position": position,
    }


#: Answers ``?as_of=`` (and ``known_at``) from the log; set by the audit extension.
AS_OF_READER: Final = web.AppKey("as_of_reader", object)


@require("admin", "auditor", "seller")
async def get_balance(request: web.Request) -> web.Response:
    seller_id = parse_identifier(request.match_info["seller_id"], "seller_id")
    if not principal(request).may_see_seller(seller_id):
        raise Forbidden("a seller key reads only its own seller")
    currency = parse_currency(request.query.get("currency"))
    store = request.app[STORE]
    if "as_of" in request.query or "known_at" in request.query:
        as_of = parse_timestamp(request.query.get("as_of"), "as_of")
        known_at = (
            parse_timestamp(request.query["known_at"], "known_at")
            if "known_at" in request.query
            else None
        )
        reader = request.app.get(AS_OF_READER)
        if reader is None:
            raise NotFound("time travel is not enabled on this server")
        await _require_registered(store, seller_id)
        return json_response(await reader(seller_id, currency, as_of, known_at))  # type: ignore[operator]
    reader = request.app[BALANCE_READER]
    balance = await reader(seller_id, currency)  # type: ignore[operator]
    if balance is None:
        # Only then ask whether the seller exists at all: the common read is one query.
        await _require_registered(store, seller_id)
        head, _ = await store.head()
        balance = zero_balance(seller_id, currency, head)
    return json_response(balance)


async def _require_registered(store: LedgerStore, seller_id: str) -> None:
    if not await store.stream_exists(seller_stream_id(seller_id)):
        raise NotFound(f"seller {seller_id} is not registered")


#: Past this many events behind the log, the relay or a read model makes
#: ``/healthz`` say ``degraded``: about 3 s of the one-box peak write rate, far
#: more than a running part falls behind under load, far less than a stalled
#: one reaches (issue 10: 30,000 events, unnoticed).
HEALTH_LAG_EVENTS_MAX: Final = 10_000


@dataclass(frozen=True, slots=True)
class HealthPart:
    """What one part beyond the core adds to ``/healthz`` and ``/metrics``."""

    #: merged into the ``/healthz`` body
    fields: dict[str, Any]
    #: one short line each; any problem makes ``status`` ``degraded``
    problems: tuple[str, ...] = ()
    #: ``(metric name, labels as {k="v"} or "", value)``, gauges on ``/metrics``
    gauges: tuple[tuple[str, str, float], ...] = ()


#: ``async (log head position) -> HealthPart``, added by extensions (``add_health_check``)
HealthCheck = Callable[[int], Awaitable[HealthPart]]
_HEALTH_CHECKS: Final = web.AppKey("health_checks", list)


def add_health_check(app: web.Application, check: HealthCheck) -> None:
    app.setdefault(_HEALTH_CHECKS, []).append(check)


async def _health(app: web.Application) -> tuple[dict[str, Any], list[str], list[Any]]:
    """The body of ``/healthz`` without its status, the problems, the gauges.
    Raises the database's errors: the caller answers those."""
    store = app[STORE]
    head, _ = await store.head()
    relayed = await store.relay_checkpoint(app[SETTINGS].stream_name)
    relay_lag = max(head - relayed, 0)
    body: dict[str, Any] = {
        "database": "ok",
        "head_position": head,
        "relay_position": relayed,
        "relay_lag_events": relay_lag,
    }
    problems = []
    if relay_lag > HEALTH_LAG_EVENTS_MAX:
        problems.append(f"relay: {relay_lag} events behind the log")
    gauges: list[Any] = [("omniledger_relay_lag_events", "", relay_lag)]
    for check in app.get(_HEALTH_CHECKS, ()):
        part: HealthPart = await check(head)
        body.update(part.fields)
        problems.extend(part.problems)
        gauges.extend(part.gauges)
    return body, problems, gauges


async def healthz(request: web.Request) -> web.Response:
    """Each part's health. ``status``: ``ok``; ``degraded`` (still 200: writes
    work) when a part is down or far behind, each named in ``problems``;
    ``unavailable`` (503) only when the database cannot be reached. Writes
    succeed while NATS or a child is away, but nothing reaches the read
    models, and a monitor should see that here: ``relay_lag_events``,
    ``projections`` (each read model's position and lag), and under ``up``
    ``children`` (each child process's state, pid, restarts and last exit)."""
    try:
        body, problems, _ = await _health(request.app)
    except (*DB_ERRORS, asyncpg.PostgresError):
        return json_response(
            {"status": "unavailable", "database": "unreachable"}, 503, {"Retry-After": "1"}
        )
    return json_response({"status": "degraded" if problems else "ok", "problems": problems, **body})


async def metrics(request: web.Request) -> web.Response:
    m: Metrics = request.app[_METRICS]
    ledger = request.app[LEDGER]
    lines = [generate_latest(m.registry).decode()]
    for name, value in ledger.stats.items():
        lines.append(f"# TYPE omniledger_writer_{name} gauge\nomniledger_writer_{name} {value}\n")
    try:
        _, _, gauges = await _health(request.app)
    except (*DB_ERRORS, asyncpg.PostgresError):
        gauges = []  # the lags need the database; the rest is still worth scraping
    typed: set[str] = set()
    for name, labels, value in gauges:
        if name not in typed:
            typed.add(name)
            lines.append(f"# TYPE {name} gauge\n")
        lines.append(f"{name}{labels} {value}\n")
    return web.Response(body="".join(lines).encode(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@require("admin", "auditor", "gateway", "seller")
async def get_openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())


def create_app(
    settings: Settings,
    ledger: Ledger,
    store: LedgerStore,
    *,
    extensions: Iterable[Extension] = (),
) -> web.Application:
    """The aiohttp application; the caller owns the ledger's and pool's lifecycle."""
    app = web.Application(middlewares=[_errors, _auth, _read_body], client_max_size=BODY_BYTES_MAX)
    app[SETTINGS] = settings
    app[LEDGER] = ledger
    app[STORE] = store
    app[_METRICS] = Metrics()
    app[_KEYS] = {}
    app[BALANCE_READER] = write_side_balance(store)
    app.router.add_post("/v1/events", post_events)
    app.router.add_get("/v1/events", get_events)
    app.router.add_get("/v1/orders/{channel}/{order_id}", get_order)
    app.router.add_post("/v1/sellers", post_sellers)
    app.router.add_post("/v1/sellers/{seller_id}/curation", post_curation)
    app.router.add_get("/v1/sellers/{seller_id}/balance", get_balance)
    app.router.add_post("/v1/keys", post_keys)
    app.router.add_get("/v1/openapi.json", get_openapi)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    for extension in extensions:
        extension.setup(app)
    return app


async def install_admin_key(store: LedgerStore, admin_key: str | None) -> None:
    """The first admin key comes from ``OMNILEDGER_ADMIN_KEY`` at start-up (stored hashed)."""
    if admin_key:
        await store.add_key(hash_key(admin_key), "admin", None)


# -- serving: connection limits ---------------------------------------------------------
#
# aiohttp limits how long an idle keep-alive connection lives, but not how long
# a client may take to send a request head, and it accepts connections without
# bound. A few thousand sockets that open and trickle bytes would hold the
# process's file descriptors forever. Three limits, all from Settings:
# - the head (request line and headers) is due within http_header_timeout_s of
#   the connection opening or of the head's first byte, else the connection is
#   closed (a timer per connection, armed in data_received);
# - a body is due within http_body_timeout_s of its head, else 408 (the
#   _read_body middleware reads every body under that deadline);
# - past http_connections_max open connections, the oldest one waiting for a
#   request (idle or still sending its head) is closed to admit the new one;
#   with none waiting, the new one is answered 503 and closed.
# Idle keep-alive connections close after http_keepalive_timeout_s (aiohttp's).

#: After a 408 or 413, how long the unread rest of a body is drained before
#: the socket closes (so the client can read the answer rather than get a reset).
_LINGER_S: Final = 2.0
#: File descriptors kept for the database pool, NATS, logs and the listening socket.
_DESCRIPTORS_SPARE: Final = 100
_REFUSAL_BODY: Final = orjson.dumps(
    {"error": {"code": "unavailable", "message": "too many open connections; retry later"}}
)
#: Written raw to a connection refused at the cap: no request was read to answer.
_REFUSAL: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_REFUSAL_BODY), _REFUSAL_BODY)
)


class _LogBudget:
    """At most ``lines_max`` lines per ``window_s`` about clients' misbehaviour
    (timeouts, shed connections, malformed HTTP): anyone can cause those, and
    the log must not become theirs. What is held back is counted in the next line."""

    def __init__(self, lines_max: int = 10, window_s: float = 10.0) -> None:
        self._lines_max = lines_max
        self._window_s = window_s
        self._window_started = -window_s
        self._lines = 0
        self._held = 0

    def info(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._window_started >= self._window_s:
            if self._held:
                log.info("%d more such lines were held back in %.0f s", self._held, self._window_s)
            self._window_started, self._lines, self._held = now, 0, 0
        if self._lines < self._lines_max:
            self._lines += 1
            log.info(message, *args)
        else:
            self._held += 1


@dataclass(frozen=True, slots=True)
class _Limits:
    header_timeout_s: float
    connections_max: int
    budget: _LogBudget
    closed: Counter


class _GuardedHandler(RequestHandler):
    """aiohttp's connection protocol plus the head deadline, the cap and quiet
    answers to malformed HTTP."""

    def __init__(self, manager: Server, *, limits: _Limits, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._head_timer: asyncio.TimerHandle | None = None
        self._body: Any = None  # the payload of the last request head read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        manager = self._manager
        if isinstance(manager, _GuardedServer) and not manager.admit(self):
            return
        self._arm_head_timer()  # the first request's head is due from the start

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        heads = self._request_count
        in_body = self._body is not None and not self._body.is_eof()
        super().data_received(data)
        if self._request_count != heads:  # a head was read (or refused)
            self._disarm_head_timer()
            self._body = self._messages[-1][1] if self._messages else None
        elif data and not in_body and self._head_timer is None:
            self._arm_head_timer()  # the first bytes of a head

    @property
    def waiting_for_request(self) -> bool:
        """Idle, or still receiving a head: nothing of ours would be lost by closing."""
        waiter = self._waiter
        return (
            self.transport is not None
            and waiter is not None
            and not waiter.done()
            and not self._messages
        )

    def shed(self, reason: str) -> None:
        self._limits.closed.labels(reason).inc()
        self.force_close()

    def refuse(self) -> None:
        self._limits.closed.labels("refused").inc()
        if self.transport is not None:
            self.transport.write(_REFUSAL)  # close() sends what is buffered first
        self.force_close()

    def _arm_head_timer(self) -> None:
        if self.transport is not None and not self._force_close:
            self._head_timer = self._loop.call_later(
                self._limits.header_timeout_s, self._head_overdue
            )

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_overdue(self) -> None:
        self._head_timer = None
        if self._request_in_progress:
            # a pipelined head behind a request still being answered: judged after it
            self._arm_head_timer()
            return
        self._limits.budget.info(
            "closed a connection from %s: no complete request head within %s s",
            self.peername,
            self._limits.header_timeout_s,
        )
        self.shed("header_timeout")

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        # a request aiohttp's parser refused: the client's fault, one line, no traceback
        what = (message or "").strip().splitlines()
        self._limits.budget.info(
            "%d to %s: malformed HTTP (%s: %.80r)",
            status,
            self.peername,
            type(exc).__name__,
            what[0] if what else "",
        )
        self._limits.closed.labels("malformed").inc()
        response = json_response(
            {"error": {"code": "bad_request", "message": "malformed HTTP request"}}, status
        )
        response.force_close()
        return response


class _GuardedServer(Server):
    """aiohttp's ``Server`` making ``_GuardedHandler``s and holding the cap."""

    def __init__(self, *args: Any, limits: _Limits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits

    def __call__(self) -> RequestHandler:
        return _GuardedHandler(self, loop=self._loop, limits=self.limits, **self._kwargs)

    def admit(self, new: _GuardedHandler) -> bool:
        """Whether ``new`` stays open; past the cap an older waiting one makes room."""
        limits = self.limits
        if len(self._connections) <= limits.connections_max:
            return True
        # closed ones stay listed until their task ends: count the open ones
        open_now = sum(1 for handler in self._connections if handler.transport is not None)
        if open_now <= limits.connections_max:
            return True
        for handler in self._connections:  # oldest first (insertion order)
            if handler is not new and isinstance(handler, _GuardedHandler):
                if handler.waiting_for_request:
                    limits.budget.info(
                        "%d connections open (the cap): closed a waiting one from %s",
                        limits.connections_max,
                        handler.peername,
                    )
                    handler.shed("cap")
                    return True
        limits.budget.info(
            "%d connections open (the cap), none waiting: refused %s",
            limits.connections_max,
            new.peername,
        )
        new.refuse()
        return False


class _GuardedRunner(web.AppRunner):
    def __init__(self, app: web.Application, limits: _Limits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits

    async def _make_server(self) -> Server:
        made = await super()._make_server()
        # the same server aiohttp made, of the class that makes guarded handlers
        return _GuardedServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            limits=self._limits,
            **made._kwargs,
        )


def _connections_possible(wanted: int) -> int:
    """The cap must bite before the process runs out of file descriptors (then
    accept() fails and the database pool cannot open a socket either): the soft
    open-file limit is raised toward the hard one as far as the cap needs, and
    the cap lowered, with a warning, if that is not enough."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + _DESCRIPTORS_SPARE
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted
    possible = max(soft - _DESCRIPTORS_SPARE, 1)
    log.warning(
        "OMNILEDGER_HTTP_CONNECTIONS_MAX=%d does not fit the open-file limit (%d): "
        "serving at most %d connections; raise `ulimit -n` for more",
        wanted,
        soft,
        possible,
    )
    return possible


async def serve(
    app: web.Application, settings: Settings, host: str, port: int, *, backlog: int = 1024
) -> web.AppRunner:
    """Starts ``app`` on ``host:port`` with the connection limits of ``settings``;
    the caller cleans the returned runner up (``runner.addresses`` has the port)."""
    limits = _Limits(
        header_timeout_s=settings.http_header_timeout_s,
        connections_max=_connections_possible(settings.http_connections_max),
        budget=_LogBudget(),
        closed=app[_METRICS].connections_closed,
    )
    runner = _GuardedRunner(
        app,
        limits,
        access_log=None,
        handle_signals=False,
        keepalive_timeout=settings.http_keepalive_timeout_s,
        lingering_time=_LINGER_S,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=backlog)
    await site.start()
    return runner
