"""Xendit callbacks: token, QR, v3 and e-wallet payments, invoices, refunds, amounts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateways import xendit
from gateways.errors import SignatureInvalid
from ledger.domain.errors import ValidationError
from tests.unit.gateways.samples import XENDIT_TOKEN, load, raw


def events_of(name: str) -> list[dict[str, Any]]:
    xendit.verify(XENDIT_TOKEN, expected_token=XENDIT_TOKEN)
    return xendit.to_events(xendit.parse(raw(name)))


def events_for(body: dict[str, Any]) -> list[dict[str, Any]]:
    return xendit.to_events(xendit.parse(json.dumps(body).encode()))


# --- token --------------------------------------------------------------------------------


def test_the_configured_token_passes() -> None:
    xendit.verify(XENDIT_TOKEN, expected_token=XENDIT_TOKEN)
    assert xendit.TOKEN_HEADER == "x-callback-token"


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "xnd-callback-token-TES",
        XENDIT_TOKEN + " ",
        XENDIT_TOKEN.upper(),
        "ü" * 23,
        "x" * 5000,
    ],
)
def test_a_missing_or_wrong_token_is_rejected(token: str | None) -> None:
    with pytest.raises(SignatureInvalid) as caught:
        xendit.verify(token, expected_token=XENDIT_TOKEN)
    assert caught.value.code == "invalid_signature"


def test_an_unconfigured_token_matches_nothing() -> None:
    with pytest.raises(SignatureInvalid):
        xendit.verify("", expected_token="")
    with pytest.raises(SignatureInvalid):
        xendit.verify("anything", expected_token="")


# --- QR payments --------------------------------------------------------------------------


def test_qr_payment_is_a_capture_keyed_by_the_qr_payment_id() -> None:
    assert events_of("xendit_qr_payment") == [
        {
            "idempotency_key": "xendit:payment:qrpy_8182837te-87st-49ing-8696-1239bd4d759c",
            "type": "payment.captured",
            "occurred_at": "2022-10-22T06:30:05.864740+00:00",
            "order_id": "order-id-1666420204",
            "amount": "10000.00",
            "currency": "IDR",
            "gateway": "xendit",
            "gateway_ref": "qrpy_8182837te-87st-49ing-8696-1239bd4d759c",
            "metadata": {
                "callback": "qr.payment",
                "channel_code": "ID_DANA",
                "source": "GOPAY",
                "qr_id": "qr_61cb3576-3a25-4d35-8d15-0e8e3bdba4f2",
                "qr_type": "DYNAMIC",
            },
        }
    ]


def test_legacy_flat_qr_payment_is_a_capture() -> None:
    [event] = events_of("xendit_qr_payment_v1_legacy")
    assert event["type"] == "payment.captured"
    assert event["order_id"] == "testing_id_123"
    assert event["amount"] == "1500.00"
    assert event["currency"] == "IDR"
    assert event["idempotency_key"] == "xendit:payment:qrpy_8182837te-87st-49ing-8696-1239bd4d759c"


def test_a_redelivered_qr_payment_is_the_same_event() -> None:
    # a webhook-id header, if Xendit sends one, differs per attempt: it is never the key
    body = load("xendit_qr_payment") | {"created": "2022-10-22T07:30:05Z"}
    assert events_for(body) == events_of("xendit_qr_payment")


def test_a_qr_payment_not_succeeded_is_noted() -> None:
    body = load("xendit_qr_payment")
    body["data"]["status"] = "FAILED"
    [event] = events_for(body)
    assert event["type"] == "order.status_noted"
    assert event["status"] == "FAILED"
    assert event["idempotency_key"].endswith(":FAILED")


# --- invoices -----------------------------------------------------------------------------


def test_paid_invoice_is_a_capture_keyed_by_the_invoice_id() -> None:
    [event] = events_of("xendit_invoice_paid")
    assert event == {
        "idempotency_key": "xendit:payment:593f4ed1c3d3bb7f39733d83",
        "type": "payment.captured",
        "occurred_at": "2020-01-14T02:32:50.912000+00:00",
        "order_id": "testing-invoice",
        "amount": "2000000.00",
        "currency": "IDR",
        "gateway": "xendit",
        "gateway_ref": "593f4ed1c3d3bb7f39733d83",
        "metadata": {
            "callback": "invoice",
            "payment_method": "RETAIL_OUTLET",
            "payment_channel": "ALFAMART",
        },
    }


def test_settled_after_paid_is_the_same_event() -> None:
    assert events_of("xendit_invoice_settled") == events_of("xendit_invoice_paid")


def test_expired_invoice_is_noted() -> None:
    [event] = events_of("xendit_invoice_expired")
    assert event["type"] == "order.status_noted"
    assert event["status"] == "EXPIRED"
    assert event["order_id"] == "testing-invoice"
    assert event["idempotency_key"] == "xendit:status:593f4ed1c3d3bb7f39733d83:EXPIRED"
    assert event["occurred_at"] == "2020-01-15T02:32:49.827000+00:00"


# --- refunds ------------------------------------------------------------------------------


def test_refund_succeeded_is_matched_through_its_payment() -> None:
    [event] = events_of("xendit_refund_succeeded")
    assert event == {
        "idempotency_key": "xendit:refund:rfd-6f4a377d-a201-437f-9119-f8b00cbbe857",
        "type": "refund.issued",
        "occurred_at": "2020-08-30T09:12:33.001000+00:00",
        "payment_ref": "ddpy-3cd658ae-25b9-4659-aa36-596ae41a809f",
        "amount": "10000.00",
        "currency": "IDR",
        "gateway": "xendit",
        "gateway_ref": "rfd-6f4a377d-a201-437f-9119-f8b00cbbe857",
        "metadata": {
            "reason": "CANCELLATION",
            "channel_code": "BRI",
            "payment_method_type": "DIRECT_DEBIT",
        },
    }
    assert "order_id" not in event


def test_an_invoice_refund_points_at_the_invoice() -> None:
    body = load("xendit_refund_succeeded")
    body["data"]["invoice_id"] = "593f4ed1c3d3bb7f39733d83"
    [event] = events_for(body)
    assert event["payment_ref"] == events_of("xendit_invoice_paid")[0]["gateway_ref"]


def test_refund_failed_is_noted() -> None:
    [event] = events_of("xendit_refund_failed")
    assert event["type"] == "order.status_noted"
    assert event["status"] == "refund.failed"
    assert event["payment_ref"] == "ddpy-3cd658ae-25b9-4659-aa36-596ae41a809f"
    assert event["metadata"]["failure_code"] == "INSUFFICIENT_BALANCE"
    assert event["idempotency_key"] != events_of("xendit_refund_succeeded")[0]["idempotency_key"]


def test_a_refund_with_no_payment_reference_is_refused() -> None:
    body = load("xendit_refund_succeeded")
    body["data"]["payment_id"] = None
    with pytest.raises(ValidationError):
        events_for(body)


@pytest.mark.parametrize("event", ["payment_token.activation", "qr.refund", "x"])
def test_callbacks_not_mapped_are_acknowledged_with_no_events(event: str) -> None:
    assert events_for({"event": event, "data": {"anything": 1}}) == []


# --- Payments API v3 (payment.capture / .authorization / .failure) ------------------------

V3_PAYMENT = "py-1fdaf346-dd2e-4b6c-b938-124c7167a822"
V3_CAPTURE = "cap-8a7e0c2b-5d8f-4a51-9d0e-2f6c1b3a4d5e"


def v3(event: str = "payment.capture", **data: Any) -> dict[str, Any]:
    body = load("xendit_payment_capture_v3")
    body["event"] = event
    body["data"].update(data)
    return body


def test_v3_payment_capture_is_a_capture_keyed_by_the_payment_id() -> None:
    assert events_of("xendit_payment_capture_v3") == [
        {
            "idempotency_key": f"xendit:payment:{V3_PAYMENT}",
            "type": "payment.captured",
            "occurred_at": "2021-12-02T14:52:21.566000+00:00",
            "order_id": "example_reference_id",
            "amount": "10000.00",
            "currency": "IDR",
            "gateway": "xendit",
            "gateway_ref": V3_PAYMENT,
            "metadata": {
                "callback": "payment.capture",
                "channel_code": "BRI_VIRTUAL_ACCOUNT",
                "payment_request_id": "pr-1fdaf346-dd2e-4b6c-b938-124c7167a822",
                "capture_id": V3_CAPTURE,
            },
        }
    ]


def test_a_v3_payment_is_refunded_through_its_payment_id() -> None:
    body = load("xendit_refund_succeeded")
    body["data"]["payment_id"] = V3_PAYMENT
    [refund] = events_for(body)
    [capture] = events_of("xendit_payment_capture_v3")
    assert refund["payment_ref"] == capture["gateway_ref"]


def test_a_v3_capture_told_without_captures_is_one_capture_of_the_requested_amount() -> None:
    # Xendit's own example carries no captures list
    body = v3(request_amount=25000)
    del body["data"]["captures"]
    [event] = events_for(body)
    assert event["type"] == "payment.captured"
    assert event["amount"] == "25000.00"
    assert event["idempotency_key"] == f"xendit:payment:{V3_PAYMENT}"
    assert event["gateway_ref"] == V3_PAYMENT


def test_later_v3_captures_have_their_own_key_and_the_first_stays_the_payment() -> None:
    first = {
        "capture_id": "cap-1",
        "capture_amount": 6000,
        "capture_timestamp": "2024-05-01T10:00:00Z",
    }
    second = {
        "capture_id": "cap-2",
        "capture_amount": 4000,
        "capture_timestamp": "2024-05-02T10:00:00Z",
    }
    before = events_for(v3(captures=[first]))
    after = events_for(v3(captures=[second, first]))  # listed in any order
    assert after[0] == before[0]
    assert (after[0]["gateway_ref"], after[0]["amount"]) == (V3_PAYMENT, "6000.00")
    assert after[1]["idempotency_key"] == "xendit:payment:cap-2"
    assert (after[1]["gateway_ref"], after[1]["amount"]) == ("cap-2", "4000.00")
    assert after[1]["order_id"] == "example_reference_id"
    assert after[1]["metadata"]["payment_id"] == V3_PAYMENT


@pytest.mark.parametrize(
    ("event", "status"),
    [
        ("payment.failure", "FAILED"),
        ("payment.authorization", "AUTHORIZED"),
        ("payment.expiry", "EXPIRED"),
        ("payment.capture", "PENDING"),
    ],
)
def test_v3_statuses_other_than_a_succeeded_capture_are_noted(event: str, status: str) -> None:
    [noted] = events_for(v3(event, status=status, failure_code="PAYMENT_DECLINED"))
    assert noted["type"] == "order.status_noted"
    assert noted["status"] == status
    assert noted["order_id"] == "example_reference_id"
    assert noted["idempotency_key"] == f"xendit:status:{V3_PAYMENT}:{status}"
    assert noted["metadata"]["failure_code"] == "PAYMENT_DECLINED"
    assert noted["metadata"]["amount"] == "10000.00"
    assert "amount" not in noted


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"captures": {"capture_id": "cap-1"}}, "data.captures"),
        ({"captures": ["cap-1"]}, "data.captures[0]"),
        ({"captures": [{"capture_amount": 10000}]}, "data.captures[0].capture_id"),
        (
            {"captures": [{"capture_id": "c", "capture_amount": 0.5}]},
            "data.captures[0].capture_amount",
        ),
        ({"payment_id": None}, "data.payment_id"),
        ({"reference_id": None}, "data.reference_id"),
    ],
)
def test_bad_v3_fields_are_validation_errors(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        events_for(v3(**change))
    assert caught.value.field == field


# --- e-wallets ----------------------------------------------------------------------------

EWALLET_CHARGE = "ewc_bb8c3po-c3po-r2d2-c3po-r2d2c3por2d2"


def test_ewallet_capture_is_a_capture_keyed_by_the_charge_id() -> None:
    assert events_of("xendit_ewallet_capture") == [
        {
            "idempotency_key": f"xendit:payment:{EWALLET_CHARGE}",
            "type": "payment.captured",
            "occurred_at": "2021-07-29T06:27:44.917000+00:00",
            "order_id": "test-reference-id",
            "amount": "1000.00",
            "currency": "IDR",
            "gateway": "xendit",
            "gateway_ref": EWALLET_CHARGE,
            "metadata": {
                "callback": "ewallet.capture",
                "channel_code": "ID_SHOPEEPAY",
                "checkout_method": "ONE_TIME_PAYMENT",
            },
        }
    ]


def test_ewallet_capture_takes_the_captured_amount() -> None:
    body = load("xendit_ewallet_capture")
    body["data"].update(charge_amount=1500, capture_amount=1000)
    assert events_for(body)[0]["amount"] == "1000.00"


@pytest.mark.parametrize("status", ["FAILED", "PENDING", "VOIDED"])
def test_ewallet_capture_not_succeeded_is_noted(status: str) -> None:
    body = load("xendit_ewallet_capture")
    body["data"].update(status=status, capture_amount=None, failure_code="USER_DECLINED_PAYMENT")
    [event] = events_for(body)
    assert event["type"] == "order.status_noted"
    assert event["status"] == status
    assert event["idempotency_key"] == f"xendit:status:{EWALLET_CHARGE}:{status}"
    assert event["metadata"]["amount"] == "1000.00"  # the charge
    assert event["metadata"]["failure_code"] == "USER_DECLINED_PAYMENT"


def test_legacy_ewallet_paid_is_a_capture_keyed_by_wallet_and_external_id() -> None:
    assert events_of("xendit_ewallet_legacy_paid") == [
        {
            "idempotency_key": "xendit:payment:DANA:ewallet-legacy-order-1",
            "type": "payment.captured",
            "occurred_at": "2019-04-07T01:35:46.658000+00:00",
            "order_id": "ewallet-legacy-order-1",
            "amount": "1000.00",
            "currency": "IDR",
            "gateway": "xendit",
            "gateway_ref": "DANA:ewallet-legacy-order-1",
            "metadata": {"callback": "ewallet.legacy", "ewallet_type": "DANA"},
        }
    ]


def test_legacy_ewallet_with_an_id_is_keyed_by_it() -> None:
    body = load("xendit_ewallet_legacy_paid") | {"id": "ewallet-pay-123"}
    [event] = events_for(body)
    assert (event["idempotency_key"], event["gateway_ref"]) == (
        "xendit:payment:ewallet-pay-123",
        "ewallet-pay-123",
    )


def test_legacy_ewallet_expired_is_noted() -> None:
    body = load("xendit_ewallet_legacy_paid") | {"payment_status": "EXPIRED"}
    [event] = events_for(body)
    assert event["type"] == "order.status_noted"
    assert event["status"] == "EXPIRED"
    assert event["order_id"] == "ewallet-legacy-order-1"
    assert event["idempotency_key"] == "xendit:status:DANA:ewallet-legacy-order-1:EXPIRED"


def test_legacy_ewallet_without_id_or_wallet_is_refused() -> None:
    body = load("xendit_ewallet_legacy_paid")
    del body["ewallet_type"]
    with pytest.raises(ValidationError) as caught:
        events_for(body)
    assert caught.value.field == "ewallet_type"


# --- flat callbacks not mapped ------------------------------------------------------------

#: a fixed virtual account "paid" callback (xendit-java FixedVirtualAccountPayment
#: fields); no event, no status: not mapped, so never credited by itself
VA_PAID: dict[str, Any] = {
    "updated": "2017-08-11T11:20:11.000Z",
    "created": "2017-08-11T11:20:11.000Z",
    "payment_id": "1502450097080",
    "callback_virtual_account_id": "598d91b1191029596846047f",
    "owner_id": "5824128aa6f9f2e648be9d76",
    "external_id": "fixed-va-1502437214715",
    "account_number": "1001470126",
    "bank_code": "MANDIRI",
    "amount": 80000,
    "transaction_timestamp": "2017-08-11T11:20:10.000Z",
    "merchant_code": "8808",
    "id": "598d5f71bf64853820c49a18",
}


def test_an_unmapped_flat_payment_names_no_order_so_it_is_kept_for_an_operator() -> None:
    assert events_for(VA_PAID) == [
        {
            "idempotency_key": "xendit:payment:598d5f71bf64853820c49a18",
            "type": "payment.captured",
            "occurred_at": "2017-08-11T11:20:10+00:00",
            "amount": "80000.00",
            "currency": "IDR",
            "gateway": "xendit",
            "gateway_ref": "598d5f71bf64853820c49a18",
            "metadata": {
                "callback": "unmapped",
                "external_id": "fixed-va-1502437214715",
                "bank_code": "MANDIRI",
            },
        }
    ]


def test_an_unmapped_flat_payment_without_ids_is_keyed_by_its_body() -> None:
    body = {k: v for k, v in VA_PAID.items() if k not in ("id", "payment_id")}
    [event] = events_for(body)
    assert event["idempotency_key"].startswith("xendit:payment:sha256:")
    assert event["gateway_ref"] == event["idempotency_key"].removeprefix("xendit:payment:")
    assert events_for(dict(reversed(body.items()))) == [event]  # a redelivery: the same key
    assert events_for(body | {"amount": 80001})[0]["idempotency_key"] != event["idempotency_key"]


@pytest.mark.parametrize("missing", ["amount", "external_id"])
def test_an_unmapped_flat_callback_without_money_is_acknowledged_with_no_events(
    missing: str,
) -> None:
    body = {k: v for k, v in VA_PAID.items() if k != missing}
    assert events_for(body) == []


def test_an_unmapped_flat_callback_without_a_time_is_acknowledged_with_no_events() -> None:
    untimed = ("updated", "created", "transaction_timestamp")
    assert events_for({k: v for k, v in VA_PAID.items() if k not in untimed}) == []


# --- amounts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (10000, "10000.00"),
        ("10000", "10000.00"),
        ("10000.5", "10000.50"),  # a decimal STRING within the currency's digits is money
        ("10000.00", "10000.00"),
        ("10000.0", "10000.00"),
    ],
)
def test_amounts_accepted(amount: object, expected: str) -> None:
    body = load("xendit_qr_payment")
    body["data"]["amount"] = amount
    assert events_for(body)[0]["amount"] == expected


@pytest.mark.parametrize("literal", ["10000.0", "10000.00"])
def test_a_json_number_with_a_zero_fraction_is_exact(literal: str) -> None:
    body = raw("xendit_qr_payment").replace(b'"amount": 10000', b'"amount": ' + literal.encode())
    assert xendit.to_events(xendit.parse(body))[0]["amount"] == "10000.00"


@pytest.mark.parametrize(
    "literal",
    [
        "10000.5",
        "10000.01",
        "1e4",
        "1E+4",
        "10000.0000000000000001",
        "-10000",
        "0",
        "true",
        "null",
        '"10000.001"',
        '"1,000"',
        '" 10000"',
        "99999999999999999999999999999",
        "[10000]",
    ],
)
def test_amounts_refused(literal: str) -> None:
    body = raw("xendit_qr_payment").replace(b'"amount": 10000', b'"amount": ' + literal.encode())
    with pytest.raises(ValidationError) as caught:
        xendit.parse(body)
    assert caught.value.field == "data.amount"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda body: body["data"].pop("id"), "data.id"),
        (lambda body: body["data"].pop("reference_id"), "data.reference_id"),
        (lambda body: body["data"].update(currency="IDRX"), "data.currency"),
        (lambda body: body["data"].update(created="2022-10-22T06:30:05"), "data.created"),
        (lambda body: body["data"].update(created="2022-10-22"), "data.created"),
        (lambda body: body["data"].update(status=None), "data.status"),
        (lambda body: body.update(data=[]), "data"),
        (lambda body: body.update(event=7), "event"),
    ],
)
def test_bad_qr_fields_are_validation_errors(mutate: Any, field: str) -> None:
    body = load("xendit_qr_payment")
    mutate(body)
    with pytest.raises(ValidationError) as caught:
        xendit.parse(json.dumps(body).encode())
    assert caught.value.field == field


def test_an_object_that_is_no_xendit_callback_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        events_for({"hello": "world"})


def test_times_keep_their_offset() -> None:
    body = load("xendit_invoice_paid") | {"paid_at": "2020-01-14T10:32:50.912+08:00"}
    assert events_for(body)[0]["occurred_at"] == "2020-01-14T10:32:50.912000+08:00"
