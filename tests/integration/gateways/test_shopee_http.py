"""Shopee push over HTTP: order statuses matched by the seller's shop id, the HMAC."""

from __future__ import annotations

import json

import pytest

from tests.integration.gateways.conftest import Hooks, shopee_body, shopee_signature


async def _shop_order(hooks: Hooks, uid, shop_id: str) -> tuple[str, str]:
    seller, ordersn = uid("s"), uid("SN").upper()
    await hooks.seller(seller, channels={"shopee": shop_id})
    await hooks.place(seller, ordersn, "50000", channel="shopee")
    return seller, ordersn


@pytest.mark.parametrize(
    ("name", "effect"),
    [
        ("shopee_order_processed", "order.status_noted"),
        ("shopee_order_in_cancel", "order.status_noted"),
        ("shopee_order_cancelled", "order.cancelled"),
    ],
)
async def test_order_status_push_has_its_effect(
    hooks: Hooks, uid, shop_id: str, name: str, effect: str
) -> None:
    seller, ordersn = await _shop_order(hooks, uid, shop_id)
    body = shopee_body(name, shop_id, ordersn)

    answers = await hooks.times(3, lambda: hooks.shopee(body))

    assert sorted(a[1]["results"][0]["status"] for a in answers) == [
        "duplicate",
        "duplicate",
        "recorded",
    ]
    assert await hooks.history_types(ordersn, "shopee") == ["order.placed", effect]
    pending = "0.00" if effect == "order.cancelled" else "50000.00"
    assert (await hooks.balance(seller))["pending"] == pending


async def test_other_push_codes_are_acknowledged(hooks: Hooks, uid, shop_id: str) -> None:
    _, ordersn = await _shop_order(hooks, uid, shop_id)
    head = await hooks.head()
    status, body = await hooks.shopee(shopee_body("shopee_tracking_no_push", shop_id, ordersn))
    assert status == 200, body
    assert body["results"][0]["status"] == "ignored"
    assert await hooks.head() == head


async def test_push_from_an_unregistered_shop_goes_to_suspense(
    hooks: Hooks, uid, shop_id: str
) -> None:
    ordersn = uid("SN").upper()
    status, body = await hooks.shopee(shopee_body("shopee_order_cancelled", shop_id, ordersn))
    assert status == 200, body
    assert body["results"][0]["status"] == "suspense"
    assert body["results"][0]["reason"] == "unknown_seller"
    (entry,) = await hooks.suspense_for(f"shopee:status:{shop_id}:{ordersn}:CANCELLED")
    assert entry["gateway"] == "shopee"


async def test_push_for_an_order_of_another_shop_goes_to_suspense(
    hooks: Hooks, uid, shop_id: str
) -> None:
    _, ordersn = await _shop_order(hooks, uid, shop_id)
    other_shop = str(int(shop_id) + 1)
    await hooks.seller(uid("other"), channels={"shopee": other_shop})
    status, body = await hooks.shopee(shopee_body("shopee_order_cancelled", other_shop, ordersn))
    assert status == 200, body
    assert body["results"][0]["reason"] == "unknown_order"
    assert await hooks.history_types(ordersn, "shopee") == ["order.placed"]


async def test_cancelled_push_for_an_order_already_cancelled_is_ignored(
    hooks: Hooks, uid, shop_id: str
) -> None:
    _, ordersn = await _shop_order(hooks, uid, shop_id)
    status, body = await hooks.post(
        "/v1/events",
        {
            "idempotency_key": uid("cancel"),
            "type": "order.cancelled",
            "occurred_at": "2026-11-30T11:00:00+08:00",
            "order_id": ordersn,
            "channel": "shopee",
        },
    )
    assert status == 201, body
    status, body = await hooks.shopee(shopee_body("shopee_order_cancelled", shop_id, ordersn))
    assert status == 200, body
    assert body["results"][0]["status"] == "ignored"
    assert body["results"][0]["reason"] == "order_closed"
    assert await hooks.suspense_for(f"shopee:status:{shop_id}:{ordersn}:CANCELLED") == []


async def test_tampered_body_after_signing_is_401_and_records_nothing(
    hooks: Hooks, uid, shop_id: str
) -> None:
    _, ordersn = await _shop_order(hooks, uid, shop_id)
    raw = json.dumps(shopee_body("shopee_order_processed", shop_id, ordersn)).encode()
    signature = shopee_signature(raw)
    tampered = raw.replace(b"PROCESSED", b"CANCELLED")
    head = await hooks.head()

    status, body = await hooks.shopee(tampered, signature=signature)

    assert status == 401, body
    assert body["error"]["code"] == "invalid_signature"
    assert await hooks.head() == head


@pytest.mark.parametrize("signature", [None, "", "deadbeef", "x" * 5000])
async def test_missing_or_wrong_signature_is_401(
    hooks: Hooks, uid, shop_id: str, signature
) -> None:
    _, ordersn = await _shop_order(hooks, uid, shop_id)
    head = await hooks.head()
    status, body = await hooks.shopee(
        shopee_body("shopee_order_cancelled", shop_id, ordersn), signature=signature
    )
    assert status == 401, body
    assert await hooks.head() == head
