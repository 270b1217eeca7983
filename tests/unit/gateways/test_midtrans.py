"""Midtrans notifications: signature, mapping of every status, exact duplicates."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from gateways import midtrans
from gateways.errors import SignatureInvalid
from ledger.domain.errors import BadRequest, Unauthorized, ValidationError
from tests.unit.gateways.samples import (
    MIDTRANS_SERVER_KEY,
    load,
    midtrans_signed,
    names,
    raw,
)

# gateways.md 1.7: inputs printed by docs.midtrans.com/reference/handle-notifications
DOC_SERVER_KEY = "askvnoibnosifnboseofinbofinfgbiufglnbfg"
DOC_SIGNATURE = (
    "edc076b21793ebe3e17926350f5b8ae67d902fe657b3d0aa31b932d5c127e237"
    "5d308a2bc94f3265ac2d80a1f181a79b997ac178a236fcff35af263fc4d4c231"
)


def events_of(name: str) -> list[dict[str, Any]]:
    body = raw(name)
    midtrans.verify(body, server_key=MIDTRANS_SERVER_KEY)
    return midtrans.to_events(midtrans.parse(body))


def one_event(name: str) -> dict[str, Any]:
    events = events_of(name)
    assert len(events) == 1
    return events[0]


# --- signature ----------------------------------------------------------------------------


def test_signature_known_answer_from_the_docs() -> None:
    body = {
        "order_id": "1111",
        "status_code": "200",
        "gross_amount": "100000.00",
        "signature_key": DOC_SIGNATURE,
    }
    midtrans.verify(json.dumps(body).encode(), server_key=DOC_SERVER_KEY)


def test_signature_covers_gross_amount_exactly_as_sent() -> None:
    body = {
        "order_id": "1111",
        "status_code": "200",
        "gross_amount": "100000",  # the same money, another string: another hash
        "signature_key": DOC_SIGNATURE,
    }
    with pytest.raises(SignatureInvalid):
        midtrans.verify(json.dumps(body).encode(), server_key=DOC_SERVER_KEY)


def test_signature_is_sha512_of_the_concatenation() -> None:
    digest = hashlib.sha512(f"1111200100000.00{DOC_SERVER_KEY}".encode()).hexdigest()
    assert digest == DOC_SIGNATURE


@pytest.mark.parametrize("name", names("midtrans"))
def test_every_fixture_verifies_with_the_test_key(name: str) -> None:
    midtrans.verify(raw(name), server_key=MIDTRANS_SERVER_KEY)
    with pytest.raises(SignatureInvalid):
        midtrans.verify(raw(name), server_key="SB-Mid-server-someone-else")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("gross_amount", "1000000.00"),
        ("gross_amount", "275000.0"),
        ("order_id", "order04"),
        ("status_code", "200"),
    ],
)
def test_a_field_tampered_after_signing_is_rejected(field: str, value: str) -> None:
    body = load("midtrans_qris_pending")  # signed with status_code 201
    body[field] = value
    with pytest.raises(SignatureInvalid) as caught:
        midtrans.verify(json.dumps(body).encode(), server_key=MIDTRANS_SERVER_KEY)
    assert isinstance(caught.value, Unauthorized)
    assert caught.value.code == "invalid_signature"


@pytest.mark.parametrize(
    "change",
    [
        lambda body: body.pop("signature_key"),
        lambda body: body.update(signature_key=""),
        lambda body: body.update(signature_key=None),
        lambda body: body.update(signature_key=12345),
        lambda body: body.update(signature_key="ü" * 128),
        lambda body: body.pop("order_id"),
        lambda body: body.update(gross_amount=275000),  # a number cannot be re-concatenated
        lambda body: body.update(status_code=201),
    ],
)
def test_missing_or_unusable_signature_is_rejected(change: Any) -> None:
    body = load("midtrans_qris_pending")
    change(body)
    with pytest.raises(SignatureInvalid):
        midtrans.verify(json.dumps(body).encode(), server_key=MIDTRANS_SERVER_KEY)


def test_an_empty_server_key_verifies_nothing() -> None:
    body = load("midtrans_qris_pending")
    unsigned = dict(body, signature_key=hashlib.sha512(b"order03201275000.00").hexdigest())
    with pytest.raises(SignatureInvalid):
        midtrans.verify(json.dumps(unsigned).encode(), server_key="")


def test_upper_case_hex_signature_is_the_same_signature() -> None:
    body = load("midtrans_qris_pending")
    body["signature_key"] = body["signature_key"].upper()
    midtrans.verify(json.dumps(body).encode(), server_key=MIDTRANS_SERVER_KEY)


def test_an_unreadable_body_is_a_bad_request_before_any_signature() -> None:
    with pytest.raises(BadRequest):
        midtrans.verify(b"order_id=1111", server_key=MIDTRANS_SERVER_KEY)


# --- mapping ------------------------------------------------------------------------------

CAPTURES = [
    ("midtrans_qris_settlement", "275000.00", "2020-09-29T11:30:44+07:00"),
    ("midtrans_gopay_settlement", "154600.00", "2021-06-15T18:45:28+07:00"),
    ("midtrans_shopeepay_settlement", "16700.00", "2021-06-23T13:28:21+07:00"),
    ("midtrans_bca_va_settlement", "100000.00", "2021-06-23T11:27:50+07:00"),
    ("midtrans_permata_va_settlement", "185000.00", "2021-06-23T11:20:06+07:00"),
    ("midtrans_card_capture_accept", "10000.00", "2020-01-09T18:27:19+07:00"),
    ("midtrans_card_settlement", "10000.00", "2020-01-09T18:27:19+07:00"),
]


@pytest.mark.parametrize(("name", "amount", "occurred_at"), CAPTURES)
def test_successful_payments_are_captures(name: str, amount: str, occurred_at: str) -> None:
    body = load(name)
    event = one_event(name)
    assert event == {
        "idempotency_key": f"midtrans:payment:{body['transaction_id']}",
        "type": "payment.captured",
        "occurred_at": occurred_at,
        "order_id": body["order_id"],
        "amount": amount,
        "currency": "IDR",
        "gateway": "midtrans",
        "gateway_ref": body["transaction_id"],
        "metadata": event["metadata"],
    }
    assert event["metadata"]["payment_type"] == body["payment_type"]
    assert "channel" not in event  # Midtrans does not say; the ledger matches by order_id
    assert "fee" not in event  # Midtrans sends no fee


def test_capture_metadata_names_issuer_and_bank() -> None:
    assert one_event("midtrans_qris_settlement")["metadata"] == {
        "payment_type": "qris",
        "issuer": "gopay",
        "acquirer": "gopay",
        "transaction_type": "on-us",
    }
    assert one_event("midtrans_bca_va_settlement")["metadata"]["va_bank"] == "bca"
    assert one_event("midtrans_permata_va_settlement")["metadata"]["va_bank"] == "permata"


def test_settlement_after_capture_is_the_same_event() -> None:
    captured = one_event("midtrans_card_capture_accept")
    settled = one_event("midtrans_card_settlement")
    assert captured["idempotency_key"] == settled["idempotency_key"]
    assert captured == settled  # same key AND same body: a duplicate, not a conflict


NOTED = [
    ("midtrans_qris_pending", "pending", "accept"),
    ("midtrans_qris_expire", "expire", "accept"),
    ("midtrans_card_capture_challenge", "capture", "challenge"),
    ("midtrans_card_deny", "deny", "deny"),
    ("midtrans_card_cancel", "cancel", "accept"),
    ("midtrans_card_failure", "failure", "accept"),
]


@pytest.mark.parametrize(("name", "status", "fraud"), NOTED)
def test_statuses_without_balance_effect_are_noted(name: str, status: str, fraud: str) -> None:
    body = load(name)
    event = one_event(name)
    assert event["type"] == "order.status_noted"
    assert event["idempotency_key"] == f"midtrans:status:{body['transaction_id']}:{status}:{fraud}"
    assert event["order_id"] == body["order_id"]
    assert event["source"] == "midtrans"
    assert event["status"] == status
    assert event["gateway_ref"] == body["transaction_id"]
    assert event["metadata"]["fraud_status"] == fraud
    assert event["metadata"]["gross_amount"] == body["gross_amount"]
    assert event["occurred_at"].endswith("+07:00")
    assert "amount" not in event


@pytest.mark.parametrize(
    "change",
    [
        {"transaction_status": "authorize"},
        {"transaction_status": "chargeback"},
        {"transaction_status": "partial_chargeback"},
        {"transaction_status": "some_future_status"},
        {"transaction_status": "settlement", "fraud_status": "challenge"},
        {"transaction_status": "settlement", "status_code": "201"},  # not Midtrans' success rule
    ],
)
def test_other_statuses_are_noted_not_money(change: dict[str, str]) -> None:
    body = midtrans_signed({**load("midtrans_gopay_settlement"), **change})
    midtrans.verify(body, server_key=MIDTRANS_SERVER_KEY)
    [event] = midtrans.to_events(midtrans.parse(body))
    assert event["type"] == "order.status_noted"
    assert event["status"] == change["transaction_status"]


def test_capture_without_fraud_status_is_a_capture() -> None:
    body = {k: v for k, v in load("midtrans_gopay_settlement").items() if k != "fraud_status"}
    [event] = midtrans.to_events(midtrans.parse(midtrans_signed(body)))
    assert event["type"] == "payment.captured"


def test_pending_then_settlement_are_different_facts() -> None:
    pending = load("midtrans_qris_settlement") | {
        "transaction_status": "pending",
        "status_code": "201",
    }
    pending.pop("settlement_time")
    [noted] = midtrans.to_events(midtrans.parse(midtrans_signed(pending)))
    captured = one_event("midtrans_qris_settlement")
    assert noted["idempotency_key"] != captured["idempotency_key"]


# --- refunds ------------------------------------------------------------------------------

TRANSACTION = "249fc620-6017-4540-af7c-5a1c25788f46"
REFUND_1 = {
    "idempotency_key": f"midtrans:refund:{TRANSACTION}:reference1",
    "type": "refund.issued",
    "occurred_at": "2015-02-27T00:14:20+07:00",
    "payment_ref": TRANSACTION,
    "amount": "5000.00",
    "currency": "IDR",
    "gateway": "midtrans",
    "gateway_ref": f"{TRANSACTION}:reference1",
    "metadata": {"payment_type": "credit_card", "refund_method": "online", "reason": "some reason"},
}


def test_each_refund_in_the_list_is_one_event() -> None:
    events = events_of("midtrans_partial_refund_unconfirmed")
    assert [event["gateway_ref"] for event in events] == [
        f"{TRANSACTION}:reference1",
        f"{TRANSACTION}:reference2",
    ]
    assert events[0] == REFUND_1
    assert events[1]["amount"] == "7000.00"
    assert events[1]["occurred_at"] == "2015-02-28T01:23:15+07:00"


def test_the_re_sent_refunds_list_gives_identical_events() -> None:
    first = events_of("midtrans_partial_refund_first")
    unconfirmed = events_of("midtrans_partial_refund_unconfirmed")
    confirmed = events_of("midtrans_partial_refund_confirmed")
    assert first == [REFUND_1]
    assert unconfirmed[0] == REFUND_1
    assert confirmed == unconfirmed  # bank_confirmed_at changes nothing in any event


def test_a_refund_turning_the_status_to_refund_changes_no_earlier_event() -> None:
    body = load("midtrans_partial_refund_confirmed") | {
        "transaction_status": "refund",
        "refund_amount": "30000.00",
    }
    body["refunds"] = [
        *body["refunds"],
        {
            "refund_chargeback_id": 3,
            "refund_amount": "18000.00",
            "created_at": "2015-03-01 10:00:00",
            "reason": "",
            "refund_key": "reference3",
            "refund_method": "online",
        },
    ]
    events = midtrans.to_events(midtrans.parse(midtrans_signed(body)))
    assert events[:2] == events_of("midtrans_partial_refund_unconfirmed")
    assert events[2]["idempotency_key"] == f"midtrans:refund:{TRANSACTION}:reference3"


def test_full_refund_of_the_direct_refund_sample() -> None:
    events = events_of("midtrans_refund_direct")
    assert [event["type"] for event in events] == ["refund.issued", "refund.issued"]
    assert {event["payment_ref"] for event in events} == {"841c7da8-530b-435a-9f67-c9d632d15537"}
    assert all("order_id" not in event for event in events)  # matched through the payment


def test_a_refund_without_its_list_is_noted_not_guessed() -> None:
    event = one_event("midtrans_partial_refund_no_list")
    assert event["type"] == "order.status_noted"
    assert event["status"] == "partial_refund"


def test_a_refund_without_refund_key_is_known_by_its_chargeback_id() -> None:
    body = load("midtrans_partial_refund_unconfirmed")
    body["refunds"] = [{k: v for k, v in body["refunds"][0].items() if k != "refund_key"}]
    [event] = midtrans.to_events(midtrans.parse(midtrans_signed(body)))
    assert event["gateway_ref"] == f"{TRANSACTION}:1"
    assert event["idempotency_key"] == f"midtrans:refund:{TRANSACTION}:1"


def test_the_same_refund_twice_in_one_list_is_one_event() -> None:
    body = load("midtrans_partial_refund_first")
    body["refunds"] = body["refunds"] * 2
    assert midtrans.to_events(midtrans.parse(midtrans_signed(body))) == [REFUND_1]


def test_a_signed_pending_body_cannot_carry_refunds() -> None:
    body = load("midtrans_partial_refund_first") | {"status_code": "201"}
    [event] = midtrans.to_events(midtrans.parse(midtrans_signed(body)))
    assert event["type"] == "order.status_noted"


@pytest.mark.parametrize(
    ("entry_change", "field"),
    [
        ({"refund_amount": "5000.001"}, "refunds[0].refund_amount"),
        ({"refund_amount": 5000.5}, "refunds[0].refund_amount"),
        ({"refund_amount": None}, "refunds[0].refund_amount"),
        ({"refund_amount": "-5000.00"}, "refunds[0].refund_amount"),
        ({"created_at": "2015-02-27T00:14:20"}, "refunds[0].created_at"),
        ({"refund_key": None, "refund_chargeback_id": None}, "refunds[0].refund_chargeback_id"),
    ],
)
def test_a_bad_refund_entry_is_a_validation_error(entry_change: dict[str, Any], field: str) -> None:
    body = load("midtrans_partial_refund_first")
    body["refunds"] = [{**body["refunds"][0], **entry_change}]
    with pytest.raises(ValidationError) as caught:
        midtrans.parse(midtrans_signed(body))
    assert caught.value.field == field


# --- fields -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"gross_amount": "10000.001"}, "gross_amount"),
        ({"gross_amount": "1e5"}, "gross_amount"),
        ({"gross_amount": "0.00"}, "gross_amount"),
        ({"gross_amount": "99999999999999999999.00"}, "gross_amount"),
        ({"transaction_time": "2020-09-29T11:27:33"}, "transaction_time"),
        ({"transaction_time": "2020-02-30 11:27:33"}, "transaction_time"),
        ({"settlement_time": 1601353844}, "settlement_time"),
        ({"transaction_id": None}, "transaction_id"),
        ({"transaction_id": "a\nb"}, "transaction_id"),
        ({"transaction_status": ""}, "transaction_status"),
        ({"currency": "XXX"}, "currency"),
        ({"order_id": "a\x00b"}, "order_id"),
    ],
)
def test_bad_fields_are_validation_errors(change: dict[str, Any], field: str) -> None:
    body = midtrans_signed({**load("midtrans_qris_settlement"), **change})
    with pytest.raises(ValidationError) as caught:
        midtrans.parse(body)
    assert caught.value.field == field
    with pytest.raises(ValidationError):
        midtrans.to_events(json.loads(body))


def test_currency_defaults_to_idr() -> None:
    body = {k: v for k, v in load("midtrans_gopay_settlement").items() if k != "currency"}
    [event] = midtrans.to_events(midtrans.parse(midtrans_signed(body)))
    assert event["currency"] == "IDR"


def test_unknown_fields_are_ignored() -> None:
    body = load("midtrans_gopay_settlement") | {"a_field_from_2030": {"nested": [1, 2.5]}}
    assert midtrans.to_events(midtrans.parse(midtrans_signed(body))) == events_of(
        "midtrans_gopay_settlement"
    )
