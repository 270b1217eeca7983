"""Branches of ``gateways.intake`` no other gateway test reached (found with coverage).

Each is a promise of the workflow, checked over HTTP on the real database:
an unconfirmed fact the ledger cannot even hold is still kept, and a
suspended fact whose gateway key now holds another body is neither applied
nor lost.
"""

from __future__ import annotations

from tests.integration.gateways.conftest import Hooks, midtrans_body, xendit_qr


async def test_an_unconfirmed_payment_with_an_order_id_the_ledger_cannot_hold_is_kept(
    hooks: Hooks, uid
) -> None:
    order = "INV/2026/" + uid("o")  # "/" is not in the ledger's order id alphabet
    txn = uid("t")
    body = midtrans_body("midtrans_qris_settlement", order, txn)
    status, answer = await hooks.midtrans(body, knows=False)  # Midtrans never sent it
    assert status == 200, answer
    (result,) = answer["results"]
    assert result["status"] == "suspense", result
    assert result["reason"] == "unconfirmed"
    (entry,) = await hooks.suspense_for(f"midtrans:payment:{txn}")
    assert entry["reason"] == "unconfirmed"
    assert entry["event"]["order_id"] == order
    assert entry["amount"] == "275000.00"


async def test_a_suspended_fact_whose_key_now_holds_another_body_stays_open(
    hooks: Hooks, uid
) -> None:
    seller, order, payment = uid("s"), uid("o"), uid("qrpy")
    callback = xendit_qr(order, payment)
    status, answer = await hooks.xendit(callback)  # no such order yet: suspense
    assert status == 200, answer
    assert answer["results"][0]["status"] == "suspense", answer
    await hooks.seller(seller)
    await hooks.place(seller, order, "10000.00")
    key = f"xendit:payment:{payment}"
    # the gateway's key taken through the API by another body (another amount and reference)
    status, body = await hooks.post(
        "/v1/events",
        {
            "idempotency_key": key,
            "type": "payment.captured",
            "occurred_at": "2026-11-30T10:05:00+08:00",
            "order_id": order,
            "channel": "qris",
            "amount": "4000.00",
            "currency": "IDR",
            "gateway": "xendit",
            "gateway_ref": uid("other"),
        },
    )
    assert status == 201, body
    status, answer = await hooks.xendit(callback)  # the redelivery
    assert status == 200, answer
    (result,) = answer["results"]
    assert result["status"] == "duplicate", result
    assert result["conflict"] is True
    (entry,) = await hooks.suspense_for(key)  # left open for a person to look at
    assert entry["reason"] == "unknown_order"
    assert (await hooks.balance(seller))["captured_total"] == "4000.00"
