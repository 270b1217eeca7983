"""The aiohttp application of the core: its state, middlewares and routes.

Gateways, projections and audit add their routes through ``Extension``
objects passed to ``create_app``: this package imports none of them. Every
route, theirs included, carries a spec beside its handler, and the OpenAPI
document is built from the routes the app ends up serving
(``ledger.api.openapi``): an app with an undocumented route is not built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol

from aiohttp import web

from ledger.api import balance, events, health, keys, orders, sellers
from ledger.api.auth import authenticate
from ledger.api.context import (
    BALANCE_POSITION,
    BALANCE_READER,
    BODY_BYTES_MAX,
    KEY_CACHE,
    LEDGER,
    METRICS,
    READ_STORE,
    REPLICA_LAG,
    SETTINGS,
    STORE,
    Metrics,
)
from ledger.api.middleware import answer_errors, read_body_in_time
from ledger.api.openapi import OPENAPI_DOCUMENT, get_openapi, get_public_openapi, spec_problems
from ledger.app.ledger import Ledger
from ledger.ops.settings import Settings
from ledger.store import LedgerStore
from ledger.store.replica import ReplicaLag

__all__ = ["CORE_ROUTES", "Extension", "create_app"]


class Extension(Protocol):
    """A part that adds routes (gateways, projections, audit) to the app."""

    def setup(self, app: web.Application) -> None: ...


#: The core's routes: ``(method, path, handler)``; each handler carries its spec.
CORE_ROUTES: Final[tuple[tuple[str, str, Callable[..., Any]], ...]] = (
    ("POST", "/v1/events", events.post_events),
    ("GET", "/v1/events", events.get_events),
    ("GET", "/v1/orders/{channel}/{order_id}", orders.get_order),
    ("POST", "/v1/sellers", sellers.post_sellers),
    ("POST", "/v1/sellers/{seller_id}/curation", sellers.post_curation),
    ("GET", "/v1/sellers/{seller_id}/balance", balance.get_balance),
    ("POST", "/v1/keys", keys.post_keys),
    ("GET", "/v1/openapi.json", get_openapi),
    ("GET", "/openapi.json", get_public_openapi),
    ("GET", "/healthz", health.healthz),
    ("GET", "/metrics", health.metrics),
)


def create_app(
    settings: Settings,
    ledger: Ledger,
    store: LedgerStore,
    *,
    extensions: Iterable[Extension] = (),
    read_store: LedgerStore | None = None,
) -> web.Application:
    """The aiohttp application; the caller owns the ledger's and pools' lifecycle.

    ``read_store``: on OMNILEDGER_READ_DATABASE_URL (a standby), for the reads of the log.
    """
    app = web.Application(
        middlewares=[answer_errors, authenticate, read_body_in_time],
        client_max_size=BODY_BYTES_MAX,
    )
    app[SETTINGS] = settings
    app[LEDGER] = ledger
    app[STORE] = store
    app[READ_STORE] = read_store or store
    if read_store is not None:
        app[REPLICA_LAG] = ReplicaLag(read_store.pool)
    app[METRICS] = Metrics()
    app[KEY_CACHE] = {}
    app[BALANCE_READER] = balance.write_side_balance(store)
    app[BALANCE_POSITION] = balance.head_position(store)
    app[OPENAPI_DOCUMENT] = {}
    for method, path, handler in CORE_ROUTES:
        app.router.add_route(method, path, handler)
    for extension in extensions:
        extension.setup(app)
    problems = spec_problems(app)
    if problems:
        raise RuntimeError("routes the OpenAPI document cannot describe: " + "; ".join(problems))
    return app
