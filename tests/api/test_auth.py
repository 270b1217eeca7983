"""Authentication and roles (CONTRACT section 5): who may call what, as ``@require`` says."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest

from tests.api.conftest import ADMIN_KEY, Api

AT = "2026-11-30T10:00:00+08:00"

#: Every authenticated route and the roles that may call it (ledger/api/http.py @require).
#: "seller" means a seller key for the seller the request is about.
MATRIX: dict[tuple[str, str], set[str]] = {
    ("POST", "/v1/events"): {"admin", "gateway", "seller"},
    ("GET", "/v1/events"): {"admin", "auditor"},
    ("GET", "/v1/orders/{channel}/{order_id}"): {"admin", "auditor", "seller"},
    ("POST", "/v1/sellers"): {"admin"},
    ("POST", "/v1/sellers/{seller_id}/curation"): {"admin"},
    ("POST", "/v1/keys"): {"admin"},
    ("GET", "/v1/sellers/{seller_id}/balance"): {"admin", "auditor", "seller"},
    ("GET", "/v1/openapi.json"): {"admin", "auditor", "gateway", "seller"},
}
ROLES = ["admin", "gateway", "payouts", "seller", "auditor"]


class World:
    """One seller with one order, and a key of each role."""

    def __init__(self, api: Api, seller: str, other: str, order_id: str) -> None:
        self.api = api
        self.seller = seller
        self.other = other
        self.order_id = order_id
        self.keys: dict[str, dict[str, str]] = {}

    def request(self, method: str, route: str) -> tuple[str, str, Any]:
        """A valid request on ``route``, about this world's seller."""
        path = route.format(channel="qris", order_id=self.order_id, seller_id=self.seller)
        body: Any = None
        if route == "/v1/events" and method == "POST":
            body = {"idempotency_key": uuid.uuid4().hex, "type": "order.placed",
                    "occurred_at": AT, "seller_id": self.seller,
                    "order_id": uuid.uuid4().hex, "channel": "qris", "amount": "10"}  # fmt: skip
        elif route == "/v1/sellers":
            body = {"seller_id": "s-" + uuid.uuid4().hex, "name": "Toko"}
        elif route.endswith("/curation"):
            body = {"status": "verified", "certifications": []}
        elif route == "/v1/keys":
            body = {"role": "auditor"}
        return method, path, body


@pytest.fixture(scope="module")
async def world(client, admin) -> World:
    """Shared by the tests of this module: they only add, never change, what it holds."""
    api = Api(client, admin)
    tag = uuid.uuid4().hex[:8]
    seller, other, order_id = f"s-{tag}", f"t-{tag}", f"o-{tag}"
    await api.seller(seller)
    await api.seller(other)
    await api.place(seller, order_id, "1000")
    w = World(api, seller, other, order_id)
    w.keys["admin"] = await api.key("admin")
    w.keys["gateway"] = await api.key("gateway")
    w.keys["seller"] = await api.key("seller", seller)
    w.keys["auditor"] = await api.key("auditor")
    w.keys["payouts"] = await api.key("payouts")
    w.keys["other_seller"] = await api.key("seller", other)
    return w


async def call(client: Any, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    resp = await client.request(method, path, json=body, headers=headers)
    out = await resp.json()
    return resp.status, out


@pytest.mark.parametrize(("method", "route"), list(MATRIX))
async def test_the_role_matrix(client, store, world, method, route):
    for role in ROLES:
        m, path, body = world.request(method, route)
        head = await store.head()
        status, out = await call(client, m, path, body, world.keys[role])
        if role in MATRIX[(method, route)]:
            assert status in (200, 201), (role, method, path, status, out)
        else:
            assert status == 403, (role, method, path, status, out)
            assert out["error"]["code"] == "forbidden"
            assert await store.head() == head, "a forbidden call records nothing"


@pytest.mark.parametrize(("method", "route"), list(MATRIX))
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Bearer wrong-key", f"Basic {ADMIN_KEY}", ADMIN_KEY,
     f"Bearer {ADMIN_KEY}x", f"Bearer {ADMIN_KEY[:-1]}", "Bearer olk_" + "A" * 43],
)  # fmt: skip
async def test_no_or_bad_credentials_are_401(client, store, world, method, route, authorization):
    m, path, body = world.request(method, route)
    headers = {} if authorization is None else {"Authorization": authorization}
    head = await store.head()
    status, out = await call(client, m, path, body, headers)
    assert status == 401, (authorization, method, path, out)
    assert out["error"]["code"] == "unauthorized"
    assert await store.head() == head


async def test_the_first_admin_key_and_minted_admin_keys_both_work(client, world):
    for headers in ({"Authorization": f"Bearer {ADMIN_KEY}"}, world.keys["admin"]):
        status, _ = await call(client, "GET", "/v1/events?limit=1", None, headers)
        assert status == 200


async def test_a_seller_key_reads_only_its_own_seller(client, world):
    own, other = world.keys["seller"], world.keys["other_seller"]
    status, out = await call(client, "GET", f"/v1/sellers/{world.seller}/balance", None, own)
    assert (status, out["seller_id"]) == (200, world.seller), out
    status, out = await call(client, "GET", f"/v1/sellers/{world.other}/balance", None, own)
    assert (status, out["error"]["code"]) == (403, "forbidden"), out
    status, out = await call(client, "GET", f"/v1/sellers/{world.seller}/balance", None, other)
    assert (status, out["error"]["code"]) == (403, "forbidden"), out
    order = f"/v1/orders/qris/{world.order_id}"
    status, out = await call(client, "GET", order, None, own)
    assert (status, out["seller_id"]) == (200, world.seller), out
    # another seller's order is answered as a missing one: a seller key does
    # not learn which order ids exist (a 403 here would tell it)
    status, out = await call(client, "GET", order, None, other)
    assert (status, out["error"]["code"]) == (404, "not_found"), out
    status, missing = await call(client, "GET", order + "-none", None, other)
    assert status == 404
    assert missing["error"]["message"] == out["error"]["message"].replace(
        world.order_id, world.order_id + "-none"
    )
    # whether another seller exists is not for a seller key to learn
    ghost = f"/v1/sellers/ghost-{uuid.uuid4().hex[:8]}/balance"
    status, out = await call(client, "GET", ghost, None, own)
    assert (status, out["error"]["code"]) == (403, "forbidden"), out


async def test_the_auditor_reads_everything_and_writes_nothing(client, store, world):
    auditor = world.keys["auditor"]
    for path in (
        "/v1/events?limit=5",
        f"/v1/orders/qris/{world.order_id}",
        f"/v1/sellers/{world.seller}/balance",
        f"/v1/sellers/{world.other}/balance",
        "/v1/openapi.json",
    ):
        status, out = await call(client, "GET", path, None, auditor)
        assert status == 200, (path, out)
    head = await store.head()
    for method, route in MATRIX:
        if method != "POST":
            continue
        m, path, body = world.request(method, route)
        status, out = await call(client, m, path, body, auditor)
        assert (status, out["error"]["code"]) == (403, "forbidden"), (path, out)
    assert await store.head() == head


async def test_a_key_is_shown_once_and_stored_hashed(api, pool):
    status, out = await api.post("/v1/keys", {"role": "gateway"})
    assert status == 201, out
    assert (out["role"], out["seller_id"]) == ("gateway", None)
    key = out["key"]
    assert isinstance(key, str) and len(key) >= 32
    rows = await pool.fetch("SELECT * FROM api_keys")
    stored = [str(v) for r in rows for v in r.values()]
    assert not any(key in v for v in stored), "the key itself must not be stored"
    digest = hashlib.sha256(key.encode()).digest()
    assert await pool.fetchval("SELECT role FROM api_keys WHERE key_sha256 = $1", digest) == (
        "gateway"
    )
    status, again = await api.post("/v1/keys", {"role": "gateway"})
    assert again["key"] != key


async def test_public_endpoints_need_no_credentials(client):
    for path in ("/healthz", "/metrics"):
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            resp = await client.get(path, headers=headers)
            assert resp.status == 200, (path, headers)
