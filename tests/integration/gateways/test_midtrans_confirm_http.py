"""Midtrans money moves only once its Get Status API confirms what the signature does not cover.

The signature covers ``order_id``, ``status_code`` and ``gross_amount``; a
replayed signed body can carry any ``transaction_status``, ``transaction_id``
or ``refunds``. Midtrans' answer (a local stand-in here) decides; balances
are read over HTTP.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.gateways.conftest import Hooks, midtrans_body
from tests.integration.gateways.midtrans_standin import MidtransStandIn


async def _paid_order(hooks: Hooks, uid, amount: str) -> tuple[str, str, str]:
    seller, order, txn = uid("s"), uid("o"), uid("t")
    await hooks.seller(seller)
    await hooks.place(seller, order, amount)
    return seller, order, txn


def _only(answer: dict[str, Any]) -> dict[str, Any]:
    (result,) = answer["results"]
    return dict(result)


async def test_a_signed_cancel_relabelled_settlement_is_not_credited(hooks: Hooks, uid) -> None:
    seller, order, txn = await _paid_order(hooks, uid, "10000.00")
    cancel = midtrans_body("midtrans_card_cancel", order, txn)
    status, answer = await hooks.midtrans(cancel)  # genuine: Midtrans knows it is cancelled
    assert (status, _only(answer)["type"]) == (200, "order.status_noted"), answer
    # the same signature still verifies: transaction_status is not signed
    forged = dict(cancel, transaction_status="settlement")

    for _ in range(3):
        status, answer = await hooks.midtrans(forged, knows=False)
        assert status == 200, answer
        result = _only(answer)
        assert (result["type"], result["status"]) == ("payment.captured", "suspense"), answer
        assert result["reason"] == "unconfirmed"

    balance = await hooks.balance(seller)
    assert (balance["captured_total"], balance["available"]) == ("0.00", "0.00")
    (entry,) = await hooks.suspense_for(f"midtrans:payment:{txn}")
    assert entry["reason"] == "unconfirmed"
    assert await hooks.history_types(order) == ["order.placed", "order.status_noted"]


async def test_one_signed_settlement_under_three_transaction_ids_credits_once(
    hooks: Hooks, uid
) -> None:
    seller, order, txn = await _paid_order(hooks, uid, "275000.00")
    genuine = midtrans_body("midtrans_qris_settlement", order, txn)
    before, after = uid("fake1"), uid("fake2")

    # one replay before Midtrans' own notification arrives, one after
    status, answer = await hooks.midtrans(dict(genuine, transaction_id=before), knows=False)
    assert _only(answer)["reason"] == "unconfirmed", answer
    hooks.midtrans_api.knows(genuine)  # Midtrans' record, before its notification lands
    status, answer = await hooks.midtrans(dict(genuine, transaction_id=before), knows=False)
    assert _only(answer)["reason"] == "unconfirmed", answer
    status, answer = await hooks.midtrans(genuine)
    assert _only(answer)["status"] == "recorded", answer
    status, answer = await hooks.midtrans(dict(genuine, transaction_id=after), knows=False)
    assert (status, _only(answer)["reason"]) == (200, "unconfirmed"), answer

    balance = await hooks.balance(seller)
    assert balance["captured_total"] == "275000.00"
    assert await hooks.history_types(order) == ["order.placed", "payment.captured"]
    for fake in (before, after):
        (entry,) = await hooks.suspense_for(f"midtrans:payment:{fake}")
        assert entry["reason"] == "unconfirmed"


async def test_a_forged_refund_list_is_not_credited(hooks: Hooks, uid) -> None:
    seller, order, txn = await _paid_order(hooks, uid, "30000.00")
    settlement = midtrans_body(
        "midtrans_qris_settlement", order, txn, gross_amount="30000.00", currency="IDR"
    )
    status, answer = await hooks.midtrans(settlement)
    assert _only(answer)["status"] == "recorded", answer
    first = midtrans_body("midtrans_partial_refund_first", order, txn)  # reference1: 5000.00
    entry = first["refunds"][0]

    # before any refund: the signed settlement body given a refund status and a
    # list, and reference1 claimed at 25000.00 (Midtrans lists no refund yet)
    forged = dict(
        settlement,
        transaction_status="partial_refund",
        refunds=[dict(entry, refund_amount="25000.00")],
    )
    status, answer = await hooks.midtrans(forged, knows=False)
    assert [(r["status"], r["reason"]) for r in answer["results"]] == [("suspense", "unconfirmed")]
    assert (await hooks.balance(seller))["refunded_total"] == "0.00"

    # Midtrans' real refund of 5000.00, and with it a list padded with a refund it never made
    hooks.midtrans_api.knows(first)
    padded = dict(
        first,
        refunds=[entry, dict(entry, refund_key="forged-9", refund_chargeback_id=9,
                             refund_amount="20000.00")],
    )  # fmt: skip
    status, answer = await hooks.midtrans(padded, knows=False)
    assert status == 200, answer
    by_ref = {r["idempotency_key"].rsplit(":", 1)[1]: r for r in answer["results"]}
    assert by_ref["reference1"]["status"] == "recorded", answer
    assert (by_ref["forged-9"]["status"], by_ref["forged-9"]["reason"]) == (
        "suspense",
        "unconfirmed",
    )
    # the genuine notification: a duplicate of what the answer confirmed
    _, answer = await hooks.midtrans(first)
    assert _only(answer)["status"] == "duplicate", answer

    balance = await hooks.balance(seller)
    assert (balance["refunded_total"], balance["available"]) == ("5000.00", "25000.00")
    refunds = [
        e["data"] for e in (await hooks.order(order))["history"] if e["type"] == "refund.issued"
    ]
    assert [(r["gateway_ref"], r["amount"]) for r in refunds] == [
        (f"{first['transaction_id']}:reference1", "5000.00")
    ]


async def test_genuine_settlement_and_refunds_are_credited_from_midtrans_answer(
    hooks: Hooks, uid
) -> None:
    seller, order, txn = await _paid_order(hooks, uid, "30000.00")
    settlement = midtrans_body(
        "midtrans_qris_settlement", order, txn, gross_amount="30000.00", currency="IDR"
    )
    hooks.midtrans_api.knows(settlement)
    # settlement_time is not signed: the recorded time is Midtrans' answer's
    retimed = dict(settlement, settlement_time="2020-12-31 23:59:59")
    status, answer = await hooks.midtrans(retimed, knows=False)
    assert _only(answer)["status"] == "recorded", answer
    for name in ("midtrans_partial_refund_first", "midtrans_partial_refund_confirmed"):
        status, answer = await hooks.midtrans(midtrans_body(name, order, txn))
        assert status == 200, answer

    balance = await hooks.balance(seller)
    assert balance["captured_total"] == "30000.00"
    assert balance["refunded_total"] == "12000.00"
    assert balance["available"] == "18000.00"
    history = (await hooks.order(order))["history"]
    (captured,) = [e for e in history if e["type"] == "payment.captured"]
    assert captured["occurred_at"] == "2020-09-29T11:30:44+07:00"  # the answer's
    assert await hooks.suspense_for(f"midtrans:payment:{txn}") == []


@pytest.mark.parametrize("mode", ["down", "slow", "garbage"])
async def test_api_unusable_sends_money_to_suspense_then_a_redelivery_applies_it_once(
    hooks: Hooks, midtrans_api: MidtransStandIn, uid, mode
) -> None:
    seller, order, txn = await _paid_order(hooks, uid, "275000.00")
    body = midtrans_body("midtrans_qris_settlement", order, txn)
    midtrans_api.mode = mode
    status, answer = await hooks.midtrans(body)
    assert status == 200, answer
    held = _only(answer)
    assert (held["status"], held["reason"]) == ("suspense", "unconfirmed"), answer
    if mode == "down":
        # redelivered while Midtrans is still away: the stored fact is not applied
        status, answer = await hooks.midtrans(body)
        assert (_only(answer)["status"], _only(answer)["suspense_id"]) == (
            "suspense",
            held["suspense_id"],
        )
    assert (await hooks.balance(seller))["captured_total"] == "0.00"

    midtrans_api.mode = "up"
    status, answer = await hooks.midtrans(body)
    applied = _only(answer)
    assert (applied["status"], applied["suspense_id"]) == ("recorded", held["suspense_id"])
    for _ in range(2):
        status, answer = await hooks.midtrans(body)
        assert _only(answer)["status"] == "duplicate", answer

    assert (await hooks.balance(seller))["captured_total"] == "275000.00"
    assert await hooks.history_types(order) == ["order.placed", "payment.captured"]
    assert await hooks.suspense_for(f"midtrans:payment:{txn}") == []  # closed


async def test_a_suspended_unconfirmed_fact_waits_for_midtrans_to_agree(
    hooks: Hooks, midtrans_api: MidtransStandIn, uid
) -> None:
    """Redelivered while Midtrans answers, but says it was cancelled: still held."""
    seller, order, txn = await _paid_order(hooks, uid, "10000.00")
    settlement = midtrans_body("midtrans_card_settlement", order, txn)
    midtrans_api.mode = "down"
    assert _only((await hooks.midtrans(settlement))[1])["reason"] == "unconfirmed"
    midtrans_api.mode = "up"
    midtrans_api.knows(dict(settlement, transaction_status="cancel"))
    status, answer = await hooks.midtrans(settlement, knows=False)
    assert (status, _only(answer)["status"]) == (200, "suspense"), answer
    assert (await hooks.balance(seller))["captured_total"] == "0.00"


async def test_an_order_midtrans_does_not_know_is_not_credited(hooks: Hooks, uid) -> None:
    seller, order, txn = await _paid_order(hooks, uid, "275000.00")
    body = midtrans_body("midtrans_qris_settlement", order, txn)
    status, answer = await hooks.midtrans(body, knows=False)  # the stand-in answers "404"
    assert (status, _only(answer)["reason"]) == (200, "unconfirmed"), answer
    assert (await hooks.balance(seller))["captured_total"] == "0.00"


async def test_no_money_no_call_and_a_recorded_fact_needs_no_call(
    hooks: Hooks, midtrans_api: MidtransStandIn, uid
) -> None:
    seller, order, txn = await _paid_order(hooks, uid, "275000.00")
    for name in ("midtrans_qris_pending", "midtrans_qris_expire"):
        status, answer = await hooks.midtrans(midtrans_body(name, order, txn))
        assert _only(answer)["status"] == "recorded", answer
    assert order not in midtrans_api.asked

    other = uid("o2")
    await hooks.place(seller, other, "275000.00")
    settlement = midtrans_body("midtrans_qris_settlement", other, uid("t"))
    assert _only((await hooks.midtrans(settlement))[1])["status"] == "recorded"
    assert midtrans_api.asked.count(other) == 1
    # redelivered while Midtrans is down: the ledger holds it, so nothing is held
    midtrans_api.mode = "down"
    for _ in range(2):
        status, answer = await hooks.midtrans(settlement)
        assert (status, _only(answer)["status"]) == (200, "duplicate"), answer
    assert midtrans_api.asked.count(other) == 1
    assert (await hooks.balance(seller))["captured_total"] == "275000.00"


async def test_the_status_call_carries_the_server_key_and_asks_for_json(
    hooks: Hooks, midtrans_api: MidtransStandIn, uid
) -> None:
    """The stand-in answers 401 to any other key, so every credit above proves the key."""
    _, order, txn = await _paid_order(hooks, uid, "275000.00")
    _, answer = await hooks.midtrans(midtrans_body("midtrans_qris_settlement", order, txn))
    assert _only(answer)["status"] == "recorded", answer
    assert midtrans_api.asked[-1] == order
    assert midtrans_api.accept == "application/json"
