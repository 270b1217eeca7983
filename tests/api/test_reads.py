"""Reads (CONTRACT section 4): orders, balances, the log, health, metrics."""

from __future__ import annotations

from typing import Any

MESSAGE_FIELDS = {
    "position", "stream_id", "version", "type", "data", "occurred_at", "recorded_at", "hash",
    "prev_hash",
}  # fmt: skip
BALANCE_FIELDS = {
    "seller_id", "currency", "pending", "available", "captured_total", "refunded_total",
    "fees_total", "paid_out_total", "as_of_position",
}  # fmt: skip


async def order(api: Any, channel: str, order_id: str) -> dict[str, Any]:
    status, body = await api.get(f"/v1/orders/{channel}/{order_id}")
    assert status == 200, body
    return body


async def test_an_order_shows_its_state_and_history(api, uid):
    seller, order_id = uid("s"), uid("o")
    await api.seller(seller)
    placed = await api.place(seller, order_id, "100000", channel="tokopedia")
    o = await order(api, "tokopedia", order_id)
    assert (o["status"], o["amount"], o["captured"], o["refunded"]) == (
        "open", "100000.00", "0.00", "0.00",
    )  # fmt: skip
    assert (o["channel"], o["order_id"], o["seller_id"]) == ("tokopedia", order_id, seller)
    assert (o["stream_id"], o["version"]) == (placed["stream_id"], 1)

    status, cap = await api.capture(order_id, "40000", channel="tokopedia", fee="500")
    assert status == 201
    o = await order(api, "tokopedia", order_id)
    assert (o["status"], o["captured"], o["fees"]) == ("partially_paid", "40000.00", "500.00")
    status, _ = await api.capture(order_id, "60000.00", channel="tokopedia")
    assert status == 201
    assert (await order(api, "tokopedia", order_id))["status"] == "paid"
    status, _ = await api.event(
        type="refund.issued", order_id=order_id, channel="tokopedia", amount="100000",
        gateway="midtrans", gateway_ref=uid("rf"),
    )  # fmt: skip
    assert status == 201
    o = await order(api, "tokopedia", order_id)
    assert (o["status"], o["refunded"], o["version"]) == ("refunded", "100000.00", 4)

    history = o["history"]
    assert [e["type"] for e in history] == [
        "order.placed", "payment.captured", "payment.captured", "refund.issued",
    ]  # fmt: skip
    assert [e["version"] for e in history] == [1, 2, 3, 4]
    assert history[0]["position"] == placed["position"]
    assert history[1]["position"] == cap["position"]
    assert all(set(e) == MESSAGE_FIELDS for e in history)
    assert all(e["stream_id"] == placed["stream_id"] for e in history)
    assert history[0]["data"]["amount"] == "100000.00"
    assert history[0]["data"]["currency"] == "IDR"
    assert history[1]["data"]["amount"] == "40000.00"
    assert history[1]["data"]["fee"] == "500.00"
    assert history[0]["occurred_at"] == "2026-11-30T10:00:00+08:00"
    assert history[0]["recorded_at"].endswith("Z")


async def test_a_cancelled_order_and_a_failed_payment_show_in_history(api, uid):
    seller, order_id = uid("s"), uid("o")
    await api.seller(seller)
    await api.place(seller, order_id, "5000", channel="whatsapp")
    status, _ = await api.event(
        type="payment.failed", order_id=order_id, channel="whatsapp",
        gateway="xendit", gateway_ref=uid("p"), reason="expired",
    )  # fmt: skip
    assert status == 201
    status, _ = await api.event(type="order.cancelled", order_id=order_id, channel="whatsapp")
    assert status == 201
    o = await order(api, "whatsapp", order_id)
    assert o["status"] == "cancelled"
    assert [e["type"] for e in o["history"]] == [
        "order.placed", "payment.failed", "order.cancelled",
    ]  # fmt: skip
    assert (await api.balance(seller))["pending"] == "0.00"


async def test_an_unknown_order_is_404(api, uid):
    for path in (f"/v1/orders/qris/{uid('nope')}", f"/v1/orders/ebay/{uid('nope')}"):
        status, body = await api.get(path)
        assert status == 404, body
        assert body["error"]["code"] == "not_found"


async def test_a_balance_has_every_contract_field_as_strings(api, store, uid):
    seller = uid("s")
    await api.seller(seller)
    bal = await api.balance(seller)
    assert set(bal) == BALANCE_FIELDS | {"lag_events", "seen"}
    assert bal | {"as_of_position": 0, "lag_events": 0} == {
        "seller_id": seller, "currency": "IDR", "pending": "0.00", "available": "0.00",
        "captured_total": "0.00", "refunded_total": "0.00", "fees_total": "0.00",
        "paid_out_total": "0.00", "as_of_position": 0, "lag_events": 0, "seen": False,
    }  # fmt: skip
    await api.place(seller, uid("o1"), "300000")
    await api.place(seller, uid("o2"), "50000")
    status, _ = await api.capture(uid("o1"), "300000", fee="2100")
    assert status == 201
    status, _ = await api.event(
        type="refund.issued", order_id=uid("o1"), channel="qris", amount="10000",
        gateway="midtrans", gateway_ref=uid("rf"),
    )  # fmt: skip
    assert status == 201
    status, paid = await api.event(
        type="payout.sent", seller_id=seller, amount="100000", reference=uid("trf")
    )
    assert status == 201
    bal = await api.balance(seller)
    assert bal == {
        "seller_id": seller, "currency": "IDR", "pending": "50000.00",
        "available": "187900.00", "captured_total": "300000.00", "refunded_total": "10000.00",
        "fees_total": "2100.00", "paid_out_total": "100000.00",
        "as_of_position": paid["position"], "lag_events": 0, "seen": True,
    }  # fmt: skip


async def test_an_unknown_seller_balance_is_404(api, uid):
    status, body = await api.get(f"/v1/sellers/{uid('ghost')}/balance")
    assert (status, body["error"]["code"]) == (404, "not_found"), body


async def test_the_log_pages_with_next_after(api, store, uid):
    seller = uid("s")
    after, _ = await store.head()
    await api.seller(seller)
    for i in range(4):
        await api.place(seller, uid(f"o{i}"), "10")
    status, page = await api.get(f"/v1/events?after={after}&limit=2")
    assert status == 200
    assert [e["position"] for e in page["events"]] == [after + 1, after + 2]
    assert page["next_after"] == after + 2
    assert all(set(e) == MESSAGE_FIELDS for e in page["events"])
    status, page = await api.get(f"/v1/events?after={after + 2}&limit=10")
    assert [e["position"] for e in page["events"]] == [after + 3, after + 4, after + 5]
    assert page["next_after"] is None
    assert [e["type"] for e in page["events"]] == ["order.placed"] * 3
    status, page = await api.get(f"/v1/events?after={after + 5}")
    assert (status, page) == (200, {"events": [], "next_after": None})
    status, page = await api.get("/v1/events")
    assert status == 200 and page["events"][0]["position"] == 1


async def test_healthz_answers_without_auth_with_the_head(client, store):
    resp = await client.get("/healthz")
    assert resp.status == 200
    body = await resp.json()
    head, _ = await store.head()
    assert (body["status"], body["database"]) == ("ok", "ok")
    assert body["head_position"] == head
    # no relay runs in these tests: everything in the log is still to be published
    assert (body["relay_position"], body["relay_lag_events"]) == (0, head)


async def test_metrics_are_prometheus_text(api, client, uid):
    seller = uid("s")
    await api.seller(seller)
    await api.place(seller, uid("o"), "10")
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    text = await resp.text()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    assert samples['omniledger_http_requests_total{route="/v1/events",status="201"}'] >= 1
    assert samples['omniledger_http_requests_total{route="/v1/sellers",status="201"}'] >= 1
    assert samples["omniledger_events_recorded_total"] >= 1
    assert samples["omniledger_writer_batches"] >= 1
    assert "# TYPE omniledger_http_request_seconds histogram" in text


async def test_a_seller_outside_the_citys_districts_is_refused_with_the_list(api, store, uid):
    """Issue 13: ``Jakarta`` was taken into Makassar's city recap. Districts come from
    one list (``OMNILEDGER_DISTRICTS``, Makassar's fifteen kecamatan by default); a
    name in another case or spacing is taken in the list's spelling."""
    head = await store.head()
    status, body = await api.post(
        "/v1/sellers", {"seller_id": uid("s"), "name": "Toko", "district": "Jakarta"}
    )
    assert (status, body["error"]["field"]) == (422, "district"), body
    assert "Tamalate" in body["error"]["message"] and "Kepulauan Sangkarrang" in body["error"][
        "message"]  # fmt: skip
    assert await store.head() == head
    await api.seller(uid("s2"), district="  ujung   pandang ")
    status, order = await api.get(f"/v1/events?after={head[0]}")
    assert status == 200
    registered = [e for e in order["events"] if e["type"] == "seller.registered"]
    assert [e["data"]["district"] for e in registered] == ["Ujung Pandang"]


async def test_a_balance_says_what_it_includes_and_waits_for_a_write(api, store, uid):
    """Issue 13: a seller the read model has not seen was answered with the log's head
    as its position (all zeros "as of" a payment it did not include). Now the answer
    carries the model's own position and lag, says it has not seen the seller, and
    ``min_position`` waits (bounded) for the write the client made, else 503."""
    seller = uid("s")
    await api.seller(seller)
    balance = await api.balance(seller)
    head, _ = await store.head()
    # the write side's model moves with the head: it has seen the seller's registration
    assert balance["as_of_position"] <= head and balance["lag_events"] == head - balance[
        "as_of_position"]  # fmt: skip
    placed = await api.place(seller, uid("o"), "1000")
    status, body = await api.get(f"/v1/sellers/{seller}/balance?min_position={placed['position']}")
    assert status == 200 and body["as_of_position"] >= placed["position"], body
    assert body["pending"] == "1000.00" and body["seen"] is True
    status, body = await api.get(f"/v1/sellers/{seller}/balance?min_position={head + 10_000}")
    assert status == 503 and body["error"]["code"] == "unavailable", body
    assert "not yet" in body["error"]["message"]
    status, body = await api.get(f"/v1/sellers/{seller}/balance?min_position={2**62 + 1}")
    assert (status, body["error"]["field"]) == (422, "min_position")


async def test_an_unencoded_plus_in_as_of_is_named(api, uid):
    """``?as_of=2026-11-30T10:00:00+08:00`` typed into a URL arrives with a space for
    the ``+``; the 422 says so (it said only "must carry an offset")."""
    seller = uid("s")
    await api.seller(seller)
    status, body = await api.get(f"/v1/sellers/{seller}/balance?as_of=2026-11-30T10:00:00+08:00")
    assert (status, body["error"]["field"]) == (422, "as_of"), body
    assert "%2B" in body["error"]["message"]
    status, body = await api.get(f"/v1/sellers/{seller}/balance?as_of=2026-11-30T10:00:00%2B08:00")
    # read as a time (this app has no time travel: the audit extension serves it)
    assert (status, body["error"]["message"]) == (404, "time travel is not enabled on this server")
