"""Least privilege (issue 10, finding 12): payouts need an admin or payouts key;
a gateway key may be bound to one gateway name and to one seller, and then
posts only those facts. A refusal is 403 and records nothing."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api


async def key(api: Api, **body: Any) -> dict[str, str]:
    status, out = await api.post("/v1/keys", body)
    assert status == 201, out
    assert {k: out[k] for k in body} == body
    return {"Authorization": f"Bearer {out['key']}"}


async def forbidden(api: Api, store: Any, headers: dict[str, str], **event: Any) -> str:
    head = await store.head()
    event.setdefault("idempotency_key", event.get("gateway_ref") or event.get("reference", "k"))
    event.setdefault("occurred_at", "2026-11-30T10:00:00+08:00")
    status, out = await api.post("/v1/events", event, headers=headers)
    assert status == 403, out
    assert out["error"]["code"] == "forbidden"
    assert await store.head() == head, "a forbidden event records nothing"
    return str(out["error"].get("field"))


async def funded(api: Api, uid: Any, name: str) -> str:
    seller = uid(name)
    await api.seller(seller)
    await api.place(seller, uid(f"{name}-o"), "100000")
    status, body = await api.capture(uid(f"{name}-o"), "100000")
    assert status == 201, body
    return seller


async def test_a_gateway_key_may_not_pay_out_and_a_payouts_key_may(api, store, uid):
    seller = await funded(api, uid, "s")
    payout = dict(type="payout.sent", seller_id=seller, amount="1000", reference=uid("trf"))
    assert await forbidden(api, store, await key(api, role="gateway"), **payout) == "type"
    payouts = await key(api, role="payouts")
    status, body = await api.post(
        "/v1/events", payout | {"idempotency_key": uid("p"), "occurred_at": "2026-11-30T10:00:00Z"},
        headers=payouts,
    )  # fmt: skip
    assert status == 201, body
    assert (await api.balance(seller))["paid_out_total"] == "1000.00"
    # and nothing else
    await forbidden(api, store, payouts, type="order.placed", seller_id=seller,
                    order_id=uid("o2"), channel="qris", amount="10")  # fmt: skip


async def test_a_payout_in_a_gateway_keys_batch_is_refused_alone(api, store, uid):
    seller = await funded(api, uid, "s")
    items = [
        {"idempotency_key": uid(f"k{i}"), "occurred_at": "2026-11-30T10:00:00Z", **event}
        for i, event in enumerate([
            dict(type="payout.sent", seller_id=seller, amount="1000", reference=uid("trf")),
            dict(type="order.placed", seller_id=seller, order_id=uid("o2"), channel="qris",
                 amount="10"),
        ])
    ]  # fmt: skip
    status, body = await api.post("/v1/events", {"events": items}, headers=await key(
        api, role="gateway"))  # fmt: skip
    assert status == 200, body
    assert [r["status"] for r in body["results"]] == ["rejected", "recorded"]
    assert body["results"][0]["error"]["code"] == "forbidden"
    assert (await api.balance(seller))["paid_out_total"] == "0.00"


async def test_a_key_bound_to_a_gateway_posts_only_that_gateways_facts(api, store, uid):
    seller = uid("s")
    await api.seller(seller)
    await api.place(seller, uid("o"), "100000")
    xendit = await key(api, role="gateway", gateway="xendit")
    capture = dict(type="payment.captured", order_id=uid("o"), channel="qris", amount="100")
    for gateway in ("midtrans", "doku"):
        field = await forbidden(api, store, xendit, **capture, gateway=gateway,
                                gateway_ref=uid(gateway))  # fmt: skip
        assert field == "gateway"
    # facts that name no gateway are not a gateway's to post
    await forbidden(api, store, xendit, type="order.cancelled", order_id=uid("o"), channel="qris")
    status, body = await api.post(
        "/v1/events",
        capture | {"gateway": "xendit", "gateway_ref": uid("x"), "idempotency_key": uid("x"),
                   "occurred_at": "2026-11-30T10:00:00Z"},
        headers=xendit,
    )  # fmt: skip
    assert status == 201, body
    assert (await api.balance(seller))["captured_total"] == "100.00"


async def test_a_key_bound_to_a_seller_cannot_touch_another_sellers_orders(api, store, uid):
    mine, theirs = uid("mine"), uid("theirs")
    for seller in (mine, theirs):
        await api.seller(seller)
        await api.place(seller, uid(f"{seller}-o"), "100000")
    bound = await key(api, role="gateway", seller_id=mine)
    # another seller's order is unknown to it, as a missing one is
    head = await store.head()
    status, out = await api.post(
        "/v1/events",
        {"idempotency_key": uid("c"), "type": "order.cancelled",
         "occurred_at": "2026-11-30T10:00:00Z", "order_id": uid(f"{theirs}-o"), "channel": "qris"},
        headers=bound,
    )  # fmt: skip
    assert (status, out["error"]["code"]) == (422, "unknown_order"), out
    assert await store.head() == head
    field = await forbidden(api, store, bound, type="order.placed", seller_id=theirs,
                            order_id=uid("o3"), channel="qris", amount="10")  # fmt: skip
    assert field == "seller_id"
    # its own seller's orders it may place, pay and cancel
    status, out = await api.post(
        "/v1/events",
        {"idempotency_key": uid("c2"), "type": "order.cancelled",
         "occurred_at": "2026-11-30T10:00:00Z", "order_id": uid(f"{mine}-o"), "channel": "qris"},
        headers=bound,
    )  # fmt: skip
    assert status == 201, out
    status, order = await api.get(f"/v1/orders/qris/{uid(f'{theirs}-o')}")
    assert [e["type"] for e in order["history"]] == ["order.placed"]


async def test_key_bindings_are_validated(api, uid):
    for body, field in (
        ({"role": "gateway", "gateway": "Midtrans"}, "gateway"),
        ({"role": "auditor", "gateway": "midtrans"}, "gateway"),
        ({"role": "gateway", "seller_id": uid("ghost")}, "seller_id"),
        ({"role": "payouts", "seller_id": uid("ghost")}, "seller_id"),
    ):
        status, out = await api.post("/v1/keys", body)
        assert status == 422, (body, out)
        assert out["error"]["field"] == field, (body, out)
