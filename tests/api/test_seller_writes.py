"""A seller key records the orders no gateway reports (issue 14, point 3):
``order.placed``, ``order.cancelled`` and ``payment.captured`` with gateway
``cash``, for its own seller only, through ``POST /v1/events`` (one or a
batch) with every rule and idempotency; anything else is 403 and records nothing."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api
from tests.api.test_least_privilege import forbidden

AT = "2026-11-30T10:00:00+08:00"


async def post(api: Api, headers: dict[str, str], **event: Any) -> tuple[int, Any]:
    event.setdefault("occurred_at", AT)
    return await api.post("/v1/events", event, headers=headers)


async def two_sellers(api: Api, uid: Any) -> tuple[str, str, dict[str, str]]:
    mine, theirs = uid("mine"), uid("theirs")
    for seller in (mine, theirs):
        await api.seller(seller)
    return mine, theirs, await api.key("seller", mine)


async def test_a_seller_records_a_whatsapp_order_its_cash_payment_and_a_cancel(api, uid):
    mine, _, key = await two_sellers(api, uid)
    placed = dict(idempotency_key=uid("p"), type="order.placed", seller_id=mine,
                  order_id=uid("wa-1"), channel="whatsapp", amount="150000")  # fmt: skip
    status, out = await post(api, key, **placed)
    assert status == 201, out
    paid = dict(idempotency_key=uid("c"), type="payment.captured", order_id=uid("wa-1"),
                channel="whatsapp", amount="150000", gateway="cash",
                gateway_ref=uid("kas-1"))  # fmt: skip
    status, out = await post(api, key, **paid)
    assert status == 201, out
    balance = await api.balance(mine)
    assert (balance["captured_total"], balance["pending"]) == ("150000.00", "0.00"), balance
    # the same key and body again: the same answer, nothing new recorded
    status, again = await post(api, key, **paid)
    assert (status, again["status"], again["position"]) == (200, "duplicate", out["position"])
    assert (await api.balance(mine))["captured_total"] == "150000.00"
    # a second order, cancelled by the seller
    await post(api, key, **placed | {"idempotency_key": uid("p2"), "order_id": uid("wa-2")})
    status, out = await post(api, key, idempotency_key=uid("x"), type="order.cancelled",
                             order_id=uid("wa-2"), channel="whatsapp")  # fmt: skip
    assert status == 201, out
    status, order = await api.get(f"/v1/orders/whatsapp/{uid('wa-2')}")
    assert [e["type"] for e in order["history"]] == ["order.placed", "order.cancelled"]


async def test_the_rules_apply_to_a_seller_key_as_to_any(api, store, uid):
    mine, _, key = await two_sellers(api, uid)
    await post(api, key, idempotency_key=uid("p"), type="order.placed", seller_id=mine,
               order_id=uid("o"), channel="instagram", amount="1000")  # fmt: skip
    head = await store.head()
    # more than the order is worth: refused as for an admin
    status, out = await post(api, key, idempotency_key=uid("c"), type="payment.captured",
                             order_id=uid("o"), channel="instagram", amount="5000",
                             gateway="cash", gateway_ref=uid("k"))  # fmt: skip
    assert status == 422 and out["error"]["code"] == "overpayment", out
    # the same idempotency key with another body is a conflict
    status, out = await post(api, key, idempotency_key=uid("p"), type="order.placed",
                             seller_id=mine, order_id=uid("o"), channel="instagram",
                             amount="2000")  # fmt: skip
    assert status == 409, out
    assert await store.head() == head


async def test_another_sellers_id_or_order_is_refused(api, store, uid):
    _, theirs, key = await two_sellers(api, uid)
    field = await forbidden(api, store, key, type="order.placed", seller_id=theirs,
                            order_id=uid("o"), channel="whatsapp", amount="10")  # fmt: skip
    assert field == "seller_id"
    await api.place(theirs, uid("their-o"), "1000", channel="whatsapp")
    head = await store.head()
    for event in (
        dict(type="payment.captured", amount="1000", gateway="cash", gateway_ref=uid("k")),
        dict(type="order.cancelled"),
    ):
        status, out = await post(api, key, idempotency_key=uid(event["type"]),
                                 order_id=uid("their-o"), channel="whatsapp", **event)  # fmt: skip
        # another seller's order is unknown to it, as a missing one is (no 403 to learn from)
        assert (status, out["error"]["code"]) == (422, "unknown_order"), out
    assert await store.head() == head


async def test_other_types_and_gateways_are_refused(api, store, uid):
    mine, _, key = await two_sellers(api, uid)
    await post(api, key, idempotency_key=uid("p"), type="order.placed", seller_id=mine,
               order_id=uid("o"), channel="whatsapp", amount="1000")  # fmt: skip
    order = dict(order_id=uid("o"), channel="whatsapp")
    for event in (
        dict(type="payout.sent", seller_id=mine, amount="10", reference=uid("r")),
        dict(type="refund.issued", **order, amount="10", gateway="cash", gateway_ref=uid("r")),
        dict(type="payment.failed", **order, gateway="cash", gateway_ref=uid("f")),
        dict(type="order.status_noted", **order, status="shipped"),
    ):
        assert await forbidden(api, store, key, **event) == "type", event
    for gateway in ("xendit", "bank_transfer", "midtrans"):
        field = await forbidden(api, store, key, type="payment.captured", **order,
                                amount="10", gateway=gateway, gateway_ref=uid(gateway))  # fmt: skip
        assert field == "gateway"
    field = await forbidden(api, store, key, type="order.cancelled", **order, gateway="xendit")
    assert field == "gateway"
    status, out = await post(api, key, idempotency_key=uid("x"), type="payout.sent",
                             seller_id=mine, amount="10", reference=uid("r2"))  # fmt: skip
    assert status == 403
    assert "order.placed, order.cancelled and payment.captured" in out["error"]["message"]


async def test_a_seller_keys_batch_decides_each_event_alone(api, store, uid):
    mine, theirs, key = await two_sellers(api, uid)
    items = [
        {"idempotency_key": uid(f"k{i}"), "occurred_at": AT, **event}
        for i, event in enumerate([
            dict(type="order.placed", seller_id=mine, order_id=uid("o"), channel="whatsapp",
                 amount="2000"),
            dict(type="payment.captured", order_id=uid("o"), channel="whatsapp", amount="2000",
                 gateway="cash", gateway_ref=uid("kas")),
            dict(type="order.placed", seller_id=theirs, order_id=uid("o2"), channel="whatsapp",
                 amount="10"),
            dict(type="payment.captured", order_id=uid("o"), channel="whatsapp", amount="1",
                 gateway="xendit", gateway_ref=uid("x")),
        ])
    ]  # fmt: skip
    status, body = await api.post("/v1/events", {"events": items}, headers=key)
    assert status == 200, body
    assert [r["status"] for r in body["results"]] == ["recorded", "recorded", "rejected",
                                                      "rejected"]  # fmt: skip
    assert [r["error"]["field"] for r in body["results"][2:]] == ["seller_id", "gateway"]
    assert (await api.balance(mine))["captured_total"] == "2000.00"
    assert (await api.balance(theirs))["pending"] == "0.00"
    # the batch sent again: the recorded ones are duplicates, nothing doubles
    status, again = await api.post("/v1/events", {"events": items[:2]}, headers=key)
    assert [r["status"] for r in again["results"]] == ["duplicate", "duplicate"], again
    assert (await api.balance(mine))["captured_total"] == "2000.00"
