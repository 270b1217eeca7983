"""Facts are unique by what identifies them (issue 10, findings 3-7): a refund by
its gateway reference, a payout by its reference, a Midtrans capture by its
signed order id, gateway names from one closed lower-case list, and a refund
that names its payment limited by what that payment captured. Each holds for
single events, batches and across replicas (``apis``), and refuses with 422
leaving the log and the balance as they were.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.api.test_rules import refused


async def paid_order(api: Any, uid: Any, name: str, *captures: tuple[str, str]) -> str:
    """A seller with an order of 100,000 paid by ``captures`` of (gateway_ref, amount)."""
    seller = uid(f"s-{name}")
    await api.seller(seller)
    await api.place(seller, uid(name), "100000")
    for ref, amount in captures:
        status, body = await api.capture(uid(name), amount, gateway_ref=ref)
        assert status == 201, body
    return seller


def refund(order_id: str, amount: str, ref: str, **extra: Any) -> dict[str, Any]:
    return dict(
        type="refund.issued", order_id=order_id, channel="qris", amount=amount,
        gateway=extra.pop("gateway", "xendit"), gateway_ref=ref, **extra,
    )  # fmt: skip


async def test_a_gateway_refund_is_recorded_once_under_any_key(api, store, uid):
    seller = await paid_order(api, uid, "o", (uid("pay"), "100000"))
    status, body = await api.event(**refund(uid("o"), "30000", uid("rf")))
    assert status == 201, body
    error = await refused(
        api, store, "refund_exists", lambda: api.event(**refund(uid("o"), "30000", uid("rf")))
    )
    assert error["field"] == "gateway_ref"
    assert (await api.balance(seller))["refunded_total"] == "30000.00"
    # the same reference at another gateway is another refund
    status, body = await api.event(**refund(uid("o"), "30000", uid("rf"), gateway="doku"))
    assert status == 201, body


async def test_a_gateway_refund_in_a_batch_twice_is_recorded_once(api, uid):
    seller = await paid_order(api, uid, "o", (uid("pay"), "100000"))
    items = [
        refund(uid("o"), "30000", uid("rf")) | {"idempotency_key": uuid.uuid4().hex,
                                                "occurred_at": "2026-11-30T11:00:00+08:00"}
        for _ in range(2)
    ]  # fmt: skip
    status, body = await api.post("/v1/events", {"events": items})
    assert status == 200, body
    assert [r["status"] for r in body["results"]] == ["recorded", "rejected"], body
    assert body["results"][1]["error"]["code"] == "refund_exists"
    assert (await api.balance(seller))["refunded_total"] == "30000.00"


async def test_concurrent_copies_of_one_refund_across_replicas_return_it_once(apis, api, uid):
    seller = await paid_order(api, uid, "o", (uid("pay"), "100000"))
    answers = await asyncio.gather(
        *(apis[i % len(apis)].event(**refund(uid("o"), "30000", uid("rf"))) for i in range(8))
    )
    statuses = sorted(s for s, _ in answers)
    assert statuses == [201] + [422] * 7, answers
    assert {b["error"]["code"] for s, b in answers if s == 422} == {"refund_exists"}
    assert (await api.balance(seller))["refunded_total"] == "30000.00"


async def test_a_payout_reference_is_paid_once(api, store, uid):
    seller = await paid_order(api, uid, "o", (uid("pay"), "100000"))
    payout = dict(type="payout.sent", seller_id=seller, amount="1000", reference=uid("trf"))
    status, body = await api.event(**payout)
    assert status == 201, body
    error = await refused(api, store, "payout_exists", lambda: api.event(**payout))
    assert error["field"] == "reference"
    assert (await api.balance(seller))["paid_out_total"] == "1000.00"


async def test_concurrent_payouts_with_one_reference_across_replicas_pay_once(apis, api, uid):
    seller = await paid_order(api, uid, "o", (uid("pay"), "100000"))
    answers = await asyncio.gather(
        *(
            apis[i % len(apis)].event(
                type="payout.sent", seller_id=seller, amount="1000", reference=uid("trf")
            )
            for i in range(6)
        )
    )
    assert sorted(s for s, _ in answers) == [201] + [422] * 5, answers
    assert {b["error"]["code"] for s, b in answers if s == 422} == {"payout_exists"}
    assert (await api.balance(seller))["paid_out_total"] == "1000.00"


async def test_gateway_names_are_one_closed_lower_case_list(api, store, uid):
    seller = await paid_order(api, uid, "o")
    status, body = await api.capture(uid("o"), "100", gateway="xendit", gateway_ref=uid("p"))
    assert status == 201, body
    for spelling in ("Xendit", "XENDIT", "xendit ", "my-own-gateway"):
        error = await refused(
            api, store, "validation_error",
            lambda g=spelling: api.capture(uid("o"), "100", gateway=g, gateway_ref=uid("p")),
        )  # fmt: skip
        assert error["field"] == "gateway"
        assert "xendit" in error["message"]
    assert (await api.balance(seller))["captured_total"] == "100.00"


async def test_a_midtrans_capture_is_unique_per_order_id_whatever_its_transaction_id(
    api, store, uid
):
    """Midtrans allows one successful transaction per merchant order id, and
    signs the order id, not the transaction id: a second capture of the order
    under another transaction id is refused, by webhook or canonical API."""
    seller = await paid_order(api, uid, "o")
    status, body = await api.capture(uid("o"), "40000", gateway="midtrans", gateway_ref="trx-1")
    assert status == 201, body
    for trx in ("trx-2", "trx-3"):
        error = await refused(
            api, store, "payment_exists",
            lambda t=trx: api.capture(uid("o"), "40000", gateway="midtrans", gateway_ref=t),
        )  # fmt: skip
        assert error["field"] == "order_id"
    assert (await api.balance(seller))["captured_total"] == "40000.00"
    # other gateways may capture an order in parts
    status, body = await api.capture(uid("o"), "60000", gateway="xendit")
    assert status == 201, body


async def test_a_refund_naming_its_payment_is_limited_by_that_payment(api, store, uid):
    """An order paid 100,000 + 100,000 (two payments) cannot refund 150,000 of one."""
    seller = uid("s")
    await api.seller(seller)
    await api.place(seller, uid("o"), "200000")
    for ref in ("pay-a", "pay-b"):
        status, body = await api.capture(uid("o"), "100000", gateway_ref=uid(ref))
        assert status == 201, body
    error = await refused(
        api, store, "refund_exceeds_captured",
        lambda: api.event(**refund(uid("o"), "150000", uid("rf1"), payment_ref=uid("pay-a"))),
    )  # fmt: skip
    assert error["field"] == "amount"
    status, body = await api.event(
        **refund(uid("o"), "60000", uid("rf2"), payment_ref=uid("pay-a"))
    )
    assert status == 201, body
    # what is left of payment a is 40,000, whatever payment b holds
    await refused(
        api, store, "refund_exceeds_captured",
        lambda: api.event(**refund(uid("o"), "40001", uid("rf3"), payment_ref=uid("pay-a"))),
    )  # fmt: skip
    status, body = await api.event(
        **refund(uid("o"), "40000", uid("rf4"), payment_ref=uid("pay-a"))
    )
    assert status == 201, body
    # a payment this order never captured (or another gateway's) returns nothing
    for ref, gateway in ((uid("nope"), "xendit"), (uid("pay-b"), "doku")):
        error = await refused(
            api, store, "refund_exceeds_captured",
            lambda r=ref, g=gateway: api.event(
                **refund(uid("o"), "1", uid(f"rf-{g}"), payment_ref=r, gateway=g)
            ),
        )  # fmt: skip
        assert error["field"] == "payment_ref"
    balance = await api.balance(seller)
    assert (balance["captured_total"], balance["refunded_total"]) == ("200000.00", "100000.00")
    # the refund names its payment in the log, so a replay limits it the same way
    status, order = await api.get(f"/v1/orders/qris/{uid('o')}")
    assert status == 200, order
    refunds = [e for e in order["history"] if e["type"] == "refund.issued"]
    assert [e["data"].get("payment_ref") for e in refunds] == [uid("pay-a")] * 2


async def test_the_claims_of_facts_recorded_before_them_are_taken_when_migrating(
    api, store, pool, uid
):
    """Migration 3 takes the claims of refunds, payouts and Midtrans captures
    already in the log, so that a copy of one of them is refused after an upgrade."""
    seller = await paid_order(api, uid, "o")
    status, body = await api.capture(uid("o"), "50000", gateway="midtrans", gateway_ref=uid("t"))
    assert status == 201, body
    assert (await api.event(**refund(uid("o"), "100", uid("rf"), gateway="midtrans")))[0] == 201
    payout = dict(type="payout.sent", seller_id=seller, amount="100", reference=uid("trf"))
    assert (await api.event(**payout))[0] == 201
    mine = [("refund", "midtrans", uid("rf")), ("payout", "", uid("trf")),
            ("gateway_order", "midtrans", uid("o"))]  # fmt: skip
    async with pool.acquire() as conn, conn.transaction():
        # as a database of 0.1.0 was: no claims of these kinds, migration 3 not applied
        await conn.execute(
            "DELETE FROM fact_claims WHERE (kind, a, b) IN"
            " (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))",
            *[list(column) for column in zip(*mine, strict=True)],
        )
        await conn.execute("DELETE FROM schema_migrations WHERE version = 3")
    assert await store.migrate() == [3]
    rows = await pool.fetch("SELECT kind, a, b FROM fact_claims")
    assert set(mine) <= {tuple(r) for r in rows}
    await refused(api, store, "payout_exists", lambda: api.event(**payout))
    await refused(
        api, store, "refund_exists",
        lambda: api.event(**refund(uid("o"), "100", uid("rf"), gateway="midtrans")),
    )  # fmt: skip
