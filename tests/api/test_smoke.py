async def test_place_and_capture_show_in_log_and_balance(api, store, uid):
    seller = uid("s")
    after, _ = await store.head()
    await api.seller(seller)
    await api.place(seller, uid("o"), "150000")
    status, body = await api.capture(uid("o"), "100000.00", fee="700")
    assert status == 201, body
    bal = await api.balance(seller)
    assert bal["pending"] == "50000.00"
    assert bal["available"] == "99300.00"
    status, log = await api.get(f"/v1/events?after={after}&limit=1000")
    assert status == 200
    types = [e["type"] for e in log["events"] if e["data"].get("seller_id") == seller]
    assert types == ["seller.registered", "order.placed", "payment.captured"]
