"""Concurrent writers (CONTRACT section 2, DESIGN rules 3-6): rules hold, the log stays gap-free.

Most tests run twice: once against the session's app, once with the requests
split between it and a second app with a Ledger of its own on the same
database, as two ``serve`` replicas behind a load balancer would be.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from ledger.api.http import create_app
from ledger.app.ledger import Ledger
from ledger.contract.messages import GENESIS_HASH, chain_hash
from ledger.store import LedgerStore
from ledger.store.schema import EVENTS_TABLE
from tests.api.conftest import Api


async def funded_seller(api: Api, uid: Any, amount: str) -> str:
    """A seller whose available balance is exactly ``amount``."""
    seller = uid("s") + uuid.uuid4().hex[:4]
    await api.seller(seller)
    order_id = seller + "-o"
    await api.place(seller, order_id, amount)
    status, body = await api.capture(order_id, amount)
    assert status == 201, body
    assert (await api.balance(seller))["available"] == f"{amount}.00"
    return seller


async def test_concurrent_captures_never_overpay(apis, api, uid):
    seller, order_id = uid("s"), uid("o")
    await api.seller(seller)
    await api.place(seller, order_id, "100000")
    # warm every replica's cache on the order, so their decisions can be stale
    for a in apis:
        assert (await a.get(f"/v1/orders/qris/{order_id}"))[0] == 200
        status, _ = await a.event(
            type="payment.failed", order_id=order_id, channel="qris",
            gateway="midtrans", gateway_ref=uuid.uuid4().hex,
        )  # fmt: skip
        assert status == 201
    answers = await asyncio.gather(
        *(apis[i % len(apis)].capture(order_id, "7000") for i in range(20))
    )
    statuses = sorted(s for s, _ in answers)
    codes = sorted(b["error"]["code"] for s, b in answers if s != 201)
    assert statuses == [201] * 14 + [422] * 6, answers
    assert codes == ["overpayment"] * 6
    status, order = await api.get(f"/v1/orders/qris/{order_id}")
    assert status == 200
    assert order["captured"] == "98000.00"
    assert (await api.balance(seller))["captured_total"] == "98000.00"
    captures = [e for e in order["history"] if e["type"] == "payment.captured"]
    assert len(captures) == 14
    assert [e["version"] for e in order["history"]] == list(range(1, len(order["history"]) + 1))


async def test_concurrent_captures_that_fit_exactly_all_succeed(apis, api, uid):
    seller, order_id = uid("s"), uid("o")
    await api.seller(seller)
    await api.place(seller, order_id, "20000")
    answers = await asyncio.gather(
        *(apis[i % len(apis)].capture(order_id, "1000") for i in range(20))
    )
    assert [s for s, _ in answers] == [201] * 20, answers
    status, order = await api.get(f"/v1/orders/qris/{order_id}")
    assert status == 200, order
    assert (order["captured"], order["status"]) == ("20000.00", "paid")


async def test_of_two_concurrent_payouts_over_the_balance_one_is_refused(apis, api, uid):
    for round_ in range(5):
        seller = await funded_seller(api, uid, "1000")
        answers = await asyncio.gather(
            *(
                apis[i % len(apis)].event(
                    type="payout.sent",
                    seller_id=seller,
                    amount="600",
                    reference=uid(f"r{round_}-{i}"),
                )
                for i in range(2)
            )
        )
        statuses = sorted(s for s, _ in answers)
        assert statuses == [201, 422], (round_, answers)
        refused = next(b for s, b in answers if s == 422)
        assert refused["error"]["code"] == "insufficient_balance"
        bal = await api.balance(seller)
        assert (bal["paid_out_total"], bal["available"]) == ("600.00", "400.00")


async def test_many_concurrent_payouts_never_overdraw(apis, api, uid):
    seller = await funded_seller(api, uid, "1000")
    answers = await asyncio.gather(
        *(
            apis[i % len(apis)].event(
                type="payout.sent", seller_id=seller, amount="70", reference=uid(f"r{i}")
            )
            for i in range(30)
        )
    )
    statuses = sorted(s for s, _ in answers)
    assert statuses == [201] * 14 + [422] * 16, answers
    bal = await api.balance(seller)
    assert (bal["paid_out_total"], bal["available"]) == ("980.00", "20.00")


async def test_forty_concurrent_copies_across_replicas_record_one_event(apis, api, store, uid):
    seller = uid("s")
    await api.seller(seller)
    after, _ = await store.head()
    body = {
        "idempotency_key": uid("k"), "type": "order.placed",
        "occurred_at": "2026-11-30T10:00:00+08:00", "seller_id": seller,
        "order_id": uid("o"), "channel": "qris", "amount": "1000",
    }  # fmt: skip
    answers = await asyncio.gather(
        *(apis[i % len(apis)].post("/v1/events", body) for i in range(40))
    )
    assert sorted(s for s, _ in answers) == [200] * 39 + [201], answers
    assert len({b["position"] for _, b in answers}) == 1
    logged = [
        e for e in await api.events_after(after)
        if e["data"].get("idempotency_key") == body["idempotency_key"]
    ]  # fmt: skip
    assert len(logged) == 1
    assert (await api.balance(seller))["pending"] == "1000.00"


async def test_positions_are_gap_free_and_hash_chained_under_concurrent_writers(
    apis, api, store, pool, uid
):
    sellers = [uid(f"s{i}") for i in range(4)]
    for seller in sellers:
        await api.seller(seller)
    start, _ = await store.head()
    seen: list[int] = []
    stop = asyncio.Event()

    async def reader() -> None:
        """Polls the log while writers commit: it must never see N+1 before N."""
        last = start
        while not stop.is_set():
            status, page = await api.get(f"/v1/events?after={last}&limit=1000")
            assert status == 200
            for e in page["events"]:
                assert e["position"] == last + 1, f"reader skipped from {last} to {e['position']}"
                last = e["position"]
                seen.append(last)
            await asyncio.sleep(0)

    reading = asyncio.create_task(reader())
    answers = await asyncio.gather(
        *(
            apis[i % len(apis)].place(sellers[i % len(sellers)], uid(f"o{i}"), str(1000 + i))
            for i in range(200)
        )
    )
    stop.set()
    await reading

    positions = sorted(b["position"] for b in answers)
    assert len(set(positions)) == 200
    log = await api.events_after(0)
    assert [e["position"] for e in log] == list(range(1, len(log) + 1)), "positions 1..N"
    head, head_hash = await store.head()
    assert log[-1]["position"] == head
    assert log[-1]["hash"] == head_hash
    assert set(positions) <= {e["position"] for e in log if e["position"] > start}
    by_position = {e["position"]: e for e in log}
    for b in answers:
        e = by_position[b["position"]]
        assert (e["stream_id"], e["version"], e["type"]) == (b["stream_id"], 1, "order.placed")
    assert seen == list(range(start + 1, start + 1 + len(seen)))

    prev = GENESIS_HASH
    for e in log:
        assert e["prev_hash"] == prev, f"position {e['position']}: prev_hash breaks the chain"
        assert e["hash"] == chain_hash(e["prev_hash"], e), f"position {e['position']}: bad hash"
        prev = e["hash"]

    count, top = await pool.fetchrow(f"SELECT count(*), max(notification_id) FROM {EVENTS_TABLE}")
    assert count == top == head


async def test_a_copy_racing_the_first_on_another_replica_is_a_duplicate_not_a_rule(
    api, replica, uid
):
    """Copies of one fact that reach two replicas around the first commit: every
    copy answers the original result, none is refused by the rule the first
    copy's own effect now trips (order_exists, overpayment)."""
    seller = uid("s")
    await api.seller(seller)
    refused: list[Any] = []
    for round_ in range(15):
        order_id = uid(f"o{round_}")
        placed = {
            "idempotency_key": uuid.uuid4().hex, "type": "order.placed",
            "occurred_at": "2026-11-30T10:00:00+08:00", "seller_id": seller,
            "order_id": order_id, "channel": "qris", "amount": "1000",
        }  # fmt: skip
        answers = await asyncio.gather(
            *((api, replica)[i % 2].post("/v1/events", placed) for i in range(20))
        )
        refused += [(round_, "placed", b) for s, b in answers if s not in (200, 201)]
        assert sorted(s for s, _ in answers).count(201) <= 1, answers
        captured = {
            "idempotency_key": uuid.uuid4().hex, "type": "payment.captured",
            "occurred_at": "2026-11-30T10:00:00+08:00", "order_id": order_id,
            "channel": "qris", "amount": "1000", "gateway": "midtrans",
            "gateway_ref": uuid.uuid4().hex,
        }  # fmt: skip
        answers = await asyncio.gather(
            *((api, replica)[i % 2].post("/v1/events", captured) for i in range(20))
        )
        refused += [(round_, "captured", b) for s, b in answers if s not in (200, 201)]
    assert refused == [], f"{len(refused)} copies refused, first: {refused[:3]}"
    bal = await api.balance(seller)
    assert bal["captured_total"] == "15000.00"


class _SlowKeyLookupStore(LedgerStore):
    """The real store; only its unlocked idempotency lookup answers late, which
    widens (never creates) the window in which another replica commits."""

    async def lookup(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        found = await super().lookup(*args, **kwargs)
        await asyncio.sleep(0.2)
        return found


async def test_a_copy_whose_key_lookup_loses_the_race_is_still_a_duplicate(
    api, settings, pool, uid
):
    """Deterministic form of the race above: replica B looks the key up, then
    replica A commits the first copy, then B decides its copy."""
    ledger = Ledger(_SlowKeyLookupStore(pool))
    ledger.start()
    try:
        app = create_app(settings, ledger, ledger.store)
        async with TestClient(TestServer(app)) as client:
            slow = Api(client, api.headers)
            seller = uid("s")
            await api.seller(seller)
            body = {
                "idempotency_key": uid("k"), "type": "order.placed",
                "occurred_at": "2026-11-30T10:00:00+08:00", "seller_id": seller,
                "order_id": uid("o"), "channel": "qris", "amount": "1000",
            }  # fmt: skip
            late = asyncio.create_task(slow.post("/v1/events", body))
            await asyncio.sleep(0.05)  # B has looked the key up and is waiting
            status, first = await api.post("/v1/events", body)
            assert status == 201, first
            status, copy = await late
            assert status == 200, copy
            assert copy["position"] == first["position"]
    finally:
        await ledger.stop()


class _SlowCommitStore(LedgerStore):
    """The real store; its commit only starts late, so another replica commits first."""

    async def commit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.3)
        return await super().commit(*args, **kwargs)


async def _slow_commit_replica(settings: Any, pool: Any, headers: dict[str, str]) -> Any:
    ledger = Ledger(_SlowCommitStore(pool))
    ledger.start()
    app = create_app(settings, ledger, ledger.store)
    client = TestClient(TestServer(app))
    await client.start_server()
    return ledger, client, Api(client, headers)


async def test_a_refusal_is_never_decided_on_a_decision_that_did_not_commit(
    api, settings, pool, uid
):
    """Replica B decides [payout 800, payout 300] on an available 1000: 300 is
    refused because 800 took the money. Before B commits, replica A pays out 500,
    so B's 800 is dropped and, decided again, refused. The 300 must then be
    decided again too: with 500 available it fits. No serial order of the three
    payouts refuses both 800 and 300 while recording 500."""
    ledger, client, slow = await _slow_commit_replica(settings, pool, api.headers)
    try:
        seller = await funded_seller(api, uid, "1000")
        assert (await slow.balance(seller))["available"] == "1000.00"
        at = "2026-11-30T10:00:00+08:00"
        batch = {"events": [
            {"idempotency_key": uid("k800"), "type": "payout.sent", "occurred_at": at,
             "seller_id": seller, "amount": "800", "reference": uid("r800")},
            {"idempotency_key": uid("k300"), "type": "payout.sent", "occurred_at": at,
             "seller_id": seller, "amount": "300", "reference": uid("r300")},
        ]}  # fmt: skip
        late = asyncio.create_task(slow.post("/v1/events", batch))
        await asyncio.sleep(0.1)  # B has decided and waits to commit
        status, body = await api.event(
            type="payout.sent", seller_id=seller, amount="500", reference=uid("r500")
        )
        assert status == 201, body
        status, out = await late
        assert status == 200, out
        bal = await api.balance(seller)
        outcome = [r["status"] for r in out["results"]]
        assert outcome == ["rejected", "recorded"], (out["results"], bal)
        assert (bal["paid_out_total"], bal["available"]) == ("800.00", "200.00")
    finally:
        await client.close()
        await ledger.stop()


async def _warm(api: Api, order_id: str) -> None:
    """Makes ``api``'s writer cache the order (a fact with no money effect)."""
    status, body = await api.event(
        type="payment.failed", order_id=order_id, channel="qris",
        gateway="midtrans", gateway_ref=uuid.uuid4().hex,
    )  # fmt: skip
    assert status == 201, body


async def test_a_refusal_is_not_decided_on_a_cache_another_replica_made_stale(api, replica, uid):
    """Replica A caches an unpaid order; replica B captures it; a refund sent to A
    is valid and must be recorded, not refused on A's stale copy (and not once
    and again on every retry while the copy stays cached)."""
    seller, order_id = uid("s"), uid("o")
    await api.seller(seller)
    await api.place(seller, order_id, "100")
    await _warm(api, order_id)
    status, body = await replica.capture(order_id, "100")
    assert status == 201, body
    status, body = await api.event(
        type="refund.issued", order_id=order_id, channel="qris", amount="40",
        gateway="midtrans", gateway_ref=uuid.uuid4().hex,
    )  # fmt: skip
    assert status == 201, body
    status, order = await api.get(f"/v1/orders/qris/{order_id}")
    assert (order["captured"], order["refunded"]) == ("100.00", "40.00"), order
    assert (await api.balance(seller))["available"] == "60.00"


async def test_a_cancel_is_not_refused_as_paid_on_a_stale_cache(api, replica, uid):
    """A paid order fully refunded on replica B may be cancelled on replica A,
    which cached it while it was paid."""
    seller, order_id = uid("s"), uid("o")
    await api.seller(seller)
    await api.place(seller, order_id, "100")
    status, body = await api.capture(order_id, "100")
    assert status == 201, body
    status, body = await replica.event(
        type="refund.issued", order_id=order_id, channel="qris", amount="100",
        gateway="midtrans", gateway_ref=uuid.uuid4().hex,
    )  # fmt: skip
    assert status == 201, body
    status, body = await api.event(type="order.cancelled", order_id=order_id, channel="qris")
    assert status == 201, body
    status, order = await api.get(f"/v1/orders/qris/{order_id}")
    assert order["status"] == "cancelled", order


async def test_a_refusal_on_fresh_state_still_stands(api, replica, uid):
    """The re-check changes nothing when the refusal was right: a refund beyond
    what was captured is refused from either replica, whatever they cached."""
    seller, order_id = uid("s"), uid("o")
    await api.seller(seller)
    await api.place(seller, order_id, "100")
    await _warm(api, order_id)
    status, body = await replica.capture(order_id, "30")
    assert status == 201, body
    for a in (api, replica):
        status, body = await a.event(
            type="refund.issued", order_id=order_id, channel="qris", amount="40",
            gateway="midtrans", gateway_ref=uuid.uuid4().hex,
        )  # fmt: skip
        assert (status, body["error"]["code"]) == (422, "refund_exceeds_captured"), body


async def test_one_gateway_payment_captured_on_two_replicas_at_once_is_credited_once(
    apis, api, uid
):
    seller = uid("s")
    await api.seller(seller)
    await api.place(seller, uid("o"), "1000")
    ref = uid("pay")
    answers = await asyncio.gather(
        *(apis[i % len(apis)].capture(uid("o"), "10", gateway_ref=ref) for i in range(10))
    )
    assert sorted(s for s, _ in answers) == [201] + [422] * 9, answers
    assert (await api.balance(seller))["captured_total"] == "10.00"


async def test_one_channel_account_registered_on_two_replicas_at_once_goes_to_one_seller(
    apis, api, uid
):
    account = uid("shop")
    answers = await asyncio.gather(
        *(
            apis[i % len(apis)].post(
                "/v1/sellers",
                {"seller_id": uid(f"s{i}"), "name": "x", "channels": {"shopee": account}},
            )
            for i in range(6)
        )
    )
    assert sorted(s for s, _ in answers) == [201] + [409] * 5, answers
