"""Midtrans notifications over HTTP: each status's effect, signatures, redelivery, refunds."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.integration.gateways.conftest import Hooks, fixture, midtrans_body, midtrans_sign

# fixture -> (types recorded on the order, captured, refunded) as served over HTTP.
# Refund notifications are sent after a capture of the same transaction.
STATUS_EFFECTS = {
    "midtrans_qris_settlement": (["payment.captured"], "275000.00", "0.00"),
    "midtrans_gopay_settlement": (["payment.captured"], "154600.00", "0.00"),
    "midtrans_shopeepay_settlement": (["payment.captured"], "16700.00", "0.00"),
    "midtrans_bca_va_settlement": (["payment.captured"], "100000.00", "0.00"),
    "midtrans_permata_va_settlement": (["payment.captured"], "185000.00", "0.00"),
    "midtrans_card_capture_accept": (["payment.captured"], "10000.00", "0.00"),
    "midtrans_card_settlement": (["payment.captured"], "10000.00", "0.00"),
    "midtrans_card_capture_challenge": (["order.status_noted"], "0.00", "0.00"),
    "midtrans_card_deny": (["order.status_noted"], "0.00", "0.00"),
    "midtrans_card_cancel": (["order.status_noted"], "0.00", "0.00"),
    "midtrans_card_failure": (["order.status_noted"], "0.00", "0.00"),
    "midtrans_qris_pending": (["order.status_noted"], "0.00", "0.00"),
    "midtrans_qris_expire": (["order.status_noted"], "0.00", "0.00"),
    "midtrans_partial_refund_no_list": (["order.status_noted"], "0.00", "0.00"),
    "midtrans_partial_refund_first": (["refund.issued"], "30000.00", "5000.00"),
    "midtrans_partial_refund_unconfirmed": (["refund.issued"] * 2, "30000.00", "12000.00"),
    "midtrans_partial_refund_confirmed": (["refund.issued"] * 2, "30000.00", "12000.00"),
    "midtrans_refund_direct": (["refund.issued"] * 2, "698879.00", "12000.00"),
}


def _capture_of(name: str, order_id: str, transaction_id: str) -> dict[str, object]:
    """The capture a refund notification refunds: same transaction, status capture."""
    body = fixture(name)
    body.pop("refunds", None)
    body.pop("refund_amount", None)
    body.update(
        order_id=order_id,
        transaction_id=transaction_id,
        transaction_status="capture",
        status_code="200",
        fraud_status="accept",
    )
    return midtrans_sign(body)


def test_every_midtrans_fixture_is_in_the_table() -> None:
    from tests.integration.gateways.conftest import FIXTURES

    assert {p.stem for p in FIXTURES.glob("midtrans_*.json")} == set(STATUS_EFFECTS)


@pytest.mark.parametrize("name", sorted(STATUS_EFFECTS))
async def test_each_status_has_its_effect(hooks: Hooks, uid, name: str) -> None:
    types, captured, refunded = STATUS_EFFECTS[name]
    seller, order, txn = uid("s"), uid("o"), uid("t")
    gross = fixture(name)["gross_amount"]
    await hooks.seller(seller)
    await hooks.place(seller, order, gross)
    expected_history = ["order.placed"]
    if "refund" in types[0]:
        status, body = await hooks.midtrans(_capture_of(name, order, txn))
        assert status == 200, body
        expected_history.append("payment.captured")

    status, body = await hooks.midtrans(midtrans_body(name, order, txn))

    assert status == 200, body
    assert body["status"] == "ok"
    assert [r["type"] for r in body["results"]] == types
    assert {r["status"] for r in body["results"]} == {"recorded"}
    assert await hooks.history_types(order) == expected_history + types
    balance = await hooks.balance(seller)
    assert (balance["captured_total"], balance["refunded_total"]) == (captured, refunded)


async def test_card_settlement_after_capture_and_pending_after_settlement_change_nothing(
    hooks: Hooks, uid
) -> None:
    seller, order, txn = uid("s"), uid("o"), uid("t")
    await hooks.seller(seller)
    await hooks.place(seller, order, "10000.00")
    capture = midtrans_body("midtrans_card_capture_accept", order, txn)
    settlement = midtrans_body("midtrans_card_settlement", order, txn)
    # out of order: the settlement first, then the capture, each three times
    await hooks.times(3, lambda: hooks.midtrans(settlement))
    answers = await hooks.times(3, lambda: hooks.midtrans(capture))
    assert {a[1]["results"][0]["status"] for a in answers} == {"duplicate"}
    qris_order, qris_txn = uid("q"), uid("qt")
    await hooks.place(seller, qris_order, "275000.00")
    settled = midtrans_body("midtrans_qris_settlement", qris_order, qris_txn)
    pending = midtrans_body("midtrans_qris_pending", qris_order, qris_txn)
    for _ in range(3):
        assert (await hooks.midtrans(settled))[0] == 200
    for _ in range(2):
        assert (await hooks.midtrans(pending))[0] == 200  # a late pending: noted once

    assert await hooks.history_types(order) == ["order.placed", "payment.captured"]
    assert await hooks.history_types(qris_order) == [
        "order.placed",
        "payment.captured",
        "order.status_noted",
    ]
    balance = await hooks.balance(seller)
    assert balance["captured_total"] == "285000.00"
    assert balance["available"] == "285000.00"
    assert balance["pending"] == "0.00"


async def test_partial_refunds_renotified_are_each_recorded_once(hooks: Hooks, uid) -> None:
    seller, order, txn = uid("s"), uid("o"), uid("t")
    await hooks.seller(seller)
    await hooks.place(seller, order, "30000.00")
    capture = _capture_of("midtrans_partial_refund_first", order, txn)
    assert (await hooks.midtrans(capture))[0] == 200
    first = midtrans_body("midtrans_partial_refund_first", order, txn)
    both = midtrans_body("midtrans_partial_refund_unconfirmed", order, txn)
    confirmed = midtrans_body("midtrans_partial_refund_confirmed", order, txn)

    # the first refund, its bank confirmation (inside the later list), the second
    # refund's notification carrying both, and every one of them again
    for body in (first, first, both, confirmed, both, confirmed):
        status, answer = await hooks.midtrans(body)
        assert status == 200, answer
    await hooks.times(3, lambda: hooks.midtrans(confirmed))

    history = (await hooks.order(order))["history"]
    refunds = [e["data"] for e in history if e["type"] == "refund.issued"]
    assert sorted((r["gateway_ref"], r["amount"]) for r in refunds) == [
        (f"{txn}:reference1", "5000.00"),
        (f"{txn}:reference2", "7000.00"),
    ]
    balance = await hooks.balance(seller)
    assert balance["refunded_total"] == "12000.00"
    assert balance["available"] == "18000.00"


async def test_tampered_amount_after_signing_is_401_and_records_nothing(hooks: Hooks, uid) -> None:
    seller, order, txn = uid("s"), uid("o"), uid("t")
    await hooks.seller(seller)
    await hooks.place(seller, order, "275000.00")
    body = midtrans_body("midtrans_qris_settlement", order, txn)
    body["gross_amount"] = "2750000.00"
    head = await hooks.head()

    status, answer = await hooks.midtrans(body)

    assert status == 401
    assert answer["error"]["code"] == "invalid_signature"
    assert await hooks.head() == head
    assert await hooks.suspense_for(f"midtrans:payment:{txn}") == []


@pytest.mark.parametrize(
    "change",
    [
        {"signature_key": None},
        {"signature_key": ""},
        {"signature_key": "0" * 128},
        {"order_id": None},
        {"gross_amount": 275000},
    ],
    ids=["null", "empty", "wrong", "no_order_id", "numeric_amount"],
)
async def test_missing_or_wrong_signature_is_401(hooks: Hooks, uid, change) -> None:
    body = midtrans_body("midtrans_qris_settlement", uid("o"), uid("t"))
    for name, value in change.items():
        if value is None:
            body.pop(name)
        else:
            body[name] = value
    head = await hooks.head()
    status, answer = await hooks.midtrans(body)
    assert status == 401, answer
    assert answer["error"]["code"] == "invalid_signature"
    assert await hooks.head() == head


async def test_signed_with_another_key_is_401(hooks: Hooks, uid) -> None:
    body = midtrans_body("midtrans_qris_settlement", uid("o"), uid("t"))
    body = midtrans_sign(body, server_key="SB-Mid-server-someone-else")
    status, answer = await hooks.midtrans(body)
    assert status == 401, answer


async def test_payment_for_an_unknown_order_goes_to_suspense(hooks: Hooks, uid) -> None:
    order, txn = uid("ghost"), uid("t")
    body = midtrans_body("midtrans_qris_settlement", order, txn)

    answers = [await hooks.midtrans(body) for _ in range(3)]
    answers += await hooks.times(3, lambda: hooks.midtrans(body))

    for status, answer in answers:
        assert status == 200, answer
        (result,) = answer["results"]
        assert result["status"] == "suspense"
        assert result["reason"] == "unknown_order"
    entries = await hooks.suspense_for(f"midtrans:payment:{txn}")
    assert len(entries) == 1
    (entry,) = entries
    assert entry["gateway"] == "midtrans"
    assert entry["reason"] == "unknown_order"
    assert entry["amount"] == "275000.00"
    assert entry["currency"] == "IDR"
    assert entry["event"]["order_id"] == order
    assert entry["event"]["type"] == "payment.captured"
    assert isinstance(entry["position"], int)
    assert entry["recorded_at"].endswith("Z")
    assert {a[1]["results"][0]["suspense_id"] for a in answers} == {entry["id"]}
    status, _ = await hooks.get(f"/v1/orders/qris/{order}")
    assert status == 404  # never credited to anyone


async def test_overpayment_goes_to_suspense_and_credits_nothing(hooks: Hooks, uid) -> None:
    seller, order, txn = uid("s"), uid("o"), uid("t")
    await hooks.seller(seller)
    await hooks.place(seller, order, "100000.00")  # the QRIS sample pays 275000.00

    status, answer = await hooks.midtrans(midtrans_body("midtrans_qris_settlement", order, txn))

    assert status == 200, answer
    assert answer["results"][0]["status"] == "suspense"
    assert answer["results"][0]["reason"] == "overpayment"
    (entry,) = await hooks.suspense_for(f"midtrans:payment:{txn}")
    assert entry["reason"] == "overpayment"
    balance = await hooks.balance(seller)
    assert balance["captured_total"] == "0.00"
    assert balance["pending"] == "100000.00"


async def test_a_payment_in_any_iso_currency_the_order_is_not_in_goes_to_suspense(
    hooks: Hooks, uid
) -> None:
    """An authenticated payment in EUR for an IDR order is kept with a 2xx,
    not refused as unreadable (which the gateway would retry for days)."""
    seller, order, txn = uid("s"), uid("o"), uid("t")
    await hooks.seller(seller)
    await hooks.place(seller, order, "275000.00")
    body = midtrans_body("midtrans_qris_settlement", order, txn, currency="EUR")
    status, answer = await hooks.midtrans(body)
    assert status == 200, answer
    assert answer["results"][0]["status"] == "suspense", answer
    assert answer["results"][0]["reason"] == "currency_mismatch"
    assert (await hooks.balance(seller))["captured_total"] == "0.00"


async def test_currency_mismatch_goes_to_suspense(hooks: Hooks, uid) -> None:
    seller, order, txn = uid("s"), uid("o"), uid("t")
    await hooks.seller(seller)
    await hooks.place(seller, order, "275000.00", currency="USD")
    status, answer = await hooks.midtrans(midtrans_body("midtrans_qris_settlement", order, txn))
    assert status == 200, answer
    assert answer["results"][0]["reason"] == "currency_mismatch"
    assert (await hooks.balance(seller, "USD"))["captured_total"] == "0.00"


async def test_refund_of_an_uncaptured_transaction_goes_to_suspense(hooks: Hooks, uid) -> None:
    seller, order, txn = uid("s"), uid("o"), uid("t")
    await hooks.seller(seller)
    await hooks.place(seller, order, "30000.00")
    # no capture first: 5000.00 refunded of a transaction the ledger never credited
    status, answer = await hooks.midtrans(
        midtrans_body("midtrans_partial_refund_first", order, txn)
    )
    assert status == 200, answer
    assert answer["results"][0]["status"] == "suspense"
    assert answer["results"][0]["reason"] == "unknown_order"
    assert (await hooks.balance(seller))["refunded_total"] == "0.00"


async def test_a_refund_is_matched_through_its_payment_not_the_order_id(hooks: Hooks, uid) -> None:
    """The order was paid through Xendit; a Midtrans payment for it went to
    suspense (overpayment), so Midtrans' refund of that payment must not take
    the seller's Xendit money: it goes to suspense too."""
    seller, order, txn = uid("s"), uid("o"), uid("t")
    await hooks.seller(seller)
    await hooks.place(seller, order, "30000.00")
    status, body = await hooks.post(
        "/v1/events",
        {"idempotency_key": uid("k"), "type": "payment.captured", "channel": "qris",
         "occurred_at": "2026-11-30T10:00:00+08:00", "order_id": order, "amount": "30000.00",
         "gateway": "xendit", "gateway_ref": uid("x")},
    )  # fmt: skip
    assert status == 201, body
    capture = _capture_of("midtrans_partial_refund_first", order, txn)
    status, answer = await hooks.midtrans(capture)
    assert (status, answer["results"][0]["reason"]) == (200, "overpayment"), answer
    for name in ("midtrans_partial_refund_first", "midtrans_partial_refund_confirmed"):
        status, answer = await hooks.midtrans(midtrans_body(name, order, txn))
        assert status == 200, answer
        assert {r["status"] for r in answer["results"]} == {"suspense"}, answer
        assert {r["reason"] for r in answer["results"]} == {"unknown_order"}, answer
    balance = await hooks.balance(seller)
    assert (balance["available"], balance["refunded_total"]) == ("30000.00", "0.00"), balance


async def test_payment_on_a_cancelled_order_goes_to_suspense(hooks: Hooks, uid) -> None:
    seller, order, txn = uid("s"), uid("o"), uid("t")
    await hooks.seller(seller)
    await hooks.place(seller, order, "275000.00")
    status, body = await hooks.post(
        "/v1/events",
        {
            "idempotency_key": uid("cancel"),
            "type": "order.cancelled",
            "occurred_at": "2026-11-30T11:00:00+08:00",
            "order_id": order,
            "channel": "qris",
        },
    )
    assert status == 201, body
    status, answer = await hooks.midtrans(midtrans_body("midtrans_qris_settlement", order, txn))
    assert status == 200, answer
    assert answer["results"][0]["reason"] == "order_closed"
    assert (await hooks.balance(seller))["captured_total"] == "0.00"


async def test_an_order_id_the_ledger_cannot_hold_is_kept_in_suspense(hooks: Hooks, uid) -> None:
    order = "INV/2026/" + uid("o")  # "/" is not in the ledger's order id alphabet
    txn = uid("t")
    status, answer = await hooks.midtrans(midtrans_body("midtrans_qris_settlement", order, txn))
    assert status == 200, answer
    assert answer["results"][0]["status"] == "suspense"
    assert answer["results"][0]["reason"] == "validation_error"
    (entry,) = await hooks.suspense_for(f"midtrans:payment:{txn}")
    assert entry["event"]["order_id"] == order
    assert entry["amount"] == "275000.00"
    # an operator finds the sale under a valid id and places the money there
    seller, placed = uid("s"), uid("inv")
    await hooks.seller(seller)
    await hooks.place(seller, placed, "275000.00")
    status, resolved = await hooks.resolve(entry["id"], "qris", placed)
    assert status == 201, resolved
    assert (await hooks.balance(seller))["captured_total"] == "275000.00"
    status, again = await hooks.midtrans(midtrans_body("midtrans_qris_settlement", order, txn))
    assert (status, again["results"][0]["status"]) == (200, "duplicate")
    assert (await hooks.balance(seller))["captured_total"] == "275000.00"


async def test_status_noted_for_an_unknown_order_is_kept_not_dropped(hooks: Hooks, uid) -> None:
    txn = uid("t")
    status, answer = await hooks.midtrans(midtrans_body("midtrans_qris_pending", uid("ghost"), txn))
    assert status == 200, answer
    assert answer["results"][0]["status"] == "suspense"
    (entry,) = await hooks.suspense_for(f"midtrans:status:{txn}:pending:accept")
    assert entry["amount"] == "0.00"


async def test_concurrent_deliveries_of_one_settlement_record_once(hooks: Hooks, uid) -> None:
    seller, order, txn = uid("s"), uid("o"), uid("t")
    await hooks.seller(seller)
    await hooks.place(seller, order, "275000.00")
    body = json.dumps(midtrans_body("midtrans_qris_settlement", order, txn)).encode()

    answers = await asyncio.gather(*(hooks.midtrans(body) for _ in range(10)))

    statuses = sorted(a[1]["results"][0]["status"] for a in answers)
    assert statuses == ["duplicate"] * 9 + ["recorded"]
    assert {a[1]["results"][0]["position"] for a in answers} == {
        answers[0][1]["results"][0]["position"]
    }
    assert (await hooks.balance(seller))["captured_total"] == "275000.00"
