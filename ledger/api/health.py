"""``/healthz`` and ``/metrics``: each part's health, and the Prometheus scrape (both public)."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ledger.api.context import HEALTH_CHECKS as _HEALTH_CHECKS
from ledger.api.context import LEDGER, SETTINGS, STORE, Metrics
from ledger.api.context import METRICS as _METRICS
from ledger.api.responses import json_response
from ledger.api.spec import POSITION, Reply, obj, spec
from ledger.app.ledger import DB_ERRORS
from ledger.contract.servers import nats_servers

__all__ = ["HEALTH_LAG_EVENTS_MAX", "HealthCheck", "HealthPart", "add_health_check"]

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


def add_health_check(app: web.Application, check: HealthCheck) -> None:
    app.setdefault(_HEALTH_CHECKS, []).append(check)


#: How long ``/healthz`` waits for a NATS server to accept a connection.
NATS_PROBE_TIMEOUT_S: Final = 0.5


async def nats_reachable(nats_url: str) -> str | None:
    """``None`` when one of the servers of ``nats_url`` (comma-separated) accepts a
    TCP connection in time; else a short reason. The API itself holds no NATS
    connection: this is how it sees the relay's and the projections' broker."""
    failures = []
    for server in nats_servers(nats_url):
        parsed = urllib.parse.urlsplit(server if "://" in server else f"nats://{server}")
        host, port = parsed.hostname or "127.0.0.1", parsed.port or 4222
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), NATS_PROBE_TIMEOUT_S
            )
        except (OSError, TimeoutError) as e:
            failures.append(f"{host}:{port} ({type(e).__name__})")
            continue
        writer.close()
        return None
    return "unreachable at " + ", ".join(failures)


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
    lag_max = app[SETTINGS].health_lag_events_max
    if relay_lag > lag_max:
        problems.append(f"relay: {relay_lag} events behind the log")
    nats_url = app[SETTINGS].nats_url
    if nats_url:
        broken = await nats_reachable(nats_url)
        body["nats"] = "ok" if broken is None else "unreachable"
        if broken is not None:
            problems.append(f"nats: {broken}")
    gauges: list[Any] = [("omniledger_relay_lag_events", "", relay_lag)]
    for check in app.get(_HEALTH_CHECKS, ()):
        part: HealthPart = await check(head)
        body.update(part.fields)
        problems.extend(part.problems)
        gauges.extend(part.gauges)
    return body, problems, gauges


_LAG: Final = {"type": "integer", "minimum": 0}
_HEALTHY: Final = obj(
    {
        "status": {"enum": ["ok", "degraded"]},
        "problems": {"type": "array", "items": {"type": "string"}},
        "database": {"const": "ok"},
        "head_position": POSITION,
        "relay_position": POSITION,
        "relay_lag_events": _LAG,
        "nats": {
            "enum": ["ok", "unreachable"],
            "description": "whether a NATS server of OMNILEDGER_NATS_URL accepts connections",
        },
        "projections": {
            "type": "object",
            "description": "each read model's position and lag (when served with projections)",
            "additionalProperties": obj({"position": POSITION, "lag_events": _LAG}),
        },
        "children": {
            "type": "object",
            "description": "omniledger up: each child process's state, pid, restarts, last exit",
            "additionalProperties": {"type": "object"},
        },
        "worker": obj(
            {"index": {"type": "integer", "minimum": 1}, "pid": {"type": "integer"}},
            description="--workers N: which of the API processes sharing the port answered",
        ),
    },
    optional=("projections", "children", "nats", "worker"),
)


@spec(
    "Each part's health: the database, the relay's and the read models' lag",
    {
        200: Reply(_HEALTHY, "ok, or degraded (writes work; problems says what is behind)"),
        503: Reply(
            obj({"status": {"const": "unavailable"}, "database": {"const": "unreachable"}}),
            "the database cannot be reached; Retry-After",
        ),
    },
    description="degraded past OMNILEDGER_HEALTH_LAG_EVENTS_MAX events of lag (default"
    f" {HEALTH_LAG_EVENTS_MAX}), or while NATS is unreachable",
)
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


@spec("Prometheus metrics", {200: Reply(None, "Prometheus text", "text/plain")})
async def metrics(request: web.Request) -> web.Response:
    m: Metrics = request.app[_METRICS]
    ledger = request.app[LEDGER]
    lines = [generate_latest(m.registry).decode()]
    for name, value in ledger.stats.items():
        lines.append(f"# TYPE omniledger_writer_{name} gauge\nomniledger_writer_{name} {value}\n")
    pool = request.app[STORE].pool
    for name, value in (
        ("omniledger_writer_queue_depth", ledger.queue_depth),
        ("omniledger_db_pool_size", pool.get_size()),
        ("omniledger_db_pool_in_use", pool.get_size() - pool.get_idle_size()),
    ):
        lines.append(f"# TYPE {name} gauge\n{name} {value}\n")
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
