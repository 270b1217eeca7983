"""Issue 4, done when: a seller's balance reflects a Midtrans QRIS settlement, a Xendit QR
payment and its partial refund exactly once each, however often they are delivered."""

from __future__ import annotations

import asyncio
import json

from tests.integration.gateways.conftest import Hooks, midtrans_body, xendit_qr, xendit_refund


async def test_each_fact_counts_once_however_often_delivered(hooks: Hooks, uid) -> None:
    seller, qris_order, xendit_order = uid("s"), uid("qris"), uid("xnd")
    payment, refund = uid("qrpy"), uid("rfd")
    await hooks.seller(seller)
    await hooks.place(seller, qris_order, "275000.00")
    await hooks.place(seller, xendit_order, "10000")
    settlement = json.dumps(midtrans_body("midtrans_qris_settlement", qris_order, uid("t")))
    qr_payment = json.dumps(xendit_qr(xendit_order, payment, 10000))
    partial_refund = json.dumps(xendit_refund(refund, payment, 2500))

    async def three_times_each() -> list[tuple[int, object]]:
        sends = [hooks.midtrans(settlement.encode()) for _ in range(3)]
        sends += [hooks.xendit(qr_payment.encode()) for _ in range(3)]
        return await asyncio.gather(*sends)

    # three times sequentially, then three times all at once, payment before refund
    for _ in range(3):
        assert (await hooks.midtrans(settlement.encode()))[0] == 200
        assert (await hooks.xendit(qr_payment.encode()))[0] == 200
    for status, body in await three_times_each():
        assert status == 200, body
    for _ in range(3):
        assert (await hooks.xendit(partial_refund.encode()))[0] == 200
    answers = await asyncio.gather(
        *(hooks.xendit(partial_refund.encode()) for _ in range(3)), three_times_each()
    )
    assert all(status == 200 for status, _ in answers[:3])
    assert all(status == 200 for status, _ in answers[3])

    balance = await hooks.balance(seller)
    assert balance["captured_total"] == "285000.00"
    assert balance["refunded_total"] == "2500.00"
    assert balance["available"] == "282500.00"
    assert balance["pending"] == "0.00"
    assert await hooks.history_types(qris_order) == ["order.placed", "payment.captured"]
    assert await hooks.history_types(xendit_order) == [
        "order.placed",
        "payment.captured",
        "refund.issued",
    ]
