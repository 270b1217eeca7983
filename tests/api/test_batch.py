"""Batches (CONTRACT section 2): ``{"events": [...]}``, up to 1000, each event on its own."""

from __future__ import annotations

import uuid
from typing import Any

AT = "2026-11-30T10:00:00+08:00"


def ev(**fields: Any) -> dict[str, Any]:
    return {"idempotency_key": uuid.uuid4().hex, "occurred_at": AT} | fields


async def test_a_mixed_batch_answers_per_event_in_order_and_records_the_valid_ones(api, store, uid):
    seller = uid("s")
    await api.seller(seller)
    await api.place(seller, uid("paid"), "1000")
    after, _ = await store.head()
    items = [
        ev(type="order.placed", seller_id=seller, order_id=uid("a"), channel="qris", amount="500"),
        ev(type="order.placed", seller_id=seller, order_id=uid("b"), channel="qris", amount=1.5),
        "not an object",
        ev(type="order.placed", seller_id=uid("ghost"), order_id=uid("c"), channel="qris",
           amount="100"),
        ev(type="payment.captured", order_id=uid("paid"), channel="qris", amount="400",
           gateway="xendit", gateway_ref=uid("p1")),
        ev(type="payment.captured", order_id=uid("paid"), channel="qris", amount="5000",
           gateway="xendit", gateway_ref=uid("p2")),
        ev(type="order.placed", seller_id=seller, order_id=uid("d"), channel="shopee",
           amount="250"),
    ]  # fmt: skip
    status, body = await api.post("/v1/events", {"events": items})
    assert status == 200, body
    results = body["results"]
    assert len(results) == len(items)
    assert [r["status"] for r in results] == [
        "recorded", "rejected", "rejected", "rejected", "recorded", "rejected", "recorded",
    ]  # fmt: skip
    assert results[1]["error"]["code"] == "validation_error"
    assert results[1]["error"]["field"] == "amount"
    assert results[2]["error"]["code"] == "validation_error"
    assert results[3]["error"]["code"] == "unknown_seller"
    assert results[5]["error"]["code"] == "overpayment"
    for i in (0, 4, 6):
        assert results[i]["idempotency_key"] == items[i]["idempotency_key"], results
        assert set(results[i]) == {"status", "position", "stream_id", "version", "idempotency_key"}
    logged = await api.events_after(after)
    assert sorted(e["position"] for e in logged) == sorted(
        results[i]["position"] for i in (0, 4, 6)
    )
    assert [e["type"] for e in logged] == ["order.placed", "payment.captured", "order.placed"]
    bal = await api.balance(seller)
    assert (bal["pending"], bal["captured_total"]) == ("1350.00", "400.00")


async def test_events_of_a_batch_apply_in_order(api, uid):
    """A batch may place an order and pay it: results come in order, and so do effects."""
    seller = uid("s")
    await api.seller(seller)
    items = [
        ev(type="order.placed", seller_id=seller, order_id=uid("o"), channel="qris", amount="900"),
        ev(type="payment.captured", order_id=uid("o"), channel="qris", amount="900", fee="9",
           gateway="midtrans", gateway_ref=uid("p")),
        ev(type="payout.sent", seller_id=seller, amount="891", reference=uid("r")),
    ]  # fmt: skip
    status, body = await api.post("/v1/events", {"events": items})
    assert status == 200, body
    assert [r["status"] for r in body["results"]] == ["recorded"] * 3, body
    positions = [r["position"] for r in body["results"]]
    assert positions == sorted(positions)
    bal = await api.balance(seller)
    assert (bal["available"], bal["paid_out_total"]) == ("0.00", "891.00")


async def test_a_batch_replayed_is_all_duplicates_with_the_same_positions(api, store, uid):
    seller = uid("s")
    await api.seller(seller)
    items = [
        ev(type="order.placed", seller_id=seller, order_id=uid(f"o{i}"), channel="qris",
           amount="100")
        for i in range(5)
    ]  # fmt: skip
    status, first = await api.post("/v1/events", {"events": items})
    assert status == 200
    head = await store.head()
    status, again = await api.post("/v1/events", {"events": items})
    assert status == 200
    assert [r["status"] for r in again["results"]] == ["duplicate"] * 5
    assert [r["position"] for r in again["results"]] == [r["position"] for r in first["results"]]
    assert await store.head() == head


async def test_the_same_key_twice_in_one_batch_records_once(api, uid):
    seller = uid("s")
    await api.seller(seller)
    one = ev(type="order.placed", seller_id=seller, order_id=uid("o"), channel="qris", amount="1")
    other = one | {"amount": "2"}
    status, body = await api.post("/v1/events", {"events": [one, one, other]})
    assert status == 200, body
    r = body["results"]
    assert [x["status"] for x in r[:2]] == ["recorded", "duplicate"], r
    assert r[0]["position"] == r[1]["position"]
    assert r[2]["status"] == "rejected"
    assert r[2]["error"]["code"] == "idempotency_conflict"
    assert (await api.balance(seller))["pending"] == "1.00"


async def test_a_batch_of_1000_is_accepted(api, store, uid):
    seller = uid("s")
    await api.seller(seller)
    items = [
        ev(type="order.placed", seller_id=seller, order_id=uid(f"o{i}"), channel="pos",
           amount="1")
        for i in range(1000)
    ]  # fmt: skip
    head, _ = await store.head()
    status, body = await api.post("/v1/events", {"events": items})
    assert status == 200
    assert [r["status"] for r in body["results"]] == ["recorded"] * 1000
    assert (await store.head())[0] == head + 1000
    assert (await api.balance(seller))["pending"] == "1000.00"


async def test_a_batch_of_1001_or_none_is_refused_whole(api, store, uid):
    seller = uid("s")
    await api.seller(seller)
    head = await store.head()
    items = [
        ev(type="order.placed", seller_id=seller, order_id=uid(f"o{i}"), channel="pos",
           amount="1")
        for i in range(1001)
    ]  # fmt: skip
    for events in (items, [], {"a": 1}, "x", None):
        status, body = await api.post("/v1/events", {"events": events})
        assert status == 422, (events if not isinstance(events, list) else len(events), body)
        assert body["error"]["code"] == "validation_error"
        assert body["error"]["field"] == "events"
    assert await store.head() == head
