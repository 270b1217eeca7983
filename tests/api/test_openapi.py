"""``GET /v1/openapi.json`` documents exactly the routes the app serves (CONTRACT section 4).

"The app" is the one ``omniledger serve``/``up`` runs: the core routes plus
every extension from ``ledger.ops.bootstrap.extensions`` (gateways and suspense,
audit and reconciliation, projection reads).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ledger.api.http import create_app
from ledger.api.openapi import openapi_document
from ledger.app.ledger import Ledger
from ledger.ops import bootstrap
from ledger.ops.settings import Settings
from ledger.store.postgres import LedgerStore

#: Documented routes the full app does not serve. Empty: the gateways,
#: suspense, reconciliation and projection routes are all served now.
DOCUMENTED_NOT_YET_SERVED: frozenset[tuple[str, str]] = frozenset()
_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
async def full_client(
    settings: Settings, ledger: Ledger, store: LedgerStore, pool: asyncpg.Pool
) -> AsyncIterator[TestClient]:
    """The app as ``omniledger up`` builds it: core routes plus ``bootstrap.extensions``."""
    app = create_app(settings, ledger, store, extensions=bootstrap.extensions(settings, pool))
    async with TestClient(TestServer(app)) as client:
        yield client


def served(app: Any) -> set[tuple[str, str]]:
    routes = set()
    for resource in app.router.resources():
        for route in resource:
            if route.method == "HEAD":  # aiohttp adds HEAD to every GET
                continue
            routes.add((route.method, resource.canonical))
    return routes


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, ops in doc["paths"].items()
        for method in ops
        if method in _METHODS
    }


async def test_the_document_is_served_and_is_openapi_3(api):
    status, doc = await api.get("/v1/openapi.json")
    assert status == 200
    assert doc == openapi_document()
    assert doc["openapi"].startswith("3.")
    assert doc["info"]["title"]


async def test_every_served_route_is_documented(client, full_client, api):
    status, doc = await api.get("/v1/openapi.json")
    assert status == 200
    for app in (client.app, full_client.app):
        missing = served(app) - documented(doc)
        assert missing == set(), f"served but not documented: {sorted(missing)}"


async def test_the_full_app_serves_its_own_document(full_client, admin):
    resp = await full_client.get("/v1/openapi.json", headers=admin)
    assert resp.status == 200
    assert await resp.json() == openapi_document()


async def test_the_documented_but_unserved_routes_are_exactly_the_allowlist(full_client, api):
    status, doc = await api.get("/v1/openapi.json")
    assert status == 200
    extra = documented(doc) - served(full_client.app)
    assert extra == DOCUMENTED_NOT_YET_SERVED, (
        f"documented, not served, not allowlisted: {sorted(extra - DOCUMENTED_NOT_YET_SERVED)}; "
        f"allowlisted but now served (remove them): {sorted(DOCUMENTED_NOT_YET_SERVED - extra)}"
    )


async def test_public_routes_are_documented_without_security(full_client, api):
    status, doc = await api.get("/v1/openapi.json")
    assert status == 200
    for resource in full_client.app.router.resources():
        for route in resource:
            if route.method == "HEAD":
                continue
            op = doc["paths"][resource.canonical][route.method.lower()]
            public = getattr(route.handler, "roles", None) is None
            assert (op.get("security") == []) == public, (route.method, resource.canonical)


async def test_every_reference_resolves(api):
    status, doc = await api.get("/v1/openapi.json")
    assert status == 200
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            assert part in node, f"unresolved {ref}"
            node = node[part]
