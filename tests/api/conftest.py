"""The aiohttp app end to end on a real PostgreSQL database of this test session.

Every answer read through ``Api`` (and ``answer``) is checked against the
OpenAPI document the app serves (``check_answer``): a status the operation
does not document, a missing or renamed field, a field the document does not
name, a value outside its enum or pattern fails the test that got it.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator

from ledger.api.http import create_app, install_admin_key
from ledger.api.openapi import openapi_document
from ledger.app.ledger import Ledger
from ledger.ops.settings import Settings
from ledger.store import LedgerStore

ADMIN_KEY = "test-admin-key"


@pytest.fixture(scope="session")
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=10)
    assert pool is not None
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def store(pool: asyncpg.Pool) -> LedgerStore:
    store = LedgerStore(pool)
    await store.migrate()
    await install_admin_key(store, ADMIN_KEY)
    return store


@pytest.fixture(scope="session")
def settings(pg_dsn: str) -> Settings:
    return Settings(database_url=pg_dsn, admin_key=ADMIN_KEY)


@pytest.fixture(scope="session")
async def ledger(store: LedgerStore) -> AsyncIterator[Ledger]:
    ledger = Ledger(store)
    ledger.start()
    yield ledger
    await ledger.stop()


@pytest.fixture(scope="session")
async def client(
    settings: Settings, ledger: Ledger, store: LedgerStore
) -> AsyncIterator[TestClient]:
    app = create_app(settings, ledger, store)
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture(scope="session")
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def uid() -> Callable[[str], str]:
    """Unique ids per test: isolation by id, never by TRUNCATE."""
    tag = uuid.uuid4().hex[:8]
    return lambda name: f"{name}-{tag}"


def strict(schema: Any) -> Any:
    """``schema`` with every object closed (``additionalProperties: false``) unless it says
    otherwise: the served document lets clients expect more fields later, while the
    tests hold the server to naming every field it sends."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


_PARAM = re.compile(r"\{[^}]+\}")
_FORMATS = Draft202012Validator.FORMAT_CHECKER


class Contract:
    """One app's OpenAPI document, as a checker of that app's answers."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self._root = strict(copy.deepcopy(document))
        self._templates = sorted(
            (
                (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$"), p)
                for p in document["paths"]
            ),
            key=lambda t: "{" in t[1],  # a fixed path wins over a template that matches it
        )
        self._validators: dict[str, Draft202012Validator] = {}
        #: ``(METHOD, path template, status)`` of every answer checked
        self.seen: set[tuple[str, str, int]] = set()

    def route(self, path: str) -> str | None:
        path = path.split("?", 1)[0]
        return next((t for rx, t in self._templates if rx.match(path)), None)

    def check(self, method: str, path: str, status: int, media: str, body: Any) -> None:
        template = self.route(path)
        op = self.document["paths"].get(template, {}).get(method.lower()) if template else None
        if op is None:
            return  # not a route of the app: its 404/405 are aiohttp's, not documented
        where = f"{method} {template} -> {status}"
        assert str(status) in op["responses"], f"{where}: status not in the OpenAPI document"
        content = op["responses"][str(status)]["content"]
        assert media in content, f"{where}: {media} not documented (only {sorted(content)})"
        self.seen.add((method, template, status))
        if "schema" not in content[media]:
            return
        pointer = "/".join(
            part.replace("~", "~0").replace("/", "~1")
            for part in ("#", "paths", template, method.lower(), "responses", str(status),
                         "content", media, "schema")
        )  # fmt: skip
        validator = self._validators.get(pointer)
        if validator is None:
            root = {**self._root, "$ref": pointer}
            validator = Draft202012Validator(root, format_checker=_FORMATS)
            self._validators[pointer] = validator
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        found = "; ".join(
            f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message[:300]}"
            for e in errors[:5]
        )
        assert not errors, f"{where}: the answer does not match the OpenAPI document: {found}"


_CONTRACTS: dict[int, Contract] = {}


def contract_of(app: web.Application) -> Contract:
    """The checker of ``app``'s answers (apps live as long as the session's fixtures)."""
    found = _CONTRACTS.get(id(app))
    if found is None or found.document is not openapi_document(app):
        found = _CONTRACTS[id(app)] = Contract(openapi_document(app))
    return found


async def answer(
    client: TestClient, method: str, path: str, *, headers: dict[str, str], **kwargs: Any
) -> tuple[int, Any]:
    """One request, its answer checked against the OpenAPI document: (status, body); the
    body is the parsed JSON, or the text of an answer that is not JSON (``/metrics``)."""
    resp = await client.request(method, path, headers=headers, **kwargs)
    body = await resp.json() if resp.content_type == "application/json" else await resp.text()
    contract_of(client.app).check(method, path, resp.status, resp.content_type, body)
    return resp.status, body


class Api:
    """Small helpers over the test client that keep the tests readable; every answer
    is checked against the OpenAPI document (``answer``)."""

    def __init__(self, client: TestClient, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers

    async def post(
        self, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        return await answer(self.client, "POST", path, json=body, headers=headers or self.headers)

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return await answer(self.client, "GET", path, headers=headers or self.headers)

    async def seller(self, seller_id: str, **extra: Any) -> None:
        status, body = await self.post(
            "/v1/sellers", {"seller_id": seller_id, "name": "Toko " + seller_id, **extra}
        )
        assert status == 201, body

    async def event(self, **fields: Any) -> tuple[int, Any]:
        fields.setdefault("idempotency_key", uuid.uuid4().hex)
        fields.setdefault("occurred_at", "2026-11-30T10:00:00+08:00")
        return await self.post("/v1/events", fields)

    async def place(
        self, seller_id: str, order_id: str, amount: str = "100000", channel: str = "qris"
    ) -> Any:
        status, body = await self.event(
            type="order.placed",
            seller_id=seller_id,
            order_id=order_id,
            channel=channel,
            amount=amount,
        )
        assert status == 201, body
        return body

    async def capture(
        self, order_id: str, amount: str, channel: str = "qris", **extra: Any
    ) -> tuple[int, Any]:
        return await self.event(
            type="payment.captured",
            order_id=order_id,
            channel=channel,
            amount=amount,
            gateway=extra.pop("gateway", "xendit"),
            gateway_ref=extra.pop("gateway_ref", uuid.uuid4().hex),
            **extra,
        )

    async def balance(self, seller_id: str) -> dict[str, Any]:
        status, body = await self.get(f"/v1/sellers/{seller_id}/balance")
        assert status == 200, body
        return body

    async def key(self, role: str, seller_id: str | None = None) -> dict[str, str]:
        """A fresh API key of ``role``, made by the admin, as request headers."""
        body: dict[str, Any] = {"role": role}
        if seller_id is not None:
            body["seller_id"] = seller_id
        status, out = await self.post("/v1/keys", body, headers=self.headers)
        assert status == 201, out
        return {"Authorization": f"Bearer {out['key']}"}

    async def events_after(self, after: int) -> list[dict[str, Any]]:
        """Every log entry after ``after``, following ``next_after`` page by page."""
        out: list[dict[str, Any]] = []
        while True:
            status, page = await self.get(f"/v1/events?after={after}&limit=1000")
            assert status == 200, page
            out.extend(page["events"])
            if page["next_after"] is None:
                return out
            after = page["next_after"]


@pytest.fixture
def api(client: TestClient, admin: dict[str, str]) -> Api:
    return Api(client, admin)


@pytest.fixture(scope="module")
async def replica(settings, store, admin) -> AsyncIterator[Api]:
    """A second serve process: its own Ledger (writer, cache) over the same database."""
    ledger = Ledger(store)
    ledger.start()
    app = create_app(settings, ledger, store)
    async with TestClient(TestServer(app)) as client:
        yield Api(client, admin)
    await ledger.stop()


@pytest.fixture(params=["one_app", "two_apps"])
def apis(request, api, replica) -> list[Api]:
    """The session's app alone, or it and a replica splitting the requests."""
    return [api] if request.param == "one_app" else [api, replica]
