"""Xendit callbacks: token, QR payments, invoices, refunds, amounts."""

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


@pytest.mark.parametrize("event", ["ewallet.capture", "payment.capture", "qr.refund", "x"])
def test_callbacks_not_mapped_are_acknowledged_with_no_events(event: str) -> None:
    assert events_for({"event": event, "data": {"anything": 1}}) == []


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
