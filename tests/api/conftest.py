"""The aiohttp app end to end on a real PostgreSQL database of this test session."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ledger.api.http import create_app, install_admin_key
from ledger.app.ledger import Ledger
from ledger.ops.settings import Settings
from ledger.store.postgres import LedgerStore

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


class Api:
    """Small helpers over the test client that keep the tests readable."""

    def __init__(self, client: TestClient, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers

    async def post(
        self, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        resp = await self.client.post(path, json=body, headers=headers or self.headers)
        return resp.status, await resp.json()

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        resp = await self.client.get(path, headers=headers or self.headers)
        return resp.status, await resp.json()

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
