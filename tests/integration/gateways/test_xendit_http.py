"""Xendit callbacks over HTTP: each callback's effect, the token, redelivery, refunds, suspense."""

from __future__ import annotations

from typing import Any

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
    status, body = await hooks.xendit({"event": "payment_token.activation", "data": {"id": "pt"}})
    assert status == 200, body
    assert body["results"] == [{"status": "ignored", "reason": "no_ledger_effect"}]
    assert await hooks.head() == head


# --- Payments API v3 ------------------------------------------------------------------------


def xendit_v3(
    order_id: str, payment_id: str, event: str = "payment.capture", **data: Any
) -> dict[str, Any]:
    body = fixture("xendit_payment_capture_v3")
    body["event"] = event
    body["data"].update(payment_id=payment_id, reference_id=order_id, **data)
    return body


async def test_v3_payment_capture_is_a_capture_refunded_through_its_payment_id(
    hooks: Hooks, uid
) -> None:
    seller, order = await _seller_with_order(hooks, uid, "10000")
    payment = uid("py")
    answers = await hooks.times(3, lambda: hooks.xendit(xendit_v3(order, payment)))
    assert sorted(a[1]["results"][0]["status"] for a in answers) == [
        "duplicate",
        "duplicate",
        "recorded",
    ]
    assert answers[0][1]["results"][0]["type"] == "payment.captured"

    status, body = await hooks.xendit(xendit_refund(uid("rfd"), payment, 4000))

    assert status == 200, body
    assert body["results"][0]["status"] == "recorded"
    balance = await hooks.balance(seller)
    assert (balance["captured_total"], balance["refunded_total"]) == ("10000.00", "4000.00")
    assert await hooks.history_types(order) == [
        "order.placed",
        "payment.captured",
        "refund.issued",
    ]


async def test_v3_later_capture_is_added_once(hooks: Hooks, uid) -> None:
    seller, order = await _seller_with_order(hooks, uid, "10000")
    payment, first, second = uid("py"), uid("cap-a"), uid("cap-b")
    c1 = {"capture_id": first, "capture_amount": 6000, "capture_timestamp": "2024-05-01T10:00:00Z"}
    c2 = {"capture_id": second, "capture_amount": 4000, "capture_timestamp": "2024-05-02T10:00:00Z"}
    status, body = await hooks.xendit(xendit_v3(order, payment, captures=[c1]))
    assert status == 200, body
    status, body = await hooks.xendit(xendit_v3(order, payment, captures=[c1, c2]))
    assert status == 200, body
    assert [r["status"] for r in body["results"]] == ["duplicate", "recorded"]
    assert (await hooks.balance(seller))["captured_total"] == "10000.00"
    # a refund names the payment, whichever capture it refunds
    status, body = await hooks.xendit(xendit_refund(uid("rfd"), payment, 10000))
    assert body["results"][0]["status"] == "recorded", body


async def test_v3_authorization_and_failure_are_noted(hooks: Hooks, uid) -> None:
    seller, order = await _seller_with_order(hooks, uid, "10000")
    payment = uid("py")
    for event, status_name in (
        ("payment.authorization", "AUTHORIZED"),
        ("payment.failure", "FAILED"),
    ):
        status, body = await hooks.xendit(
            xendit_v3(order, payment, event, status=status_name, captures=None)
        )
        assert status == 200, body
        assert body["results"][0]["type"] == "order.status_noted"
        assert body["results"][0]["status"] == "recorded"
    assert await hooks.history_types(order) == [
        "order.placed",
        "order.status_noted",
        "order.status_noted",
    ]
    assert (await hooks.balance(seller))["captured_total"] == "0.00"


async def test_v3_capture_for_an_unknown_order_goes_to_suspense(hooks: Hooks, uid) -> None:
    payment = uid("py")
    status, body = await hooks.xendit(xendit_v3(uid("o-ghost"), payment))
    assert status == 200, body
    assert body["results"][0]["status"] == "suspense"
    assert body["results"][0]["reason"] == "unknown_order"
    (entry,) = await hooks.suspense_for(f"xendit:payment:{payment}")
    assert entry["amount"] == "10000.00"


# --- e-wallets ------------------------------------------------------------------------------


async def test_ewallet_capture_is_a_capture_and_a_failed_charge_is_noted(hooks: Hooks, uid) -> None:
    seller, order = await _seller_with_order(hooks, uid, "1000")
    charge = uid("ewc")
    failed = fixture("xendit_ewallet_capture")
    failed["data"].update(id=uid("ewc-failed"), reference_id=order, status="FAILED")
    captured = fixture("xendit_ewallet_capture")
    captured["data"].update(id=charge, reference_id=order)

    answers = [await hooks.xendit(failed)]
    answers += await hooks.times(2, lambda: hooks.xendit(captured))

    assert [a[1]["results"][0]["type"] for a in answers] == [
        "order.status_noted",
        "payment.captured",
        "payment.captured",
    ]
    assert sorted(a[1]["results"][0]["status"] for a in answers) == [
        "duplicate",
        "recorded",
        "recorded",
    ]
    assert (await hooks.balance(seller))["captured_total"] == "1000.00"


async def test_legacy_ewallet_paid_is_a_capture_and_expired_is_noted(hooks: Hooks, uid) -> None:
    seller, order = await _seller_with_order(hooks, uid, "1000")
    expired = fixture("xendit_ewallet_legacy_paid") | {
        "external_id": order,
        "payment_status": "EXPIRED",
    }
    paid = fixture("xendit_ewallet_legacy_paid") | {"external_id": order, "ewallet_type": "OVO"}
    status, body = await hooks.xendit(expired)
    assert status == 200, body
    assert body["results"][0]["type"] == "order.status_noted"
    for expected in ("recorded", "duplicate"):
        status, body = await hooks.xendit(paid)
        assert status == 200, body
        assert body["results"][0]["status"] == expected
    assert (await hooks.balance(seller))["captured_total"] == "1000.00"
    assert await hooks.history_types(order) == [
        "order.placed",
        "order.status_noted",
        "payment.captured",
    ]


# --- flat callbacks not mapped --------------------------------------------------------------


def va_paid(external_id: str, callback_id: str, amount: int = 80000) -> dict[str, Any]:
    """A fixed virtual account "paid" callback: flat, no event, no status."""
    return {
        "updated": "2017-08-11T11:20:11.000Z",
        "created": "2017-08-11T11:20:11.000Z",
        "payment_id": callback_id + "-payment",
        "callback_virtual_account_id": "598d91b1191029596846047f",
        "owner_id": "5824128aa6f9f2e648be9d76",
        "external_id": external_id,
        "account_number": "1001470126",
        "bank_code": "MANDIRI",
        "amount": amount,
        "transaction_timestamp": "2017-08-11T11:20:10.000Z",
        "merchant_code": "8808",
        "id": callback_id,
    }


async def test_an_unmapped_flat_payment_is_kept_in_suspense_for_an_operator(
    hooks: Hooks, uid
) -> None:
    seller, order = await _seller_with_order(hooks, uid, "80000")
    callback_id = uid("va")
    body = va_paid(order, callback_id)

    status, answer = await hooks.xendit(body)

    assert status == 200, answer  # not a 422 Xendit would retry for a day
    [result] = answer["results"]
    assert (result["type"], result["status"]) == ("payment.captured", "suspense")
    (entry,) = await hooks.suspense_for(f"xendit:payment:{callback_id}")
    assert entry["amount"] == "80000.00"
    assert entry["event"]["metadata"]["external_id"] == order
    assert (await hooks.balance(seller))["captured_total"] == "0.00"  # never credited by itself
    # a redelivery does not place it either
    status, again = await hooks.xendit(body)
    assert again["results"][0]["status"] == "suspense", again
    # the operator places it: the capture keeps Xendit's key
    status, resolved = await hooks.resolve(entry["id"], "qris", order)
    assert status == 201, resolved
    assert (await hooks.balance(seller))["captured_total"] == "80000.00"
    status, again = await hooks.xendit(body)
    assert again["results"][0]["status"] == "duplicate", again


async def test_an_unmapped_flat_callback_without_money_is_acknowledged(hooks: Hooks, uid) -> None:
    head = await hooks.head()
    body = va_paid(uid("o"), uid("va"))
    del body["amount"]
    status, answer = await hooks.xendit(body)
    assert status == 200, answer
    assert answer["results"] == [{"status": "ignored", "reason": "no_ledger_effect"}]
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
