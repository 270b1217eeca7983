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
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import asyncpg
import orjson
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from ledger.domain.commands import (
    CHANNELS,
    parse_command,
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
    Unauthorized,
    Unavailable,
    UnknownSeller,
    ValidationError,
)
from ledger.domain.money import format_minor, parse_currency
from ledger.domain.orders import Order, order_stream_id
from ledger.domain.sellers import CERTIFICATION_KINDS, CURATION_STATUSES, seller_stream_id
from ledger.openapi import openapi_document
from ledger.service import DB_ERRORS, Ledger
from ledger.settings import Settings
from ledger.store import EventStore

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
    "create_app",
    "int_param",
    "json_response",
    "principal",
    "read_json",
    "require",
]

log = logging.getLogger("omniledger.http")

BODY_BYTES_MAX: Final = 1024 * 1024
BATCH_EVENTS_MAX: Final = 1000
LOG_PAGE_MAX: Final = 1000
ROLES: Final = frozenset({"admin", "gateway", "seller", "auditor"})

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
    Unavailable: 503,
    LedgerError: 400,
}

LEDGER: Final = web.AppKey("ledger", Ledger)
STORE: Final = web.AppKey("store", EventStore)
SETTINGS: Final = web.AppKey("settings", Settings)
_METRICS: Final = web.AppKey("metrics", "Metrics")
_KEYS: Final = web.AppKey("key_cache", dict)
BALANCE_READER: Final = web.AppKey("balance_reader", object)
PRINCIPAL: Final = web.RequestKey("principal", object)


@dataclass(frozen=True, slots=True)
class Principal:
    role: str
    seller_id: str | None

    def may_see_seller(self, seller_id: str) -> bool:
        return self.role in ("admin", "auditor") or (
            self.role == "seller" and self.seller_id == seller_id
        )


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


def error_response(error: LedgerError) -> web.Response:
    status = status_for(error)
    headers = {"Retry-After": "1"} if status == 503 else None
    return json_response({"error": error.as_dict()}, status, headers)


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, or a 400/413 naming what is wrong."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge("the body is larger than 1 MiB") from None
    if not raw:
        raise BadRequest("the body is empty; send a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"the body is not valid JSON: {e.msg}") from None


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
        found = Principal(row[0], row[1])
        cache[digest] = found
    if found.role not in roles:
        raise Forbidden(f"role {found.role} may not call this")
    request[PRINCIPAL] = found
    return await handler(request)


# -- handlers --------------------------------------------------------------------------


@require("admin", "gateway")
async def post_events(request: web.Request) -> web.Response:
    ledger = request.app[LEDGER]
    body = await read_json(request)
    if isinstance(body, dict) and "events" in body and "type" not in body:
        items = body["events"]
        if not isinstance(items, list):
            raise ValidationError("events must be a list", field="events")
        if not 1 <= len(items) <= BATCH_EVENTS_MAX:
            raise ValidationError(f"a batch holds 1 to {BATCH_EVENTS_MAX} events", field="events")
        return json_response({"results": await _record_batch(ledger, items)})
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    result = await ledger.record(parse_command(body))
    request.app[_METRICS].events.inc(result.status == "recorded")
    return json_response(result.as_dict(), 201 if result.status == "recorded" else 200)


async def _record_batch(ledger: Ledger, items: list[Any]) -> list[dict[str, Any]]:
    results: list[dict[str, Any] | None] = [None] * len(items)
    pending: list[tuple[int, Awaitable[Any]]] = []
    for index, item in enumerate(items):
        try:
            pending.append((index, ledger.record(parse_command(item))))
        except LedgerError as e:
            results[index] = {"status": "rejected", "error": e.as_dict()}
    outcomes = await asyncio.gather(*(aw for _, aw in pending), return_exceptions=True)
    for (index, _), outcome in zip(pending, outcomes, strict=True):
        if isinstance(outcome, LedgerError):
            results[index] = {"status": "rejected", "error": outcome.as_dict()}
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
        raise NotFound(f"no order {order_id} on channel {channel}")
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
            raise ValidationError(f"unknown channel {channel!r}", field="channels")
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
            if not isinstance(valid, str):
                raise ValidationError("valid_until must be a date", field="certifications")
            try:
                datetime.strptime(valid, "%Y-%m-%d")
            except ValueError:
                raise ValidationError(
                    "valid_until must be YYYY-MM-DD", field="certifications"
                ) from None
            entry["valid_until"] = valid
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
    if role == "seller":
        seller_id = parse_identifier(seller_id, "seller_id")
        if not await request.app[STORE].stream_exists(seller_stream_id(seller_id)):
            # a key for a typo would never work, or would open a later seller's data
            raise UnknownSeller(f"seller {seller_id} is not registered", field="seller_id")
    elif seller_id is not None:
        raise ValidationError("only a seller key names a seller_id", field="seller_id")
    key = "olk_" + secrets.token_urlsafe(32)
    await request.app[STORE].add_key(hash_key(key), role, seller_id)
    return json_response({"key": key, "role": role, "seller_id": seller_id}, 201)


class BalanceReader(Protocol):
    async def __call__(self, seller_id: str, currency: str) -> dict[str, Any] | None: ...


def write_side_balance(store: EventStore) -> BalanceReader:
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


async def _require_registered(store: EventStore, seller_id: str) -> None:
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
    store: EventStore,
    *,
    extensions: Iterable[Extension] = (),
) -> web.Application:
    """The aiohttp application; the caller owns the ledger's and pool's lifecycle."""
    app = web.Application(middlewares=[_errors, _auth], client_max_size=BODY_BYTES_MAX)
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


async def install_admin_key(store: EventStore, admin_key: str | None) -> None:
    """The first admin key comes from ``OMNILEDGER_ADMIN_KEY`` at start-up (stored hashed)."""
    if admin_key:
        await store.add_key(hash_key(admin_key), "admin", None)
