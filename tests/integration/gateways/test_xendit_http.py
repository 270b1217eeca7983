"""Xendit callbacks over HTTP: each callback's effect, the token, redelivery, refunds."""

from __future__ import annotations

import pytest

from tests.integration.gateways.conftest import Hooks, fixture, xendit_qr, xendit_refund


async def _seller_with_order(hooks: Hooks, uid, amount: str) -> tuple[str, str]:
    seller, order = uid("s"), uid("o")
    await hooks.seller(seller)
    await hooks.place(seller, order, amount)
    return seller, order


async def test_qr_payment_is_a_capture(hooks: Hooks, uid) -> None:
    seller, order = await _seller_with_order(hooks, uid, "10000")
    status, body = await hooks.xendit(xendit_qr(order, uid("qrpy")))
    assert status == 200, body
    assert [(r["type"], r["status"]) for r in body["results"]] == [("payment.captured", "recorded")]
    assert (await hooks.balance(seller))["captured_total"] == "10000.00"


async def test_legacy_qr_payment_is_a_capture(hooks: Hooks, uid) -> None:
    seller, order = await _seller_with_order(hooks, uid, "1500")
    body = fixture("xendit_qr_payment_v1_legacy")
    body["id"] = uid("qrpy")
    body["qr_code"]["external_id"] = order
    status, answer = await hooks.xendit(body)
    assert status == 200, answer
    assert answer["results"][0]["status"] == "recorded"
    assert (await hooks.balance(seller))["captured_total"] == "1500.00"


@pytest.mark.parametrize("status_name", ["PENDING", "EXPIRED", "FAILED"])
async def test_qr_payment_not_succeeded_is_noted(hooks: Hooks, uid, status_name: str) -> None:
    seller, order = await _seller_with_order(hooks, uid, "10000")
    status, body = await hooks.xendit(xendit_qr(order, uid("qrpy"), status=status_name))
    assert status == 200, body
    assert body["results"][0]["type"] == "order.status_noted"
    assert (await hooks.balance(seller))["captured_total"] == "0.00"


async def test_invoice_paid_then_settled_is_one_capture_and_expired_is_noted(
    hooks: Hooks, uid
) -> None:
    seller, order = await _seller_with_order(hooks, uid, "2000000")
    invoice = uid("inv")
    bodies = {}
    for name in ("xendit_invoice_paid", "xendit_invoice_settled", "xendit_invoice_expired"):
        body = fixture(name)
        body.update(id=invoice, external_id=order)
        bodies[name] = body
    answers = [await hooks.xendit(bodies["xendit_invoice_settled"])]
    answers += await hooks.times(3, lambda: hooks.xendit(bodies["xendit_invoice_paid"]))
    answers.append(await hooks.xendit(bodies["xendit_invoice_expired"]))
    statuses = [a[1]["results"][0]["status"] for a in answers]
    assert statuses == ["recorded", "duplicate", "duplicate", "duplicate", "recorded"]
    assert await hooks.history_types(order) == [
        "order.placed",
        "payment.captured",
        "order.status_noted",
    ]
    assert (await hooks.balance(seller))["captured_total"] == "2000000.00"


async def test_refund_succeeded_is_matched_through_its_payment(hooks: Hooks, uid) -> None:
    seller, order = await _seller_with_order(hooks, uid, "10000")
    payment = uid("qrpy")
    assert (await hooks.xendit(xendit_qr(order, payment)))[0] == 200
    refund = xendit_refund(uid("rfd"), payment, 4000)

    answers = await hooks.times(3, lambda: hooks.xendit(refund))

    assert sorted(a[1]["results"][0]["status"] for a in answers) == [
        "duplicate",
        "duplicate",
        "recorded",
    ]
    balance = await hooks.balance(seller)
    assert (balance["captured_total"], balance["refunded_total"], balance["available"]) == (
        "10000.00",
        "4000.00",
        "6000.00",
    )


async def test_refund_failed_is_noted_on_the_order(hooks: Hooks, uid) -> None:
    seller, order = await _seller_with_order(hooks, uid, "10000")
    payment = uid("qrpy")
    assert (await hooks.xendit(xendit_qr(order, payment)))[0] == 200
    status, body = await hooks.xendit(
        xendit_refund(uid("rfd"), payment, 4000, event="refund.failed")
    )
    assert status == 200, body
    assert body["results"][0]["type"] == "order.status_noted"
    assert body["results"][0]["status"] == "recorded"
    assert (await hooks.balance(seller))["refunded_total"] == "0.00"


async def test_refund_of_an_unknown_payment_goes_to_suspense(hooks: Hooks, uid) -> None:
    refund_id = uid("rfd")
    status, body = await hooks.xendit(xendit_refund(refund_id, uid("qrpy-ghost"), 4000))
    assert status == 200, body
    assert body["results"][0]["status"] == "suspense"
    assert body["results"][0]["reason"] == "unknown_order"
    (entry,) = await hooks.suspense_for(f"xendit:refund:{refund_id}")
    assert entry["amount"] == "4000.00"


async def test_an_unmapped_callback_is_acknowledged(hooks: Hooks) -> None:
    head = await hooks.head()
    status, body = await hooks.xendit({"event": "ewallet.capture", "data": {"id": "ewc_1"}})
    assert status == 200, body
    assert body["results"] == [{"status": "ignored", "reason": "no_ledger_effect"}]
    assert await hooks.head() == head


@pytest.mark.parametrize("token", [None, "", "wrong-token", "XND-CALLBACK-TOKEN-TEST"])
async def test_missing_or_wrong_token_is_401_and_records_nothing(hooks: Hooks, uid, token) -> None:
    _, order = await _seller_with_order(hooks, uid, "10000")
    head = await hooks.head()
    status, body = await hooks.xendit(xendit_qr(order, uid("qrpy")), token=token)
    assert status == 401, body
    assert body["error"]["code"] == "invalid_signature"
    assert await hooks.head() == head


async def test_redelivery_with_a_different_incidental_body_is_acknowledged_once(
    hooks: Hooks, uid
) -> None:
    seller, order = await _seller_with_order(hooks, uid, "10000")
    payment = uid("qrpy")
    assert (await hooks.xendit(xendit_qr(order, payment)))[0] == 200
    # same payment id; a field that only reaches metadata differs
    status, body = await hooks.xendit(xendit_qr(order, payment, channel_code="ID_OVO"))
    assert status == 200, body
    assert body["results"][0]["status"] == "duplicate"
    assert body["results"][0]["conflict"] is True
    assert (await hooks.balance(seller))["captured_total"] == "10000.00"
