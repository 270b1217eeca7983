"""The gateway routes as ``omniledger serve`` wires them: through ``bootstrap.extensions``."""

from __future__ import annotations

import json

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from gateways.routes import GatewayRoutes
from ledger.api.http import create_app
from ledger.app.ledger import Ledger
from ledger.ops import bootstrap
from ledger.ops.settings import Settings
from ledger.store import LedgerStore

PATHS = (
    "/v1/gateways/midtrans/notifications",
    "/v1/gateways/xendit/callbacks",
    "/v1/gateways/shopee/push",
)


def test_the_composition_root_adds_the_gateway_routes(settings: Settings, pool) -> None:
    assert any(isinstance(e, GatewayRoutes) for e in bootstrap.extensions(settings, pool))


async def test_without_secrets_every_gateway_is_401_not_configured(
    settings: Settings, ledger: Ledger, store: LedgerStore, pool
) -> None:
    assert settings.midtrans_server_key is None  # the api tests' settings have no secrets
    app = create_app(settings, ledger, store, extensions=bootstrap.extensions(settings, pool))
    body = json.dumps(
        {"order_id": "o", "status_code": "200", "gross_amount": "1.00", "signature_key": "x"}
    ).encode()
    head, _ = await store.head()
    async with TestClient(TestServer(app)) as client:
        for path in PATHS:
            resp = await client.post(
                path, data=body, headers={"Authorization": "abc", "x-callback-token": ""}
            )
            assert resp.status == 401, path
            assert (await resp.json())["error"]["code"] == "gateway_not_configured"
    assert (await store.head())[0] == head


async def test_database_down_is_503_with_retry_after(pg_dsn: str) -> None:
    """The only 5xx a gateway sees: retry later, nothing was recorded."""
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    assert pool is not None
    store = LedgerStore(pool)
    ledger = Ledger(store)
    ledger.start()
    settings = Settings(database_url=pg_dsn, xendit_callback_token="tok")
    app = create_app(settings, ledger, store, extensions=[GatewayRoutes()])
    await pool.close()  # the database goes away
    body = {
        "event": "qr.payment",
        "data": {
            "id": "qrpy_down",
            "reference_id": "o-down",
            "amount": 10,
            "currency": "IDR",
            "status": "SUCCEEDED",
            "created": "2022-10-22T06:30:05Z",
        },
    }
    try:
        async with TestClient(TestServer(app)) as client:
            resp = await client.post(
                PATHS[1], data=json.dumps(body).encode(), headers={"x-callback-token": "tok"}
            )
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "1"
            assert (await resp.json())["error"]["code"] == "unavailable"
    finally:
        await ledger.stop()
