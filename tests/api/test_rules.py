"""Every rule of CONTRACT section 2 through HTTP: 422 with its code, and nothing recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ledger.store import LedgerStore


async def refused(
    api: Any, store: LedgerStore, code: str, send: Callable[[], Awaitable[tuple[int, Any]]]
) -> dict[str, Any]:
    """Sends one command that must break ``code``; checks that the log did not move."""
    head_before = await store.head()
    status, body = await send()
    assert status == 422, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert await store.head() == head_before, "a refused command must record nothing"
    return body["error"]


async def test_unknown_seller_for_order_placed(api, store, uid):
    error = await refused(
        api, store, "unknown_seller",
        lambda: api.event(type="order.placed", seller_id=uid("ghost"), order_id=uid("o"),
                          channel="qris", amount="1000"),
    )  # fmt: skip
    assert error.get("field") == "seller_id"
    status, _ = await api.get(f"/v1/orders/qris/{uid('o')}")
    assert status == 404


async def test_unknown_seller_for_payout(api, store, uid):
    await refused(
        api, store, "unknown_seller",
        lambda: api.event(type="payout.sent", seller_id=uid("ghost"), amount="1",
                          reference=uid("r1")),
    )  # fmt: skip


async def test_unknown_order_for_every_order_event(api, store, uid):
    seller = uid("s")
    await api.seller(seller)
    await api.place(seller, uid("o"), channel="shopee")
    sends = {
        "payment.captured": dict(amount="1000", gateway="midtrans", gateway_ref=uid("p")),
        "payment.failed": dict(gateway="midtrans", gateway_ref=uid("pf")),
        "refund.issued": dict(amount="1000", gateway="midtrans", gateway_ref=uid("rf")),
        "order.cancelled": {},
    }
    for kind, extra in sends.items():
        # the order exists on shopee, not on qris: an order is (channel, order_id)
        for order_id, channel in ((uid("nope"), "qris"), (uid("o"), "qris")):
            await refused(
                api, store, "unknown_order",
                lambda k=kind, e=extra, o=order_id, c=channel: api.event(
                    type=k, order_id=o, channel=c, **e
                ),
            )  # fmt: skip


async def test_order_exists(api, store, uid):
    seller = uid("s")
    await api.seller(seller)
    await api.place(seller, uid("o"), "1000")
    await refused(
        api, store, "order_exists",
        lambda: api.event(type="order.placed", seller_id=seller, order_id=uid("o"),
                          channel="qris", amount="2000"),
    )  # fmt: skip
    # the same order id on another channel is another order
    await api.place(seller, uid("o"), "2000", channel="website")
    bal = await api.balance(seller)
    assert bal["pending"] == "3000.00"


async def test_order_closed_after_cancel(api, store, uid):
    seller = uid("s")
    await api.seller(seller)
    await api.place(seller, uid("o"), "1000")
    status, body = await api.event(type="order.cancelled", order_id=uid("o"), channel="qris")
    assert status == 201, body
    before = await api.balance(seller)
    assert before["pending"] == "0.00"
    await refused(api, store, "order_closed", lambda: api.capture(uid("o"), "1000"))
    await refused(
        api, store, "order_closed",
        lambda: api.event(type="order.cancelled", order_id=uid("o"), channel="qris"),
    )  # fmt: skip
    assert await api.balance(seller) == before


async def test_cancelling_a_paid_order_is_refused_until_refunded(api, store, uid):
    seller = uid("s")
    await api.seller(seller)
    await api.place(seller, uid("o"), "1000")
    status, _ = await api.capture(uid("o"), "400")
    assert status == 201
    await refused(
        api, store, "order_paid",
        lambda: api.event(type="order.cancelled", order_id=uid("o"), channel="qris"),
    )  # fmt: skip
    status, body = await api.event(
        type="refund.issued", order_id=uid("o"), channel="qris", amount="400",
        gateway="midtrans", gateway_ref=uid("rf"),
    )  # fmt: skip
    assert status == 201, body
    status, body = await api.event(type="order.cancelled", order_id=uid("o"), channel="qris")
    assert status == 201, body


async def test_overpayment(api, store, uid):
    seller = uid("s")
    await api.seller(seller)
    await api.place(seller, uid("o"), "1000")
    await refused(api, store, "overpayment", lambda: api.capture(uid("o"), "1000.01"))
    status, _ = await api.capture(uid("o"), "600")
    assert status == 201
    before = await api.balance(seller)
    error = await refused(api, store, "overpayment", lambda: api.capture(uid("o"), "401"))
    assert error.get("field") == "amount"
    assert await api.balance(seller) == before
    status, _ = await api.capture(uid("o"), "400")
    assert status == 201


async def test_overpayment_error_gives_no_integer_minor_amounts(api, store, uid):
    """CONTRACT 1: responses give amounts as strings with the currency's digits."""
    seller = uid("s")
    await api.seller(seller)
    await api.place(seller, uid("o"), "1000")
    error = await refused(api, store, "overpayment", lambda: api.capture(uid("o"), "1500"))
    leaked = {k: v for k, v in error.items() if k.endswith("_minor") or isinstance(v, int)}
    assert leaked == {}, f"amounts in minor units leak into the response: {leaked}"


async def test_refund_exceeds_captured(api, store, uid):
    seller = uid("s")
    await api.seller(seller)
    await api.place(seller, uid("o"), "1000")

    def refund(amount: str) -> Awaitable[tuple[int, Any]]:
        return api.event(
            type="refund.issued", order_id=uid("o"), channel="qris", amount=amount,
            gateway="midtrans", gateway_ref=uid("rf") + amount,
        )  # fmt: skip

    await refused(api, store, "refund_exceeds_captured", lambda: refund("1"))
    status, _ = await api.capture(uid("o"), "700")
    assert status == 201
    status, _ = await refund("300")
    assert status == 201
    before = await api.balance(seller)
    await refused(api, store, "refund_exceeds_captured", lambda: refund("400.01"))
    assert await api.balance(seller) == before
    status, _ = await refund("400")
    assert status == 201
    assert (await api.balance(seller))["refunded_total"] == "700.00"


async def test_insufficient_balance(api, store, uid):
    seller = uid("s")
    await api.seller(seller)
    await refused(
        api, store, "insufficient_balance",
        lambda: api.event(type="payout.sent", seller_id=seller, amount="1", reference=uid("r0")),
    )  # fmt: skip
    await api.place(seller, uid("o"), "1000")
    status, _ = await api.capture(uid("o"), "1000", fee="10")
    assert status == 201
    # available = 1000 captured - 10 fee = 990; the pending nothing
    await refused(
        api, store, "insufficient_balance",
        lambda: api.event(type="payout.sent", seller_id=seller, amount="990.01",
                          reference=uid("r1")),
    )  # fmt: skip
    status, body = await api.event(
        type="payout.sent", seller_id=seller, amount="990", reference=uid("r2")
    )
    assert status == 201, body
    bal = await api.balance(seller)
    assert (bal["available"], bal["paid_out_total"]) == ("0.00", "990.00")
    await refused(
        api, store, "insufficient_balance",
        lambda: api.event(type="payout.sent", seller_id=seller, amount="0.01", reference=uid("r3")),
    )  # fmt: skip


async def test_currency_mismatch(api, store, uid):
    seller = uid("s")
    await api.seller(seller)
    status, body = await api.event(
        type="order.placed", seller_id=seller, order_id=uid("o"), channel="website",
        amount="10.00", currency="USD",
    )  # fmt: skip
    assert status == 201, body
    await refused(
        api, store, "currency_mismatch",
        lambda: api.capture(uid("o"), "10", channel="website"),  # IDR by default
    )  # fmt: skip
    status, body = await api.capture(uid("o"), "10", channel="website", currency="USD")
    assert status == 201, body
    await refused(
        api, store, "currency_mismatch",
        lambda: api.event(type="refund.issued", order_id=uid("o"), channel="website",
                          amount="5", currency="IDR", gateway="midtrans", gateway_ref=uid("rf")),
    )  # fmt: skip


async def test_a_cancel_or_failed_payment_naming_another_currency_is_refused(api, store, uid):
    """Neither needs a currency; one that names one must name its order's."""
    seller = uid("s")
    await api.seller(seller)
    await api.place(seller, uid("o"), "100")  # IDR
    failed = {"type": "payment.failed", "order_id": uid("o"), "channel": "qris",
              "gateway": "midtrans", "gateway_ref": uid("g")}  # fmt: skip
    await refused(api, store, "currency_mismatch", lambda: api.event(**failed, currency="USD"))
    await refused(
        api, store, "currency_mismatch",
        lambda: api.event(type="order.cancelled", order_id=uid("o"), channel="qris",
                          currency="USD"),
    )  # fmt: skip
    assert (await api.event(**failed, currency="IDR"))[0] == 201
    assert (await api.event(**failed | {"gateway_ref": uid("g2")}))[0] == 201
    status, body = await api.event(type="order.cancelled", order_id=uid("o"), channel="qris")
    assert status == 201, body


async def test_validation_errors_are_422_naming_the_field_and_record_nothing(api, store, uid):
    seller = uid("s")
    await api.seller(seller)
    cases = [
        ({"amount": 150000.5}, "amount"),
        ({"amount": "1e5"}, "amount"),
        ({"amount": "-1"}, "amount"),
        ({"occurred_at": "2026-11-30T10:00:00"}, "occurred_at"),
        ({"channel": "ebay"}, "channel"),
        ({"currency": "XXX"}, "currency"),
        ({"order_id": "has space"}, "order_id"),
    ]
    for change, field in cases:
        body = {
            "type": "order.placed", "seller_id": seller, "order_id": uid("o"),
            "channel": "qris", "amount": "1000",
        } | change  # fmt: skip
        error = await refused(api, store, "validation_error", lambda b=body: api.event(**b))
        assert error.get("field") == field, (change, error)


async def test_a_refused_event_leaves_the_order_untouched(api, store, uid):
    seller = uid("s")
    await api.seller(seller)
    await api.place(seller, uid("o"), "1000")
    status, before = await api.get(f"/v1/orders/qris/{uid('o')}")
    assert status == 200
    await refused(api, store, "overpayment", lambda: api.capture(uid("o"), "5000"))
    status, after = await api.get(f"/v1/orders/qris/{uid('o')}")
    assert after == before


async def test_a_gateway_payment_is_captured_once(api, store, uid):
    """Another key for the same gateway payment (gateway and its reference)
    must not credit it again, on the same order or another."""
    seller = uid("s")
    await api.seller(seller)
    await api.place(seller, uid("o1"), "100")
    await api.place(seller, uid("o2"), "100")
    ref = uid("pay")
    status, body = await api.capture(uid("o1"), "50", gateway_ref=ref)
    assert status == 201, body
    for order in (uid("o1"), uid("o2")):
        error = await refused(
            api, store, "payment_exists", lambda o=order: api.capture(o, "50", gateway_ref=ref)
        )
        assert error["field"] == "gateway_ref"
    # the same reference at another gateway is another payment
    status, body = await api.capture(uid("o2"), "50", gateway_ref=ref, gateway="doku")
    assert status == 201, body
    assert (await api.balance(seller))["captured_total"] == "100.00"


async def test_concurrent_captures_of_one_gateway_payment_credit_it_once(api, uid):
    seller = uid("s")
    await api.seller(seller)
    await api.place(seller, uid("o"), "1000")
    ref = uid("pay")
    answers = await asyncio.gather(
        *(api.capture(uid("o"), "10", gateway_ref=ref) for _ in range(8))
    )
    assert sorted(s for s, _ in answers) == [201] + [422] * 7, answers
    assert {b["error"]["code"] for s, b in answers if s == 422} == {"payment_exists"}
    assert (await api.balance(seller))["captured_total"] == "10.00"


async def test_a_channel_account_belongs_to_one_seller(api, store, uid):
    account = uid("shop")
    status, body = await api.post(
        "/v1/sellers", {"seller_id": uid("s1"), "name": "A", "channels": {"shopee": account}}
    )
    assert status == 201, body
    head = await store.head()
    status, body = await api.post(
        "/v1/sellers", {"seller_id": uid("s2"), "name": "B", "channels": {"shopee": account}}
    )
    assert (status, body["error"]["code"]) == (409, "channel_account_taken"), body
    assert body["error"]["field"] == "channels"
    assert await store.head() == head
    status, body = await api.post(
        "/v1/sellers", {"seller_id": uid("s2"), "name": "B", "channels": {"tokopedia": account}}
    )
    assert status == 201, body  # the same id on another channel is another account
