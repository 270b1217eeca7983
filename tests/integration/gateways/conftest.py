"""The app with ``GatewayRoutes`` and test secrets, on this session's real PostgreSQL database.

Midtrans' Get Status API is a local stand-in (``midtrans_standin``). By
default ``Hooks.midtrans`` tells it about every body it posts, as Midtrans
knows every notification it sends; ``knows=False`` posts a body Midtrans
never sent (a forgery, a relabelled replay).

Bodies come from ``tests/fixtures/gateways`` with their ids rewritten per test
(isolation by id, never by TRUNCATE) and re-signed with the test keys, as the
gateway would sign them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateways.routes import GatewayRoutes
from ledger.api.http import create_app, install_admin_key
from ledger.app.ledger import Ledger
from ledger.ops.settings import Settings
from ledger.store import LedgerStore
from tests.integration.gateways.midtrans_standin import MidtransStandIn

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gateways"

ADMIN_KEY = "gateway-tests-admin-key"
MIDTRANS_SERVER_KEY = "SB-Mid-server-omniledger-TEST"
XENDIT_TOKEN = "xnd-callback-token-TEST"
SHOPEE_PARTNER_KEY = "shopee-partner-key-TEST"
SHOPEE_CALLBACK_URL = "https://ledger.example.test/v1/gateways/shopee/push"

MIDTRANS = "/v1/gateways/midtrans/notifications"
XENDIT = "/v1/gateways/xendit/callbacks"
SHOPEE = "/v1/gateways/shopee/push"


def fixture(name: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_bytes())
    return value


def midtrans_sign(body: dict[str, Any], server_key: str = MIDTRANS_SERVER_KEY) -> dict[str, Any]:
    signed = dict(body)
    signed["signature_key"] = hashlib.sha512(
        (body["order_id"] + body["status_code"] + body["gross_amount"] + server_key).encode()
    ).hexdigest()
    return signed


def shopee_signature(raw_body: bytes, partner_key: str = SHOPEE_PARTNER_KEY) -> str:
    message = SHOPEE_CALLBACK_URL.encode() + b"|" + raw_body
    return hmac.new(partner_key.encode(), message, hashlib.sha256).hexdigest()


def midtrans_body(name: str, order_id: str, transaction_id: str, **changes: Any) -> dict[str, Any]:
    """A Midtrans fixture about ``order_id`` / ``transaction_id``, re-signed."""
    body = fixture(name)
    body.update(order_id=order_id, transaction_id=transaction_id, **changes)
    return midtrans_sign(body)


def xendit_qr(order_id: str, payment_id: str, amount: int = 10000, **data: Any) -> dict[str, Any]:
    body = fixture("xendit_qr_payment")
    body["data"].update(id=payment_id, reference_id=order_id, amount=amount, **data)
    return body


def xendit_refund(
    refund_id: str, payment_id: str, amount: int, event: str = "refund.succeeded"
) -> dict[str, Any]:
    body = fixture(
        "xendit_refund_succeeded" if event == "refund.succeeded" else "xendit_refund_failed"
    )
    body["data"].update(id=refund_id, payment_id=payment_id, invoice_id=None, amount=amount)
    return body


def shopee_body(name: str, shop_id: str, ordersn: str) -> dict[str, Any]:
    body = fixture(name)
    body["shop_id"] = int(shop_id)
    body["data"]["ordersn"] = ordersn
    return body


@pytest.fixture(scope="session")
async def gw_pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=10)
    assert pool is not None
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def gw_store(gw_pool: asyncpg.Pool) -> LedgerStore:
    store = LedgerStore(gw_pool)
    await store.migrate()
    await install_admin_key(store, ADMIN_KEY)
    return store


@pytest.fixture(scope="session")
async def gw_midtrans_api() -> AsyncIterator[MidtransStandIn]:
    standin = MidtransStandIn(MIDTRANS_SERVER_KEY)
    await standin.start()
    yield standin
    await standin.stop()


@pytest.fixture
def midtrans_api(gw_midtrans_api: MidtransStandIn) -> Iterator[MidtransStandIn]:
    """The stand-in, answering normally again after the test whatever it set."""
    yield gw_midtrans_api
    gw_midtrans_api.reset()


@pytest.fixture(scope="session")
def gw_settings(pg_dsn: str, gw_midtrans_api: MidtransStandIn) -> Settings:
    return Settings(
        database_url=pg_dsn,
        admin_key=ADMIN_KEY,
        midtrans_server_key=MIDTRANS_SERVER_KEY,
        midtrans_api_url=gw_midtrans_api.url,
        # the stand-in answers in milliseconds; the "slow" test waits this out
        midtrans_api_timeout_ms=2000,
        xendit_callback_token=XENDIT_TOKEN,
        shopee_partner_key=SHOPEE_PARTNER_KEY,
        shopee_callback_url=SHOPEE_CALLBACK_URL,
    )


@pytest.fixture(scope="session")
async def gw_ledger(gw_store: LedgerStore) -> AsyncIterator[Ledger]:
    ledger = Ledger(gw_store)
    ledger.start()
    yield ledger
    await ledger.stop()


@pytest.fixture(scope="session")
async def gw_client(
    gw_settings: Settings, gw_ledger: Ledger, gw_store: LedgerStore
) -> AsyncIterator[TestClient]:
    app = create_app(gw_settings, gw_ledger, gw_store, extensions=[GatewayRoutes()])
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
def uid() -> Callable[[str], str]:
    tag = uuid.uuid4().hex[:8]
    return lambda name: f"{name}-{tag}"


@pytest.fixture
def shop_id() -> str:
    """A Shopee shop id of this test alone (digits, as Shopee's are)."""
    return str(uuid.uuid4().int % 10**12 + 10**11)


class Hooks:
    """Posts as the gateways do, and reads back as an operator does."""

    def __init__(
        self, client: TestClient, store: LedgerStore, midtrans_api: MidtransStandIn
    ) -> None:
        self.client = client
        self.store = store
        self.midtrans_api = midtrans_api
        self.admin = {"Authorization": f"Bearer {ADMIN_KEY}"}

    # -- the gateways ----------------------------------------------------------------
    async def raw(
        self, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        # aiohttp warns (an error in these tests) about large raw bytes bodies
        data: Any = io.BytesIO(body) if len(body) > 512 * 1024 else body
        resp = await self.client.post(path, data=data, headers=headers or {})
        text = await resp.text()
        return resp.status, json.loads(text) if text else None

    async def midtrans(
        self, body: dict[str, Any] | bytes, *, knows: bool = True
    ) -> tuple[int, Any]:
        """Posts a notification; ``knows``: Midtrans' status API answers as if it had sent it."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        if knows:
            try:
                sent = json.loads(raw)
            except ValueError:
                sent = None
            if isinstance(sent, dict):
                self.midtrans_api.knows(sent)
        return await self.raw(MIDTRANS, raw, {"Content-Type": "application/json"})

    async def xendit(
        self, body: dict[str, Any] | bytes, token: str | None = XENDIT_TOKEN
    ) -> tuple[int, Any]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["x-callback-token"] = token
        return await self.raw(XENDIT, raw, headers)

    async def shopee(
        self, body: dict[str, Any] | bytes, signature: str | None = "sign"
    ) -> tuple[int, Any]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if signature == "sign":
            signature = shopee_signature(raw)
        if signature is not None:
            headers["Authorization"] = signature
        return await self.raw(SHOPEE, raw, headers)

    async def times(self, n: int, send: Callable[[], Any]) -> list[tuple[int, Any]]:
        """Sends ``n`` times concurrently; every answer must be a 200."""
        answers = await asyncio.gather(*(send() for _ in range(n)))
        for status, body in answers:
            assert status == 200, body
        return list(answers)

    # -- the operator ----------------------------------------------------------------
    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        resp = await self.client.get(path, headers=headers or self.admin)
        return resp.status, await resp.json()

    async def post(
        self, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        resp = await self.client.post(path, json=body, headers=headers or self.admin)
        return resp.status, await resp.json()

    async def seller(self, seller_id: str, **extra: Any) -> None:
        status, body = await self.post(
            "/v1/sellers", {"seller_id": seller_id, "name": "Toko " + seller_id, **extra}
        )
        assert status == 201, body

    async def place(
        self,
        seller_id: str,
        order_id: str,
        amount: str,
        channel: str = "qris",
        currency: str = "IDR",
    ) -> None:
        status, body = await self.post(
            "/v1/events",
            {
                "idempotency_key": uuid.uuid4().hex,
                "type": "order.placed",
                "occurred_at": "2026-11-30T10:00:00+08:00",
                "seller_id": seller_id,
                "order_id": order_id,
                "channel": channel,
                "amount": amount,
                "currency": currency,
            },
        )
        assert status == 201, body

    async def balance(self, seller_id: str, currency: str = "IDR") -> dict[str, Any]:
        status, body = await self.get(f"/v1/sellers/{seller_id}/balance?currency={currency}")
        assert status == 200, body
        return dict(body)

    async def order(self, order_id: str, channel: str = "qris") -> dict[str, Any]:
        status, body = await self.get(f"/v1/orders/{channel}/{order_id}")
        assert status == 200, body
        return dict(body)

    async def history_types(self, order_id: str, channel: str = "qris") -> list[str]:
        return [e["type"] for e in (await self.order(order_id, channel))["history"]]

    async def suspense(self) -> list[dict[str, Any]]:
        status, body = await self.get("/v1/suspense")
        assert status == 200, body
        return list(body["suspense"])

    async def suspense_for(self, key: str) -> list[dict[str, Any]]:
        return [e for e in await self.suspense() if e["event"]["idempotency_key"] == key]

    async def resolve(
        self, entry_id: str, channel: str, order_id: str, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        return await self.post(
            f"/v1/suspense/{entry_id}/resolve",
            {"channel": channel, "order_id": order_id},
            headers=headers,
        )

    async def key(self, role: str, seller_id: str | None = None) -> dict[str, str]:
        body: dict[str, Any] = {"role": role}
        if seller_id is not None:
            body["seller_id"] = seller_id
        status, out = await self.post("/v1/keys", body)
        assert status == 201, out
        return {"Authorization": f"Bearer {out['key']}"}

    async def head(self) -> int:
        position, _ = await self.store.head()
        return position


@pytest.fixture
def hooks(gw_client: TestClient, gw_store: LedgerStore, midtrans_api: MidtransStandIn) -> Hooks:
    return Hooks(gw_client, gw_store, midtrans_api)
