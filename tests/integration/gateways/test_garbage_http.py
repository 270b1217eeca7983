"""No body makes a gateway endpoint answer 5xx: unsigned garbage, signed garbage, huge bodies."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.integration.gateways.conftest import (
    MIDTRANS,
    MIDTRANS_SERVER_KEY,
    SHOPEE,
    XENDIT,
    XENDIT_TOKEN,
    Hooks,
    fixture,
    shopee_signature,
)

GARBAGE: list[bytes] = [
    b"",
    b"null",
    b"true",
    b"0",
    b'"text"',
    b"[]",
    b"{}",
    b"{",
    b"not json at all",
    b"\xff\xfe\x00\x01",
    b'{"a": NaN}',
    b'{"a": Infinity}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b'{"order_id": "\\u0000", "status_code": "200", "gross_amount": "1"}',
    b'{"order_id": "\\ud800", "status_code": "200", "gross_amount": "1"}',
    b'{"event": "qr.payment", "data": []}',
    b'{"code": 3, "shop_id": -1, "data": {}}',
    b'{"code": 99999999999999999999999}',
    ("{" + ",".join(f'"k{i}": {i}' for i in range(20_000)) + "}").encode(),
]

#: Fields of a valid notification replaced by hostile values (then re-signed).
MIDTRANS_MUTATIONS: list[dict[str, object]] = [
    {"transaction_status": None},
    {"transaction_status": 5},
    {"transaction_status": "x" * 10_000},
    {"transaction_id": ""},
    {"transaction_id": "\u0000"},
    {"transaction_id": "a\nb"},
    {"transaction_time": "yesterday"},
    {"transaction_time": "2020-02-30 11:27:33"},
    {"settlement_time": 12},
    {"currency": "XXX"},
    {"currency": 360},
    {"gross_amount": "275000.001"},
    {"gross_amount": "-275000.00"},
    {"gross_amount": "1e9"},
    {"gross_amount": "9" * 40},
    {"gross_amount": "0.00"},
    {"order_id": "o" * 10_000},
    {"order_id": "é" * 30},
    {"status_code": "2" * 50},
    {"transaction_status": "refund", "refunds": "all"},
    {"transaction_status": "refund", "refunds": [1, 2]},
    {"transaction_status": "refund", "refunds": [{"refund_amount": "1.00"}]},
    {"transaction_status": "refund", "refunds": [{"refund_key": "k", "refund_amount": 1.5}]},
    {"transaction_status": "refund", "refunds": [{"refund_key": "k", "refund_amount": "-1"}]},
    {"transaction_status": "refund", "refunds": [{"refund_key": "k"} for _ in range(1001)]},
    {"fraud_status": ["accept"]},
    {"payment_type": {"x": 1}},
]

XENDIT_BODIES: list[object] = [
    {"event": "qr.payment"},
    {"event": "qr.payment", "data": {"id": "qrpy_1"}},
    {
        "event": "qr.payment",
        "data": {
            "id": "qrpy_1",
            "reference_id": "o",
            "amount": 10.5,
            "currency": "IDR",
            "status": "SUCCEEDED",
            "created": "2022-10-22T06:30:05Z",
        },
    },
    {
        "event": "qr.payment",
        "data": {
            "id": "qrpy_1",
            "reference_id": "o",
            "amount": 10,
            "currency": "IDR",
            "status": "SUCCEEDED",
            "created": "2022-10-22T06:30:05",
        },
    },
    {
        "event": "qr.payment",
        "data": {
            "id": "qrpy_1",
            "reference_id": "o",
            "amount": 1e400,
            "currency": "IDR",
            "status": "SUCCEEDED",
            "created": "2022-10-22T06:30:05Z",
        },
    },
    {"event": "refund.succeeded", "data": {"id": "rfd", "amount": 1, "currency": "IDR"}},
    {"event": 5},
    {"event": ""},
    {"status": "PAID"},
    {
        "external_id": "o",
        "id": "i",
        "status": "PAID",
        "amount": -5,
        "currency": "IDR",
        "paid_at": "2020-01-14T02:32:50Z",
    },
    {
        "external_id": "o",
        "id": "i",
        "status": "PAID",
        "amount": 5,
        "currency": "IDR",
        "paid_at": "2020-13-14T02:32:50Z",
    },
]

SHOPEE_BODIES: list[object] = [
    {"code": 3},
    {"code": "3", "shop_id": 1, "data": {}},
    {"code": 3, "shop_id": 1, "data": {"ordersn": "x"}},
    {"code": 3, "shop_id": 1, "data": {"ordersn": "x", "status": "CANCELLED", "update_time": -1}},
    {
        "code": 3,
        "shop_id": 1,
        "data": {"ordersn": "x", "status": "CANCELLED", "update_time": 10**20},
    },
    {
        "code": 3,
        "shop_id": "1" * 50,
        "data": {"ordersn": "x", "status": "CANCELLED", "update_time": 1660209527},
    },
    {"code": 3, "shop_id": True, "data": {"ordersn": "x", "status": "S"}},
    {
        "code": 3,
        "shop_id": 1,
        "data": {"ordersn": "x" * 300, "status": "CANCELLED", "update_time": 1660209527},
    },
    {
        "code": 3,
        "shop_id": 1,
        "data": {"ordersn": "bad id/with slash", "status": "CANCELLED", "update_time": 1660209527},
    },
    {
        "code": 3,
        "shop_id": 1,
        "data": {"ordersn": "x", "status": "a b c d é", "update_time": 1660209527},
    },
]


def _assert_json_answer(status: int, body: object, what: object) -> None:
    assert status < 500, (status, body, what)
    assert isinstance(body, dict), (status, body)
    if status >= 400:
        assert set(body["error"]) >= {"code", "message"}, body


@pytest.mark.parametrize("path", [MIDTRANS, XENDIT, SHOPEE])
async def test_unauthenticated_garbage_is_4xx(hooks: Hooks, path: str) -> None:
    head = await hooks.head()
    for raw in GARBAGE:
        status, body = await hooks.raw(path, raw, {"Content-Type": "application/json"})
        _assert_json_answer(status, body, raw[:60])
        assert status in (400, 401), (raw[:60], body)
    assert await hooks.head() == head


async def test_authenticated_garbage_never_5xx(hooks: Hooks) -> None:
    for raw in GARBAGE:
        status, body = await hooks.raw(XENDIT, raw, {"x-callback-token": XENDIT_TOKEN})
        _assert_json_answer(status, body, raw[:60])
        status, body = await hooks.raw(SHOPEE, raw, {"Authorization": shopee_signature(raw)})
        _assert_json_answer(status, body, raw[:60])
    for value in XENDIT_BODIES:
        status, body = await hooks.xendit(value)  # type: ignore[arg-type]
        _assert_json_answer(status, body, value)
    for value in SHOPEE_BODIES:
        status, body = await hooks.shopee(value)  # type: ignore[arg-type]
        _assert_json_answer(status, body, value)


@pytest.mark.parametrize("mutation", MIDTRANS_MUTATIONS, ids=lambda m: ",".join(m))
async def test_signed_midtrans_garbage_never_5xx(hooks: Hooks, uid, mutation) -> None:
    body = fixture("midtrans_qris_settlement")
    body.update(order_id=uid("o"), transaction_id=uid("t"))
    for name, value in mutation.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    signed = (
        str(body["order_id"])
        + str(body["status_code"])
        + str(body["gross_amount"])
        + MIDTRANS_SERVER_KEY
    )
    body["signature_key"] = hashlib.sha512(signed.encode("utf-8", "surrogatepass")).hexdigest()
    status, answer = await hooks.midtrans(json.dumps(body).encode())
    _assert_json_answer(status, answer, mutation)


@pytest.mark.parametrize("path", [MIDTRANS, XENDIT, SHOPEE])
async def test_a_body_over_1_mib_is_413(hooks: Hooks, path: str) -> None:
    raw = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'
    status, body = await hooks.raw(path, raw, {"x-callback-token": XENDIT_TOKEN})
    assert status == 413, body
    assert body["error"]["code"] == "payload_too_large"


async def test_a_chunked_body_over_1_mib_is_413(hooks: Hooks) -> None:
    async def chunks():
        for _ in range(20):
            yield b"x" * 100_000

    resp = await hooks.client.post(MIDTRANS, data=chunks())
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "payload_too_large"


async def test_wrong_methods_are_405(hooks: Hooks) -> None:
    for path in (MIDTRANS, XENDIT, SHOPEE):
        resp = await hooks.client.get(path)
        assert resp.status == 405


async def test_a_duplicate_key_in_a_webhook_is_422(hooks: Hooks, uid) -> None:
    """Midtrans signs only order_id, status_code and gross_amount: a second
    ``transaction_status`` must not ride along unsigned and win."""
    head = await hooks.head()
    body = fixture("midtrans_qris_settlement")
    body.update(order_id=uid("o"), transaction_id=uid("t"))
    signed = body["order_id"] + body["status_code"] + body["gross_amount"] + MIDTRANS_SERVER_KEY
    body["signature_key"] = hashlib.sha512(signed.encode()).hexdigest()
    raw = json.dumps(body).encode()[:-1] + b', "transaction_status": "refund"}'
    status, answer = await hooks.raw(MIDTRANS, raw, {"Content-Type": "application/json"})
    assert (status, answer["error"]["code"]) == (422, "duplicate_key"), answer
    assert answer["error"]["field"] == "transaction_status"
    raw = b'{"event": "qr.payment", "event": "qr.payment", "data": {}}'
    status, answer = await hooks.raw(XENDIT, raw, {"x-callback-token": XENDIT_TOKEN})
    assert (status, answer["error"]["code"]) == (422, "duplicate_key"), answer
    raw = b'{"code": 3, "shop_id": 1, "shop_id": 2, "data": {}}'
    status, answer = await hooks.raw(SHOPEE, raw, {"Authorization": shopee_signature(raw)})
    assert (status, answer["error"]["code"]) == (422, "duplicate_key"), answer
    assert await hooks.head() == head
