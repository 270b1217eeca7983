"""Shopee push: HMAC over URL|body, code 3 order statuses, other codes acknowledged."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateways import shopee
from gateways.errors import SignatureInvalid
from ledger.domain.errors import ValidationError
from tests.unit.gateways.samples import (
    SHOPEE_CALLBACK_URL,
    SHOPEE_PARTNER_KEY,
    load,
    raw,
    shopee_signature,
)

# computed once with `openssl dgst -sha256 -hmac shopee-partner-key-TEST` over
# "https://ledger.example.test/v1/gateways/shopee/push|{"code":3}", independently of Python
KNOWN_BODY = b'{"code":3}'
KNOWN_SIGNATURE = "9c6e4710c05f95cfbfbc60063a3fc694a317892b6327fe83f3163b3f389fd638"


def verify(raw_body: bytes, authorization: str | None) -> None:
    shopee.verify(
        raw_body, authorization, partner_key=SHOPEE_PARTNER_KEY, callback_url=SHOPEE_CALLBACK_URL
    )


def events_of(name: str) -> list[dict[str, Any]]:
    body = raw(name)
    verify(body, shopee_signature(body))
    return shopee.to_events(shopee.parse(body))


def events_for(body: dict[str, Any]) -> list[dict[str, Any]]:
    return shopee.to_events(shopee.parse(json.dumps(body).encode()))


# --- signature ----------------------------------------------------------------------------


def test_signature_known_answer() -> None:
    verify(KNOWN_BODY, KNOWN_SIGNATURE)
    verify(KNOWN_BODY, KNOWN_SIGNATURE.upper())
    assert shopee.SIGNATURE_HEADER == "Authorization"


def test_signature_covers_the_raw_bytes() -> None:
    body = raw("shopee_order_processed")
    signature = shopee_signature(body)
    verify(body, signature)
    reformatted = json.dumps(json.loads(body)).encode()  # same JSON, other bytes
    with pytest.raises(SignatureInvalid):
        verify(reformatted, signature)


def test_a_tampered_body_is_rejected() -> None:
    body = raw("shopee_order_processed")
    signature = shopee_signature(body)
    with pytest.raises(SignatureInvalid):
        verify(body.replace(b"PROCESSED", b"CANCELLED"), signature)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "SHA256 " + KNOWN_SIGNATURE,
        KNOWN_SIGNATURE[:-1],
        "ü" * 64,
        "0" * 64,
        KNOWN_SIGNATURE * 10,
    ],
)
def test_a_missing_or_wrong_signature_is_rejected(authorization: str | None) -> None:
    with pytest.raises(SignatureInvalid) as caught:
        verify(KNOWN_BODY, authorization)
    assert caught.value.code == "invalid_signature"


def test_the_url_is_part_of_the_signature() -> None:
    with pytest.raises(SignatureInvalid):
        shopee.verify(
            KNOWN_BODY,
            KNOWN_SIGNATURE,
            partner_key=SHOPEE_PARTNER_KEY,
            callback_url=SHOPEE_CALLBACK_URL + "/",
        )


@pytest.mark.parametrize(("key", "url"), [("", SHOPEE_CALLBACK_URL), (SHOPEE_PARTNER_KEY, "")])
def test_nothing_verifies_without_configuration(key: str, url: str) -> None:
    with pytest.raises(SignatureInvalid):
        shopee.verify(KNOWN_BODY, KNOWN_SIGNATURE, partner_key=key, callback_url=url)


# --- mapping ------------------------------------------------------------------------------


def test_cancelled_cancels_the_order() -> None:
    assert events_of("shopee_order_cancelled") == [
        {
            "idempotency_key": "shopee:status:727720655:220810QSK8S7BX:CANCELLED",
            "type": "order.cancelled",
            "occurred_at": "2022-08-11T09:18:47+00:00",
            "channel": "shopee",
            "order_id": "220810QSK8S7BX",
            "shop_id": "727720655",
            "metadata": {"push_code": 3},
        }
    ]


def test_processed_is_noted() -> None:
    assert events_of("shopee_order_processed") == [
        {
            "idempotency_key": "shopee:status:727720655:220810QSK8S7BX:PROCESSED",
            "type": "order.status_noted",
            "occurred_at": "2022-08-10T09:18:47+00:00",
            "channel": "shopee",
            "order_id": "220810QSK8S7BX",
            "shop_id": "727720655",
            "source": "shopee",
            "status": "PROCESSED",
            "metadata": {"push_code": 3},
        }
    ]


@pytest.mark.parametrize(
    "status",
    [
        "UNPAID",
        "READY_TO_SHIP",
        "PROCESSED",
        "SHIPPED",
        "COMPLETED",
        "IN_CANCEL",
        "INVOICE_PENDING",
        "TO_RETURN",
    ],
)
def test_every_other_status_is_noted_once(status: str) -> None:
    body = load("shopee_order_processed")
    body["data"]["status"] = status
    [event] = events_for(body)
    assert event["type"] == "order.status_noted"
    assert event["status"] == status
    assert event["idempotency_key"] == f"shopee:status:727720655:220810QSK8S7BX:{status}"


def test_in_cancel_is_not_a_cancellation() -> None:
    [event] = events_of("shopee_order_in_cancel")
    assert event["type"] == "order.status_noted"


@pytest.mark.parametrize("code", [1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13])
def test_other_push_codes_are_acknowledged_with_no_events(code: int) -> None:
    assert events_for({"code": code, "shop_id": 727720655, "data": {}, "timestamp": 1}) == []


def test_tracking_number_push_has_no_events() -> None:
    assert events_of("shopee_tracking_no_push") == []


def test_a_redelivery_is_the_same_event() -> None:
    body = load("shopee_order_cancelled") | {"msg_id": "another-delivery"}
    assert events_for(body) == events_of("shopee_order_cancelled")


def test_shop_id_as_a_string_is_the_same_shop() -> None:
    body = load("shopee_order_cancelled") | {"shop_id": "727720655"}
    assert events_for(body) == events_of("shopee_order_cancelled")


def test_update_time_falls_back_to_the_push_timestamp() -> None:
    body = load("shopee_order_processed")
    del body["data"]["update_time"]
    body["timestamp"] = 1660123200
    assert events_for(body)[0]["occurred_at"] == "2022-08-10T09:20:00+00:00"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda body: body.pop("code"), "code"),
        (lambda body: body.update(code="3"), "code"),
        (lambda body: body.update(code=True), "code"),
        (lambda body: body.update(code=3.0), "code"),
        (lambda body: body.pop("shop_id"), "shop_id"),
        (lambda body: body.update(shop_id=-1), "shop_id"),
        (lambda body: body.update(shop_id="72772a"), "shop_id"),
        (lambda body: body.update(data="{}"), "data"),
        (lambda body: body["data"].pop("ordersn"), "data.ordersn"),
        (lambda body: body["data"].update(status=""), "data.status"),
        (lambda body: body["data"].update(update_time="1660123127"), "data.update_time"),
        (lambda body: body["data"].update(update_time=10**20), "data.update_time"),
        (lambda body: body["data"].update(update_time=-5), "data.update_time"),
    ],
)
def test_bad_fields_are_validation_errors(mutate: Any, field: str) -> None:
    body = load("shopee_order_processed")
    mutate(body)
    with pytest.raises(ValidationError) as caught:
        shopee.parse(json.dumps(body).encode())
    assert caught.value.field == field
