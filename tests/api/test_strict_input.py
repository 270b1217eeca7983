"""Loose input refused (issue 10, finding 11): duplicate keys, ``.``/``..`` ids,
non-canonical dates, and error bodies that would echo a huge input whole."""

from __future__ import annotations

import io
import uuid
from typing import Any

import orjson
import pytest

from tests.api.conftest import Api

AT = "2026-11-30T10:00:00+08:00"
HUGE = "X" * 900_000
#: an error answer quotes at most a prefix of the input: the whole body stays under this
ANSWER_BYTES_MAX = 1024


async def post_raw(api: Api, path: str, raw: bytes) -> tuple[int, Any, bytes]:
    resp = await api.client.post(  # aiohttp warns on large raw bytes: a stream instead
        path, data=io.BytesIO(raw), headers=api.headers | {"Content-Type": "application/json"}
    )
    body = await resp.read()
    return resp.status, orjson.loads(body), body


def event(seller_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "order.placed",
        "idempotency_key": uuid.uuid4().hex,
        "occurred_at": AT,
        "seller_id": seller_id,
        "order_id": "o-" + uuid.uuid4().hex[:8],
        "channel": "qris",
        "amount": "100000",
    } | fields


@pytest.mark.parametrize(
    ("path", "raw", "key"),
    [
        ("/v1/events", b'{"type": "order.placed", "amount": "1", "amount": "1000000"}', "amount"),
        ("/v1/events", b'{"events": [{"type": "x", "metadata": {"a": 1, "a": 2}}]}', "a"),
        ("/v1/events", b'{"type": "o", "t\\u0079pe": "x"}', "type"),  # the same key, escaped
        ("/v1/sellers", b'{"seller_id": "a", "seller_id": "b", "name": "Toko"}', "seller_id"),
        ("/v1/keys", b'{"role": "auditor", "role": "admin"}', "role"),
    ],
)
async def test_a_duplicate_json_key_is_422_naming_it(
    api: Api, path: str, raw: bytes, key: str
) -> None:
    status, body, _ = await post_raw(api, path, raw)
    assert status == 422, body
    assert body["error"]["code"] == "duplicate_key", body
    assert body["error"]["field"] == key and repr(key) in body["error"]["message"], body


async def test_a_duplicate_key_in_one_batch_event_records_none_of_the_batch(
    api: Api, uid: Any, store: Any
) -> None:
    seller = uid("s")
    await api.seller(seller)
    head, _ = await store.head()
    good = orjson.dumps(event(seller))
    doubled = orjson.dumps(event(seller))[:-1] + b', "amount": "5"}'
    status, body, _ = await post_raw(api, "/v1/events", b'{"events": [%s, %s]}' % (good, doubled))
    assert (status, body["error"]["code"]) == (422, "duplicate_key"), body
    assert (await store.head())[0] == head


async def test_keys_that_only_look_alike_are_not_duplicates(api: Api, uid: Any) -> None:
    seller = uid("s")
    await api.seller(seller)
    raw = orjson.dumps(event(seller, metadata={"a:b": "c:d", "a": '"quoted":', "\u00e9": 1}))
    status, body, _ = await post_raw(api, "/v1/events", raw.replace(b"\xc3\xa9", b"\\u00e9"))
    assert status == 201, body


@pytest.mark.parametrize("bad", [".", ".."])
async def test_dot_ids_are_422(api: Api, uid: Any, bad: str) -> None:
    status, body = await api.post("/v1/sellers", {"seller_id": bad, "name": "Toko"})
    assert (status, body["error"]["field"]) == (422, "seller_id"), body
    seller = uid("s")
    await api.seller(seller)
    status, body = await api.post("/v1/events", event(seller, order_id=bad))
    assert (status, body["error"]["field"]) == (422, "order_id"), body
    status, body = await api.post("/v1/events", event(bad))
    assert (status, body["error"]["field"]) == (422, "seller_id"), body
    status, body = await api.post("/v1/keys", {"role": "seller", "seller_id": bad})
    assert (status, body["error"]["field"]) == (422, "seller_id"), body
    for path in (f"/v1/sellers/{bad.replace('.', '%2E')}/balance",):
        status, body = await api.get(path)
        assert status in (404, 422), (path, body)


async def test_ids_with_dots_inside_are_still_ids(api: Api, uid: Any) -> None:
    seller = uid("s.")
    await api.seller(seller)
    status, body = await api.post("/v1/events", event(seller, order_id="..." + uid("o")))
    assert status == 201, body


def _huge_values(seller: str) -> list[tuple[str, bytes, bytes]]:
    """(where, path, raw body) with a 900 KB bad value in each field that is echoed."""
    cases = []
    for name in ("currency", "amount", "channel", "type", "occurred_at", "gateway", "status"):
        body = event(seller, **{name: HUGE})
        if name in ("gateway", "status"):
            body |= {"type": "payment.captured" if name == "gateway" else "order.status_noted"}
        cases.append((name, "/v1/events", orjson.dumps(body)))
    cases.append(("batch", "/v1/events", orjson.dumps({"events": [event(seller, currency=HUGE)]})))
    cases.append(
        (
            "channels",
            "/v1/sellers",
            orjson.dumps({"seller_id": "s1", "name": "Toko", "channels": {HUGE: "1"}}),
        )
    )
    cases.append(("nul key", "/v1/sellers", b'{"seller_id": "s", "%s\\u0000": 1}' % HUGE.encode()))
    cases.append(
        ("duplicate key", "/v1/keys", b'{"%s": 1, "%s": 2}' % ((HUGE[:400_000].encode(),) * 2))
    )
    return cases


async def test_an_error_never_echoes_more_than_a_prefix_of_a_huge_value(api: Api, uid: Any) -> None:
    seller = uid("s")
    await api.seller(seller)
    for where, path, raw in _huge_values(seller):
        status, _, answer = await post_raw(api, path, raw)
        assert status in (200, 422), (where, status, answer[:300])
        assert len(answer) < ANSWER_BYTES_MAX, (where, len(answer), answer[:300])


@pytest.mark.parametrize("bad", ["2026-1-5", "2026-01-5", "20260105", "2026-W01-1", " 2026-01-05"])
async def test_valid_until_is_yyyy_mm_dd_only(api: Api, uid: Any, bad: str) -> None:
    seller = uid("s")
    await api.seller(seller)
    cert = {"kind": "halal", "number": "ID-1", "valid_until": bad}
    status, body = await api.post(
        f"/v1/sellers/{seller}/curation", {"status": "verified", "certifications": [cert]}
    )
    assert (status, body["error"]["field"]) == (422, "certifications"), body
    status, body = await api.post(
        f"/v1/sellers/{seller}/curation",
        {"status": "verified", "certifications": [cert | {"valid_until": "2026-01-05"}]},
    )
    assert status == 201, body
