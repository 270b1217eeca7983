"""``midtrans.confirm``: a notification checked against Midtrans' Get Status answer (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateways import midtrans
from ledger.ops.settings import Settings, SettingsError
from tests.unit.gateways.samples import load

NOT_FOUND = {"status_code": "404", "status_message": "Transaction doesn't exist.", "id": "x"}


def notification(name: str, **changes: Any) -> dict[str, Any]:
    body = load(name)
    body.update(changes)
    return midtrans.parse(json.dumps(body).encode())


def answer_for(body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """Midtrans' status answer for the transaction a notification is about."""
    answer = {k: v for k, v in body.items() if k != "signature_key"}
    answer["status_message"] = "Success, transaction is found"
    answer.update(changes)
    return answer


def only(checked: list[midtrans.Checked]) -> midtrans.Checked:
    (one,) = checked
    return one


# --- captures -----------------------------------------------------------------------------


def test_a_settlement_midtrans_confirms_is_built_from_its_answer() -> None:
    body = notification("midtrans_qris_settlement")
    answer = answer_for(body)
    # settlement_time and the QRIS issuer are not signed: a replay may change them
    forged = dict(body, settlement_time="2020-12-31 23:59:59", issuer="evil")

    checked = only(midtrans.confirm(forged, answer))

    assert checked.unconfirmed is None
    assert checked.event == only(midtrans.confirm(body, answer)).event
    assert checked.event == midtrans.to_events(body)[0]
    assert checked.event["occurred_at"] == "2020-09-29T11:30:44+07:00"
    assert checked.event["metadata"]["issuer"] == "gopay"


def test_a_cancel_relabelled_settlement_is_not_confirmed() -> None:
    cancel = notification("midtrans_card_cancel")
    forged = dict(cancel, transaction_status="settlement")
    assert midtrans.to_events(forged)[0]["type"] == "payment.captured"  # what it would do

    checked = only(midtrans.confirm(forged, answer_for(cancel)))

    assert checked.unconfirmed is not None
    assert "cancel" in checked.unconfirmed
    assert checked.event == midtrans.to_events(forged)[0]  # the claim, kept as made


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"transaction_id": "another"}, "transaction"),
        ({"order_id": "another"}, "order"),
        ({"gross_amount": "275001.00"}, "gross_amount"),
        ({"currency": "USD"}, "USD"),
        ({"transaction_status": "pending", "status_code": "201"}, "pending"),
        ({"transaction_status": "expire", "status_code": "407"}, "expire"),
        ({"transaction_status": "deny"}, "deny"),
        ({"fraud_status": "challenge"}, "challenge"),
        ({"fraud_status": "deny"}, "deny"),
        ({"status_code": "202"}, "202"),
    ],
)
def test_a_capture_the_answer_disagrees_with_is_not_confirmed(
    change: dict[str, str], says: str
) -> None:
    body = notification("midtrans_qris_settlement")
    checked = only(midtrans.confirm(body, answer_for(body, **change)))
    assert checked.unconfirmed is not None
    assert says in checked.unconfirmed


@pytest.mark.parametrize(
    "answer",
    [NOT_FOUND, {}, [], "settlement", None, {"status_code": "200"}],
    ids=["not_found", "empty", "list", "string", "null", "no_transaction"],
)
def test_an_answer_that_is_not_a_transaction_confirms_nothing(answer: object) -> None:
    body = notification("midtrans_qris_settlement")
    checked = only(midtrans.confirm(body, answer))
    assert checked.unconfirmed is not None
    assert checked.unconfirmed.startswith("the status answer is unreadable")


def test_an_answer_without_currency_is_in_rupiah() -> None:
    """Several documented answers leave currency out; gross_amount is "in IDR"."""
    body = notification("midtrans_qris_settlement")
    answer = answer_for(body)
    del answer["currency"]
    assert only(midtrans.confirm(body, answer)).unconfirmed is None


@pytest.mark.parametrize("status", ["capture", "partial_refund", "refund", "chargeback"])
def test_a_capture_is_confirmed_by_any_status_only_a_paid_transaction_reaches(
    status: str,
) -> None:
    body = notification("midtrans_card_capture_accept")
    checked = only(midtrans.confirm(body, answer_for(body, transaction_status=status)))
    assert checked.unconfirmed is None
    assert checked.event == midtrans.to_events(body)[0]


def test_a_card_capture_and_its_settlement_confirm_to_the_same_event() -> None:
    capture = notification("midtrans_card_capture_accept")
    settlement = notification("midtrans_card_settlement", transaction_id=capture["transaction_id"])
    one = only(midtrans.confirm(capture, answer_for(capture))).event
    two = only(midtrans.confirm(settlement, answer_for(settlement))).event
    assert one == two


# --- refunds ------------------------------------------------------------------------------


def test_refunds_the_answer_lists_are_confirmed_from_its_entries() -> None:
    body = notification("midtrans_partial_refund_unconfirmed")
    checked = midtrans.confirm(body, answer_for(body))
    assert [c.unconfirmed for c in checked] == [None, None]
    assert [c.event for c in checked] == midtrans.to_events(body)


def test_a_refund_the_answer_does_not_list_is_not_confirmed() -> None:
    first = notification("midtrans_partial_refund_first")  # reference1 only
    both = notification("midtrans_partial_refund_unconfirmed")  # reference1 and reference2
    checked = midtrans.confirm(both, answer_for(first))
    assert [c.event["gateway_ref"] for c in checked] == [
        f"{both['transaction_id']}:reference1",
        f"{both['transaction_id']}:reference2",
    ]
    assert checked[0].unconfirmed is None
    assert checked[1].unconfirmed is not None
    assert "reference2" in checked[1].unconfirmed


def test_a_refund_with_another_amount_is_not_confirmed() -> None:
    first = notification("midtrans_partial_refund_first")
    forged = dict(first, refunds=[dict(first["refunds"][0], refund_amount="25000.00")])
    (checked,) = midtrans.confirm(forged, answer_for(first))
    assert checked.unconfirmed is not None
    assert "5000.00" in checked.unconfirmed
    assert checked.event["amount"] == "25000.00"  # the claim, for the suspense list


def test_a_settlement_answer_confirms_no_refund() -> None:
    settled = notification("midtrans_qris_settlement")
    forged = dict(
        settled,
        transaction_status="partial_refund",
        refunds=load("midtrans_partial_refund_first")["refunds"],
    )
    (checked,) = midtrans.confirm(forged, answer_for(settled))
    assert checked.event["type"] == "refund.issued"
    assert checked.unconfirmed is not None


def test_a_list_naming_one_refund_twice_gives_one_result_the_confirmed_one() -> None:
    first = notification("midtrans_partial_refund_first")
    entry = first["refunds"][0]
    forged = dict(first, refunds=[dict(entry, refund_amount="25000.00"), entry])
    (checked,) = midtrans.confirm(forged, answer_for(first))
    assert checked.unconfirmed is None
    assert checked.event["amount"] == "5000.00"


def test_a_refund_is_matched_by_refund_chargeback_id_without_a_key() -> None:
    first = notification("midtrans_partial_refund_first")
    entry = {k: v for k, v in first["refunds"][0].items() if k != "refund_key"}
    body = dict(first, refunds=[entry])
    (checked,) = midtrans.confirm(body, answer_for(body))
    assert (checked.unconfirmed, checked.event["gateway_ref"]) == (
        None,
        f"{body['transaction_id']}:1",
    )
    other = dict(body, refunds=[dict(entry, refund_chargeback_id=2)])
    (checked,) = midtrans.confirm(other, answer_for(body))
    assert checked.unconfirmed is not None


def test_a_refund_of_another_transaction_is_not_confirmed() -> None:
    first = notification("midtrans_partial_refund_first")
    (checked,) = midtrans.confirm(first, answer_for(first, transaction_id="another"))
    assert checked.unconfirmed is not None


# --- no money, no answer --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["midtrans_qris_pending", "midtrans_qris_expire", "midtrans_card_cancel"]
)
def test_a_status_note_needs_no_answer(name: str) -> None:
    body = notification(name)
    assert not midtrans.moves_money(midtrans.to_events(body))
    assert [c.unconfirmed for c in midtrans.confirm(body, NOT_FOUND)] == [None]
    assert [c.unconfirmed for c in midtrans.unconfirmed(body, "down")] == [None]


def test_without_an_answer_money_is_held_with_the_reason() -> None:
    body = notification("midtrans_partial_refund_unconfirmed")
    assert midtrans.moves_money(midtrans.to_events(body))
    checked = midtrans.unconfirmed(body, "the status API answered HTTP 503")
    assert [c.unconfirmed for c in checked] == ["the status API answered HTTP 503"] * 2
    assert [c.event for c in checked] == midtrans.to_events(body)


# --- settings -------------------------------------------------------------------------------


def test_the_status_api_defaults_to_production_and_takes_the_sandbox() -> None:
    assert Settings.from_env({}).midtrans_api_url == "https://api.midtrans.com"
    assert Settings.from_env({}).midtrans_api_timeout_ms == 5000
    sandbox = Settings.from_env(
        {
            "OMNILEDGER_MIDTRANS_API_URL": "https://api.sandbox.midtrans.com/",
            "OMNILEDGER_MIDTRANS_API_TIMEOUT_MS": "2500",
        }
    )
    assert sandbox.midtrans_api_url == "https://api.sandbox.midtrans.com"
    assert sandbox.midtrans_api_timeout_ms == 2500
    local = Settings.from_env({"OMNILEDGER_MIDTRANS_API_URL": "http://127.0.0.1:9000"})
    assert local.midtrans_api_url == "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OMNILEDGER_MIDTRANS_API_URL", "http://api.midtrans.com"),  # the key in clear text
        ("OMNILEDGER_MIDTRANS_API_URL", "ftp://api.midtrans.com"),
        ("OMNILEDGER_MIDTRANS_API_URL", "https://"),
        ("OMNILEDGER_MIDTRANS_API_URL", "https://api.midtrans.com/?x=1"),
        ("OMNILEDGER_MIDTRANS_API_URL", "https://api.midtrans.com:99999"),
        ("OMNILEDGER_MIDTRANS_API_TIMEOUT_MS", "50"),
        ("OMNILEDGER_MIDTRANS_API_TIMEOUT_MS", "60000"),
        ("OMNILEDGER_MIDTRANS_API_TIMEOUT_MS", "5s"),
    ],
)
def test_a_bad_status_api_setting_fails_fast_and_names_itself(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})
