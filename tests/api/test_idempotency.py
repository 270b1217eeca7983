"""Idempotency (CONTRACT section 2): same key + same body = the original result, however often."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from ledger.store.schema import EVENTS_TABLE

RECORDED_FIELDS = {"status", "position", "stream_id", "version", "idempotency_key"}


def placed(seller: str, order_id: str, key: str, amount: str = "1000") -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "type": "order.placed",
        "occurred_at": "2026-11-30T10:00:00+08:00",
        "seller_id": seller,
        "order_id": order_id,
        "channel": "qris",
        "amount": amount,
    }


async def events_with_key(api: Any, key: str, after: int) -> list[dict[str, Any]]:
    return [e for e in await api.events_after(after) if e["data"].get("idempotency_key") == key]


async def test_a_sequential_replay_is_a_duplicate_with_the_same_position(api, store, pool, uid):
    seller = uid("s")
    await api.seller(seller)
    body = placed(seller, uid("o"), uid("k"))
    status, first = await api.post("/v1/events", body)
    assert status == 201, first
    assert set(first) == RECORDED_FIELDS
    assert first["status"] == "recorded"
    assert first["idempotency_key"] == body["idempotency_key"]
    # a 2xx means committed: the row is there at that position
    row = await pool.fetchrow(
        f"SELECT originator_version, type FROM {EVENTS_TABLE} WHERE notification_id = $1",
        first["position"],
    )
    assert row is not None and row["type"] == "order.placed"
    assert row["originator_version"] == first["version"]

    head = await store.head()
    for _ in range(3):
        status, again = await api.post("/v1/events", body)
        assert status == 200, again
        assert again == first | {"status": "duplicate"}
    # the same body with its keys in another order is the same body
    status, again = await api.post("/v1/events", dict(reversed(list(body.items()))))
    assert status == 200, again
    assert again["position"] == first["position"]
    assert await store.head() == head
    assert (await api.balance(seller))["pending"] == "1000.00"


async def test_the_same_key_with_another_body_is_a_conflict(api, store, uid):
    seller = uid("s")
    await api.seller(seller)
    body = placed(seller, uid("o"), uid("k"))
    status, first = await api.post("/v1/events", body)
    assert status == 201
    head = await store.head()
    for change in (
        {"amount": "1001"},
        {"order_id": uid("o2")},
        {"occurred_at": "2026-11-30T10:00:01+08:00"},
        {"metadata": {"note": "x"}},
        {"type": "order.cancelled"},
    ):
        status, out = await api.post("/v1/events", body | change)
        assert status == 409, (change, out)
        assert out["error"]["code"] == "idempotency_conflict"
    assert await store.head() == head
    status, again = await api.post("/v1/events", body)
    assert (status, again["position"]) == (200, first["position"])


async def test_forty_concurrent_copies_record_one_event(api, store, uid):
    seller = uid("s")
    await api.seller(seller)
    after, _ = await store.head()
    body = placed(seller, uid("o"), uid("k"))
    answers = await asyncio.gather(*(api.post("/v1/events", body) for _ in range(40)))
    statuses = sorted(s for s, _ in answers)
    assert statuses == [200] * 39 + [201], answers
    assert len({b["position"] for _, b in answers}) == 1
    assert len({b["stream_id"] for _, b in answers}) == 1
    assert sorted(b["status"] for _, b in answers) == ["duplicate"] * 39 + ["recorded"]
    assert len(await events_with_key(api, body["idempotency_key"], after)) == 1
    assert (await api.balance(seller))["pending"] == "1000.00"


async def test_concurrent_copies_with_two_bodies_one_wins_the_others_conflict(api, store, uid):
    seller = uid("s")
    await api.seller(seller)
    after, _ = await store.head()
    key = uid("k")
    a, b = placed(seller, uid("o"), key, "1000"), placed(seller, uid("o"), key, "2000")
    answers = await asyncio.gather(*(api.post("/v1/events", x) for x in [a, b] * 10))
    created = [(i, out) for i, (s, out) in enumerate(answers) if s == 201]
    assert len(created) == 1, answers
    winner = created[0][0] % 2  # even indexes sent a, odd sent b
    for i, (status, out) in enumerate(answers):
        if i == created[0][0]:
            continue
        if i % 2 == winner:
            assert (status, out["position"]) == (200, created[0][1]["position"]), out
        else:
            assert (status, out["error"]["code"]) == (409, "idempotency_conflict"), out
    assert len(await events_with_key(api, key, after)) == 1


async def test_a_concurrent_copy_with_another_body_is_decided_when_the_first_is_refused(api, uid):
    """Sent together under one key: an overpaying capture (refused, so the key
    stays free) and a capture that fits. The second is decided on its own body,
    as it would be had it come after the refusal."""
    seller, order_id, key = uid("s"), uid("o"), uid("k")
    await api.seller(seller)
    await api.place(seller, order_id, "100")
    (s1, too_much), (s2, fits) = await asyncio.gather(
        api.capture(order_id, "200", idempotency_key=key),
        api.capture(order_id, "50", idempotency_key=key),
    )
    assert (s1, too_much["error"]["code"]) == (422, "overpayment"), too_much
    assert (s2, fits["status"]) == (201, "recorded"), fits
    status, again = await api.capture(order_id, "200", idempotency_key=key)
    assert (status, again["error"]["code"]) == (409, "idempotency_conflict"), again
    assert (await api.balance(seller))["captured_total"] == "50.00"


async def test_a_rejected_event_does_not_burn_its_key(api, store, uid):
    seller = uid("s")
    await api.seller(seller)
    key = uid("k")
    capture = {
        "idempotency_key": key, "type": "payment.captured",
        "occurred_at": "2026-11-30T10:00:00+08:00", "order_id": uid("o"), "channel": "qris",
        "amount": "500", "gateway": "midtrans", "gateway_ref": uid("p"),
    }  # fmt: skip
    status, out = await api.post("/v1/events", capture)
    assert (status, out["error"]["code"]) == (422, "unknown_order"), out
    await api.place(seller, uid("o"), "1000")  # fix the cause
    status, out = await api.post("/v1/events", capture)
    assert status == 201, out
    assert out["status"] == "recorded"
    assert (await api.balance(seller))["captured_total"] == "500.00"


async def test_a_malformed_event_does_not_burn_its_key(api, uid):
    seller = uid("s")
    await api.seller(seller)
    body = placed(seller, uid("o"), uid("k"))
    status, out = await api.post("/v1/events", body | {"amount": 1000.5})
    assert (status, out["error"]["code"]) == (422, "validation_error"), out
    status, out = await api.post("/v1/events", body)
    assert status == 201, out


async def test_concurrent_copies_of_a_rejected_event_burn_nothing(api, store, uid):
    seller = uid("s")
    await api.seller(seller)
    head = await store.head()
    body = placed(uid("ghost"), uid("o"), uid("k"))
    answers = await asyncio.gather(*(api.post("/v1/events", body) for _ in range(10)))
    assert {(s, out["error"]["code"]) for s, out in answers} == {(422, "unknown_seller")}
    assert await store.head() == head
    status, out = await api.post("/v1/events", body | {"seller_id": seller})
    assert status == 201, out


async def test_a_key_used_by_one_fact_conflicts_with_a_different_fact(api, uid):
    seller = uid("s")
    await api.seller(seller)
    key = uid("k")
    status, _ = await api.post("/v1/events", placed(seller, uid("o"), key))
    assert status == 201
    status, out = await api.capture(uid("o"), "1000", idempotency_key=key)
    assert (status, out["error"]["code"]) == (409, "idempotency_conflict"), out
    assert (await api.balance(seller))["captured_total"] == "0.00"


async def test_client_keys_do_not_collide_with_keys_the_ledger_uses_itself(api, uid):
    """A client may choose any 1-200 character key; the ledger's own bookkeeping
    (seller registration, suspense, reconciliation) must not share its namespace."""
    seller, other = uid("s"), uid("t")
    await api.seller(other)
    status, out = await api.post(
        "/v1/events", placed(other, uid("o"), f"seller.registered:{seller}")
    )
    assert status == 201, out
    status, out = await api.post("/v1/sellers", {"seller_id": seller, "name": "Toko Baru"})
    assert status == 201, f"registering a new seller answered {status} {out}"


async def test_registering_a_seller_twice_is_409_and_records_nothing(api, store, uid):
    seller = uid("s")
    await api.seller(seller)
    head = await store.head()
    status, out = await api.post("/v1/sellers", {"seller_id": seller, "name": "Other name"})
    assert (status, out["error"]["code"]) == (409, "seller_exists"), out
    assert out["error"]["field"] == "seller_id", out  # there is no idempotency key to blame
    assert seller in out["error"]["message"], out
    assert await store.head() == head


async def test_many_distinct_keys_each_record_once(api, store, uid):
    seller = uid("s")
    await api.seller(seller)
    after, _ = await store.head()
    bodies = [placed(seller, uid(f"o{i}"), uuid.uuid4().hex) for i in range(30)]
    answers = await asyncio.gather(*(api.post("/v1/events", b) for b in bodies * 2))
    assert sorted(s for s, _ in answers) == [200] * 30 + [201] * 30
    positions = {b["idempotency_key"]: set() for b in bodies}
    for _, out in answers:
        positions[out["idempotency_key"]].add(out["position"])
    assert all(len(p) == 1 for p in positions.values())
    assert len(await api.events_after(after)) == 30
    assert (await api.balance(seller))["pending"] == "30000.00"
