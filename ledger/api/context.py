"""The application's state (typed ``web.AppKey``s) and its metrics: what every part reads."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

from ledger.app.ledger import Ledger
from ledger.ops.settings import Settings
from ledger.store import LedgerStore

__all__ = [
    "AS_OF_READER",
    "BALANCE_POSITION",
    "BALANCE_READER",
    "BODY_BYTES_MAX",
    "HEALTH_CHECKS",
    "KEY_CACHE",
    "LEDGER",
    "METRICS",
    "READ_STORE",
    "REPLICA_LAG",
    "SETTINGS",
    "STORE",
    "Metrics",
    "replica_fields",
]

BODY_BYTES_MAX: Final = 1024 * 1024

LEDGER: Final = web.AppKey("ledger", Ledger)
STORE: Final = web.AppKey("store", LedgerStore)
SETTINGS: Final = web.AppKey("settings", Settings)
#: What the read endpoints read the log from: OMNILEDGER_READ_DATABASE_URL's store, else STORE.
READ_STORE: Final = web.AppKey("read_store", LedgerStore)
#: Set only when reads come from OMNILEDGER_READ_DATABASE_URL: an async callable
#: giving its lag in seconds (``ledger.store.replica.ReplicaLag``).
REPLICA_LAG: Final = web.AppKey("replica_lag", object)
METRICS: Final[web.AppKey[Metrics]] = web.AppKey("metrics")
KEY_CACHE: Final = web.AppKey("key_cache", dict)
BALANCE_READER: Final = web.AppKey("balance_reader", object)
#: The position the balance reader's model has reached (an async callable).
BALANCE_POSITION: Final = web.AppKey("balance_position", object)
#: Answers ``?as_of=`` (and ``known_at``) from the log; set by the audit extension.
AS_OF_READER: Final = web.AppKey("as_of_reader", object)
#: ``ledger.api.health.HealthCheck``s added by extensions (``add_health_check``)
HEALTH_CHECKS: Final = web.AppKey("health_checks", list)


async def replica_fields(app: web.Application) -> dict[str, Any]:
    """``{"replica_lag_s": ...}`` for an answer read from the read database; ``{}`` without one."""
    lag = app.get(REPLICA_LAG)
    return {} if lag is None else {"replica_lag_s": await lag()}  # type: ignore[operator]


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
        self.gateway_facts = Counter(
            "omniledger_gateway_facts",
            "Canonical facts from gateway webhooks by gateway and outcome"
            " (recorded, duplicate, suspense, ignored)",
            ["gateway", "outcome"],
            registry=self.registry,
        )
        self.connections_closed = Counter(
            "omniledger_http_connections_closed",
            "Connections the server closed on a limit (header_timeout, cap, refused, malformed)",
            ["reason"],
            registry=self.registry,
        )
