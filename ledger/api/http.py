"""The HTTP API's public surface, for importers outside ``ledger/api``.

The API lives in one module per part: ``app`` (create_app, the route table),
``context`` (app keys, metrics), ``auth`` (keys, roles, ``Principal``),
``middleware`` (errors to answers, the body deadline), ``responses`` (the
error table, JSON in and out), one module per group of handlers (``events``,
``orders``, ``sellers``, ``keys``, ``balance``, ``health``), ``spec`` and
``openapi`` (the document built from the routes), ``server`` (``serve()``
and its connection limits). This module only re-exports what the rest of the
tree imports, so that the split changed no importer.
"""

from __future__ import annotations

from ledger.api.app import Extension, create_app
from ledger.api.auth import ROLES, Principal, install_admin_key, principal, require
from ledger.api.balance import write_side_balance, zero_balance
from ledger.api.context import (
    AS_OF_READER,
    BALANCE_POSITION,
    BALANCE_READER,
    LEDGER,
    READ_STORE,
    SETTINGS,
    STORE,
    replica_fields,
)
from ledger.api.events import BATCH_EVENTS_MAX, LOG_PAGE_MAX
from ledger.api.health import HEALTH_LAG_EVENTS_MAX, HealthPart, add_health_check
from ledger.api.responses import bounded_error, int_param, json_response, read_json
from ledger.api.server import serve

__all__ = [
    "AS_OF_READER",
    "BALANCE_POSITION",
    "BALANCE_READER",
    "BATCH_EVENTS_MAX",
    "HEALTH_LAG_EVENTS_MAX",
    "LEDGER",
    "LOG_PAGE_MAX",
    "READ_STORE",
    "ROLES",
    "SETTINGS",
    "STORE",
    "Extension",
    "HealthPart",
    "Principal",
    "add_health_check",
    "bounded_error",
    "create_app",
    "install_admin_key",
    "int_param",
    "json_response",
    "principal",
    "read_json",
    "replica_fields",
    "require",
    "serve",
    "write_side_balance",
    "zero_balance",
]
