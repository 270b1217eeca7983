"""Garbage in: every adapter answers BadRequest, ValidationError or SignatureInvalid, nothing else.

The pipeline is the one the HTTP layer runs: verify -> parse -> to_events.
Whatever comes out must be a list of events the ledger can store: JSON
serialisable by orjson, keys within 200 characters, metadata within 4 KiB.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from gateways import midtrans, shopee, xendit
from gateways.errors import SignatureInvalid
from ledger.domain.errors import BadRequest, ValidationError
from tests.unit.gateways.samples import (
    MIDTRANS_SERVER_KEY,
    SHOPEE_CALLBACK_URL,
    SHOPEE_PARTNER_KEY,
    XENDIT_TOKEN,
    load,
    midtrans_signed,
    names,
    shopee_signature,
)

ALLOWED = (BadRequest, ValidationError, SignatureInvalid)


def run_midtrans(body: bytes) -> list[dict[str, Any]]:
    midtrans.verify(body, server_key=MIDTRANS_SERVER_KEY)
    return midtrans.to_events(midtrans.parse(body))


def run_xendit(body: bytes) -> list[dict[str, Any]]:
    xendit.verify(XENDIT_TOKEN, expected_token=XENDIT_TOKEN)
    return xendit.to_events(xendit.parse(body))


def run_shopee(body: bytes) -> list[dict[str, Any]]:
    shopee.verify(
        body,
        shopee_signature(body),
        partner_key=SHOPEE_PARTNER_KEY,
        callback_url=SHOPEE_CALLBACK_URL,
    )
    return shopee.to_events(shopee.parse(body))


PIPELINES: dict[str, Callable[[bytes], list[dict[str, Any]]]] = {
    "midtrans": run_midtrans,
    "xendit": run_xendit,
    "shopee": run_shopee,
}

UNREADABLE = [
    b"",
    b" ",
    b"[]",
    b"null",
    b"1",
    b'"a string"',
    b"{",
    b'{"a": 1',
    b"\xff\xfe\x00{",
    b'{"order_id": "\xc3\x28"}',
    b"\xef\xbb\xbf{}",
    b"NaN",
    b'{"amount": NaN}',
    b'{"amount": -Infinity}',
    b"[" * 100_000,
    b'{"a":' * 50_000,
    b"9" * 5000,
    b'{"amount": ' + b"9" * 5000 + b"}",
]


@pytest.mark.parametrize("gateway", PIPELINES)
@pytest.mark.parametrize("body", UNREADABLE, ids=lambda body: repr(body[:20]))
def test_unreadable_bodies_are_bad_requests(gateway: str, body: bytes) -> None:
    with pytest.raises(BadRequest):
        PIPELINES[gateway](body)


@pytest.mark.parametrize("gateway", PIPELINES)
@pytest.mark.parametrize("body", [b"{}", b'{"a": "\\ud800"}', b'{"data": null}'])
def test_readable_but_empty_bodies_are_refused(gateway: str, body: bytes) -> None:
    with pytest.raises((ValidationError, SignatureInvalid)):
        PIPELINES[gateway](body)


def test_parse_takes_only_bytes() -> None:
    with pytest.raises(BadRequest):
        xendit.parse("{}")  # type: ignore[arg-type]


# --- well-formed, signed, wrong: 422 ----------------------------------------------------

MIDTRANS_BAD = [
    {"gross_amount": "1" * 30 + ".00"},  # huge
    {"gross_amount": "10000.5.0"},
    {"gross_amount": "abc"},
    {"gross_amount": ""},
    {"gross_amount": "10,000.00"},
    {"gross_amount": "+10000.00"},
    {"gross_amount": "-10000.00"},
    {"gross_amount": "1e5"},
    {"gross_amount": "10000.001"},
    {"gross_amount": "NaN"},
    {"transaction_id": None},
    {"transaction_id": 12345},
    {"transaction_status": None},
    {"transaction_status": ["settlement"]},
    {"transaction_time": None},
    {"transaction_time": "yesterday"},
    {"currency": "RUPIAH"},
    {"currency": 360},
    {"fraud_status": 1},
    {"refunds": "none"},
    {"order_id": "x" * 300},
]


@pytest.mark.parametrize("change", MIDTRANS_BAD, ids=repr)
def test_midtrans_signed_but_invalid_is_a_validation_error(change: dict[str, Any]) -> None:
    body = load("midtrans_partial_refund_first") | change
    with pytest.raises(ValidationError):
        run_midtrans(midtrans_signed(body))


@pytest.mark.parametrize("field", ["order_id", "status_code", "gross_amount", "signature_key"])
def test_midtrans_missing_signed_fields_are_signature_errors(field: str) -> None:
    body = json.loads(midtrans_signed(load("midtrans_qris_settlement")))
    del body[field]
    with pytest.raises(SignatureInvalid):
        run_midtrans(json.dumps(body).encode())


XENDIT_BAD_AMOUNTS = [
    "10000.5",
    "0.1",
    "1e3",
    "-1",
    "true",
    '"ten thousand"',
    '""',
    '"10000.123"',
    "18446744073709551616",
    "1" + "0" * 40,
    "{}",
]


@pytest.mark.parametrize("literal", XENDIT_BAD_AMOUNTS)
@pytest.mark.parametrize(
    "name", ["xendit_qr_payment", "xendit_invoice_paid", "xendit_refund_succeeded"]
)
def test_xendit_bad_amounts_are_validation_errors(name: str, literal: str) -> None:
    body = load(name)
    holder = body.get("data", body)
    holder["paid_amount" if "paid_amount" in holder else "amount"] = "__AMOUNT__"
    raw_body = json.dumps(body).replace('"__AMOUNT__"', literal).encode()
    with pytest.raises(ValidationError):
        run_xendit(raw_body)


# --- mutation sweep: any leaf replaced by anything --------------------------------------

REPLACEMENTS: list[Any] = [
    None,
    "",
    0,
    -1,
    1.5,
    10.0,
    True,
    [],
    {},
    "x" * 300,
    "a\x00b",
    "ü",
    10**30,
    "2020-13-45 99:99:99",
]


def leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))
    if path:
        yield path


def replaced(body: Any, path: tuple[Any, ...], new: Any) -> Any:
    body = copy.deepcopy(body)
    holder = body
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = new
    return body


def encode(gateway: str, body: dict[str, Any]) -> bytes:
    signed = ("order_id", "status_code", "gross_amount")
    if gateway == "midtrans" and all(isinstance(body.get(name), str) for name in signed):
        return midtrans_signed(body)
    return json.dumps(body).encode()


def assert_storable(events: list[dict[str, Any]]) -> None:
    assert isinstance(events, list)
    for event in events:
        orjson.dumps(event)  # no Decimal, no surrogate, nothing orjson cannot store
        assert 1 <= len(event["idempotency_key"]) <= 200
        assert len(orjson.dumps(event.get("metadata", {}))) < 4096
        assert isinstance(event["occurred_at"], str) and event["occurred_at"][-6] in "+-"


@pytest.mark.parametrize("name", names("midtrans") + names("xendit") + names("shopee"))
def test_any_leaf_replaced_by_anything_gives_events_or_an_allowed_error(name: str) -> None:
    gateway = name.split("_")[0]
    original = load(name)
    outcomes = {"events": 0, "refused": 0}
    for path in list(leaves(original)):
        for new in REPLACEMENTS:
            body = encode(gateway, replaced(original, path, new))
            try:
                events = PIPELINES[gateway](body)
            except ALLOWED:
                outcomes["refused"] += 1
            else:
                assert_storable(events)
                outcomes["events"] += 1
    assert outcomes["events"] > 0  # unknown or descriptive fields must not break a notification


@pytest.mark.parametrize("name", names("midtrans") + names("xendit") + names("shopee"))
def test_every_fixture_gives_storable_events(name: str) -> None:
    gateway = name.split("_")[0]
    assert_storable(PIPELINES[gateway](encode(gateway, load(name))))


def test_idempotency_keys_past_200_characters_are_hashed_deterministically() -> None:
    body = load("midtrans_partial_refund_first")
    body["refunds"][0]["refund_key"] = "k" * 250
    first = run_midtrans(midtrans_signed(body))
    again = run_midtrans(midtrans_signed(body))
    assert first == again
    key = first[0]["idempotency_key"]
    digest = hashlib.sha256(
        f"midtrans:refund:{body['transaction_id']}:{'k' * 250}".encode()
    ).hexdigest()
    assert key == f"midtrans:refund:sha256:{digest}"
