"""Bad input (CONTRACT section 2, "Errors"): always a JSON error with a code, never a 5xx."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest

from ledger.store import LedgerStore

AT = "2026-11-30T10:00:00+08:00"
POSTS = ["/v1/events", "/v1/sellers", "/v1/sellers/{seller}/curation", "/v1/keys"]

#: Raw bodies no endpoint can read as its object.
GARBAGE: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("null", b"null"),
    ("array", b"[]"),
    ("array of one", b"[{}]"),
    ("number", b"123"),
    ("float", b"1.5"),
    ("string", b'"order.placed"'),
    ("true", b"true"),
    ("non-utf8", b"\xff\xfe\xfa\x00\x81"),
    ("latin-1 object", '{"name": "Toko Daeng Ré"}'.encode("latin-1")),
    ("utf-16", '{"role": "admin"}'.encode("utf-16")),
    ("bom", b'\xef\xbb\xbf{"role": "admin"}'),
    ("truncated", b'{"type": "order.placed", "amount": "10'),
    ("trailing garbage", b'{"role": "admin"} x'),
    ("two objects", b'{"role": "admin"}{"role": "admin"}'),
    ("nan", b'{"amount": NaN, "role": NaN, "status": NaN}'),
    ("lone surrogate", b'{"name": "\\ud800", "role": "\\ud800"}'),
    ("nul byte", b'{"role": "admin\x00"}'),
    ("deep arrays", b"[" * 100_000 + b"]" * 100_000),
    ("deep objects", b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
    ("deep events", b'{"events": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"),
    ("huge string", b'{"name": "' + b"a" * 900_000 + b'"}'),
    ("huge key", b'{"' + b"k" * 900_000 + b'": 1}'),
    ("huge number", b'{"amount": ' + b"9" * 5_000 + b"}"),
    ("many keys", b"{" + b",".join(b'"k%d": %d' % (i, i) for i in range(40_000)) + b"}"),
    ("empty object", b"{}"),
    ("events not a list", b'{"events": 5}'),
    ("events of garbage", b'{"events": [null, 1, "x", [], {}]}'),
]


async def answer(client: Any, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    """The status and the JSON body, asserting the error contract on any 4xx/5xx."""
    if isinstance(kwargs.get("data"), bytes) and len(kwargs["data"]) > 1024 * 1024:
        kwargs["data"] = io.BytesIO(kwargs["data"])  # aiohttp warns on large raw bytes
    resp = await client.request(method, path, **kwargs)
    text = await resp.text()
    assert resp.status < 500, f"{method} {path}: {resp.status} {text[:300]}"
    assert resp.content_type == "application/json", f"{method} {path}: {resp.content_type}"
    body = json.loads(text)
    if resp.status >= 400:
        assert isinstance(body, dict) and set(body) == {"error"}, body
        error = body["error"]
        assert isinstance(error.get("code"), str) and error["code"], body
        assert isinstance(error.get("message"), str) and error["message"], body
    return resp.status, body


@pytest.fixture(scope="module")
async def full(settings, ledger, store, pool) -> Any:
    """The app as ``omniledger serve`` wires it: core routes plus gateways, reads, audit."""
    from aiohttp.test_utils import TestClient, TestServer

    from ledger.api.http import create_app
    from ledger.ops import bootstrap

    await bootstrap.prepare(settings, pool)
    app = create_app(settings, ledger, store, extensions=bootstrap.extensions(settings, pool))
    async with TestClient(TestServer(app)) as full_client:
        yield full_client


@pytest.fixture(scope="module")
async def seller(client, admin) -> str:
    """One registered seller shared by this module's tests (they only add to it)."""
    seller = "s-" + uuid.uuid4().hex[:8]
    status, body = await answer(
        client, "POST", "/v1/sellers", json={"seller_id": seller, "name": "Toko"}, headers=admin
    )
    assert status == 201, body
    return seller


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize(("name", "raw"), GARBAGE, ids=[n for n, _ in GARBAGE])
@pytest.mark.parametrize("content_type", ["application/json", None])
async def test_garbage_bodies_get_a_json_4xx(
    client, admin, store, seller, path, name, raw, content_type
):
    headers = dict(admin)
    if content_type:
        headers["Content-Type"] = content_type
    head = await store.head()
    status, body = await answer(
        client, "POST", path.format(seller=seller), data=raw, headers=headers
    )
    if name == "events of garbage" and path == "/v1/events":
        # a batch answers per event: each of these is rejected on its own
        assert status == 200, body
        assert [r["status"] for r in body["results"]] == ["rejected"] * 5, body
    else:
        assert 400 <= status < 500, (name, status, body)
    if name == "empty" or name == "non-utf8" or name == "truncated":
        assert status == 400 and body["error"]["code"] == "bad_request", body
    assert await store.head() == head


@pytest.mark.parametrize("path", POSTS)
async def test_a_body_over_one_mib_is_413_json(client, admin, store, seller, path):
    head = await store.head()
    raw = b'{"name": "' + b"a" * (1024 * 1024) + b'"}'
    status, body = await answer(
        client, "POST", path.format(seller=seller), data=raw,
        headers=admin | {"Content-Type": "application/json"},
    )  # fmt: skip
    assert status == 413, body
    assert body["error"]["code"] == "payload_too_large"
    assert await store.head() == head


async def test_a_body_of_exactly_one_mib_is_read(client, admin, uid):
    """The limit is "over 1 MiB": a 1 MiB body is read (and refused for its content)."""
    prefix, suffix = b'{"role": "auditor", "pad": "', b'"}'
    raw = prefix + b"a" * (1024 * 1024 - len(prefix) - len(suffix)) + suffix
    assert len(raw) == 1024 * 1024
    status, body = await answer(
        client, "POST", "/v1/keys", data=raw, headers=admin | {"Content-Type": "application/json"}
    )
    assert status == 201, body


#: Values of the wrong type or shape, substituted into each field of a valid body.
WRONG: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    2**70,
    "",
    " ",
    "x" * 10_000,
    "a\u0000b",
    "\u202e\u0645\U0001f4b0",
    [],
    [1, "a"],
    {},
    {"a": {"b": [1]}},
]

EVENT_BODIES: dict[str, dict[str, Any]] = {
    "order.placed": {"seller_id": "{seller}", "order_id": "{o}", "channel": "qris",
                     "amount": "1000"},
    "order.cancelled": {"order_id": "{o}", "channel": "qris"},
    "payment.captured": {"order_id": "{o}", "channel": "qris", "amount": "10",
                         "gateway": "midtrans", "gateway_ref": "{p}", "fee": "1"},
    "payment.failed": {"order_id": "{o}", "channel": "qris", "gateway": "midtrans",
                       "gateway_ref": "{p}", "reason": "deny"},
    "refund.issued": {"order_id": "{o}", "channel": "qris", "amount": "10",
                      "gateway": "midtrans", "gateway_ref": "{p}"},
    "payout.sent": {"seller_id": "{seller}", "amount": "1", "reference": "{p}"},
}  # fmt: skip


def fill(template: dict[str, Any], seller: str, order_id: str) -> dict[str, Any]:
    subs = {"{seller}": seller, "{o}": order_id, "{p}": uuid.uuid4().hex}
    return {k: subs.get(v, v) if isinstance(v, str) else v for k, v in template.items()}


async def probe(
    client: Any, path: str, body: Any, headers: dict[str, str], allowed: set[int]
) -> str | None:
    """One request; a description of what is wrong with its answer, or None."""
    try:
        status, out = await answer(client, "POST", path, json=body, headers=headers)
    except AssertionError as e:
        return str(e).splitlines()[0][:200]
    if status not in allowed:
        return f"{path}: unexpected {status} {str(out)[:200]}"
    return None


@pytest.mark.parametrize("kind", sorted(EVENT_BODIES))
async def test_wrong_types_in_every_event_field_are_never_5xx(
    api, client, admin, seller, uid, kind
):
    order_id = uid("o")
    await api.place(seller, order_id, "1000000")
    await api.capture(order_id, "500000")
    common = ["idempotency_key", "type", "occurred_at", "currency", "metadata"]
    problems: list[str] = []
    for name in [*EVENT_BODIES[kind], *common]:
        for value in WRONG:
            body = {"idempotency_key": uuid.uuid4().hex, "type": kind, "occurred_at": AT}
            body |= fill(EVENT_BODIES[kind], seller, order_id) | {name: value}
            problem = await probe(client, "/v1/events", body, admin, {200, 201, 409, 422})
            if problem:
                problems.append(f"{name}={value!r:.40}: {problem}")
            # the same garbage inside a batch: 200 with a per-event answer
            body["idempotency_key"] = uuid.uuid4().hex if name != "idempotency_key" else value
            status, out = await answer(
                client, "POST", "/v1/events", json={"events": [body]}, headers=admin
            )
            result = out["results"][0] if status == 200 and len(out["results"]) == 1 else out
            if status != 200 or result.get("status") not in ("recorded", "duplicate", "rejected"):
                problems.append(f"batch {name}={value!r:.40}: {status} {result}")
            elif result["status"] == "rejected" and result["error"]["code"] == "unavailable":
                problems.append(f"batch {name}={value!r:.40}: {result}")
    assert not problems, "\n".join(problems)


async def test_wrong_types_in_every_seller_field_are_never_5xx(client, admin, uid):
    base = {"name": "Toko", "district": "Tamalate", "nib": "1234567890123",
            "channels": {"shopee": "727720655"}}  # fmt: skip
    problems: list[str] = []
    for name in ["seller_id", *base]:
        for value in WRONG:
            body = {"seller_id": uid("s") + uuid.uuid4().hex[:6]} | base | {name: value}
            body["channels"] = body["channels"] if name == "channels" else {"shopee": uid("sh")}
            problem = await probe(client, "/v1/sellers", body, admin, {201, 409, 422})
            if problem:
                problems.append(f"{name}={value!r:.40}: {problem}")
    for value in WRONG:
        body = {"seller_id": uid("s") + uuid.uuid4().hex[:6], "name": "Toko",
                "channels": {"shopee": value}}  # fmt: skip
        problem = await probe(client, "/v1/sellers", body, admin, {201, 422})
        if problem:
            problems.append(f"channels.shopee={value!r:.40}: {problem}")
    body = {"seller_id": uid("s"), "name": "Toko", "channels": {"ebay": "1"}}
    status, out = await answer(client, "POST", "/v1/sellers", json=body, headers=admin)
    assert (status, out["error"]["field"]) == (422, "channels"), out
    assert not problems, "\n".join(problems)


async def test_wrong_types_in_every_curation_field_are_never_5xx(client, admin, seller):
    cert = {"kind": "halal", "number": "ID-1", "valid_until": "2030-01-01"}
    for name in ["status", "certifications"]:
        for value in WRONG:
            body = {"status": "verified", "certifications": [cert]} | {name: value}
            status, out = await answer(
                client, "POST", f"/v1/sellers/{seller}/curation", json=body, headers=admin
            )
            assert status in (201, 422), (name, value, out)
    for name in cert:
        for value in WRONG:
            body = {"status": "verified", "certifications": [cert | {name: value}]}
            status, out = await answer(
                client, "POST", f"/v1/sellers/{seller}/curation", json=body, headers=admin
            )
            assert status in (201, 422), (name, value, out)
    for bad in ("2030-13-01", "01-01-2030", "tomorrow", "2030-01-01T00:00:00Z"):
        body = {"status": "verified", "certifications": [cert | {"valid_until": bad}]}
        status, out = await answer(
            client, "POST", f"/v1/sellers/{seller}/curation", json=body, headers=admin
        )
        assert (status, out["error"]["field"]) == (422, "certifications"), (bad, out)


async def test_curation_of_an_unknown_or_malformed_seller_is_a_4xx(client, admin, uid):
    body = {"status": "verified", "certifications": []}
    status, out = await answer(
        client, "POST", f"/v1/sellers/{uid('ghost')}/curation", json=body, headers=admin
    )
    assert (status, out["error"]["code"]) == (422, "unknown_seller"), out
    for bad in ("a%20b", "x" * 65, "%C3%A9", "a%00b"):
        status, out = await answer(
            client, "POST", f"/v1/sellers/{bad}/curation", json=body, headers=admin
        )
        assert 400 <= status < 500, (bad, out)


async def test_wrong_types_in_every_key_field_are_never_5xx(client, admin, seller):
    for name in ["role", "seller_id", "gateway"]:
        for value in WRONG:
            body = {"role": "seller", "seller_id": seller} | {name: value}
            status, out = await answer(client, "POST", "/v1/keys", json=body, headers=admin)
            assert status in (201, 422), (name, value, out)
    for body, field in [
        ({"role": "root"}, "role"),
        ({"role": "seller"}, "seller_id"),
        ({"role": "seller", "seller_id": "a b"}, "seller_id"),
        ({"role": "gateway", "seller_id": "a b"}, "seller_id"),
        ({"role": "auditor", "seller_id": seller}, "seller_id"),
        ({"role": "gateway", "gateway": 7}, "gateway"),
    ]:
        status, out = await answer(client, "POST", "/v1/keys", json=body, headers=admin)
        assert (status, out["error"].get("field")) == (422, field), (body, out)


@pytest.mark.parametrize(
    "query",
    ["after=abc", "after=-1", "after=1.5", "after=1e3", "after=" + "9" * 40, "limit=0",
     "limit=1001", "limit=-5", "limit=x", "after=%00",
     # what Python's int() would take: a sign, spaces, underscores, other scripts' digits
     "after=%2B3", "limit=%201", "after=1_0", "after=%EF%BC%91", "limit=%D9%A3"],
)  # fmt: skip
@pytest.mark.parametrize("path", ["/v1/events", "/v1/suspense"])
async def test_bad_log_queries_are_422(full, admin, query, path):
    status, out = await answer(full, "GET", f"{path}?{query}", headers=admin)
    assert status == 422, (query, out)


@pytest.mark.parametrize("path", ["/v1/events", "/v1/suspense"])
async def test_an_empty_page_parameter_means_its_default(full, admin, path):
    status, out = await answer(full, "GET", f"{path}?after=&limit=", headers=admin)
    assert status == 200, out


@pytest.mark.parametrize(
    "day", ["20261130", "2026-W49-1", "2026-11-31", "0001-01-01", "9999-12-31", "2026-11-3",
            "2026-11-30T00:00:00Z", ""],
)  # fmt: skip
async def test_days_are_yyyy_mm_dd_within_the_ledger_s_years(full, admin, seller, day):
    for path in (f"/v1/sellers/{seller}/recaps?from={day}&to=2026-12-01",
                 f"/v1/recaps/daily?date={day}"):  # fmt: skip
        status, out = await answer(full, "GET", path, headers=admin)
        assert status == 422, (path, out)
    status, out = await answer(
        full, "POST", f"/v1/reconciliations?gateway=midtrans&date={day}",
        data=b"Order ID,Amount\n", headers=admin,
    )  # fmt: skip
    assert status == 422, out


async def test_a_report_row_at_the_edge_of_the_calendar_is_a_4xx(full, admin):
    report = (
        b"Transaction ID,Order ID,Transaction Type,Transaction Status,Amount,Fee,"
        b"Transaction Time\n"
        b"t1,o1,settlement,settlement,1000.00,0,0001-01-01 00:00:00\n"
    )
    status, out = await answer(
        full, "POST", "/v1/reconciliations?gateway=midtrans&date=2026-11-30",
        data=report, headers=admin,
    )  # fmt: skip
    assert status == 422, out


async def test_an_authorization_header_that_is_not_utf8_is_401(client):
    status, out = await answer(
        client, "GET", "/v1/events", headers={"Authorization": "Bearer \xff\xfe"}
    )
    assert (status, out["error"]["code"]) == (401, "unauthorized"), out


async def test_a_seller_key_needs_a_registered_seller(client, admin, uid):
    status, out = await answer(
        client, "POST", "/v1/keys", json={"role": "seller", "seller_id": uid("nobody")},
        headers=admin,
    )  # fmt: skip
    assert (status, out["error"]["code"], out["error"]["field"]) == (
        422,
        "unknown_seller",
        "seller_id",
    ), out


@pytest.mark.parametrize(
    "channels", [[], "shopee", {"shopee": " "}, {"shopee": "a b"}, {"shopee": "\n"}, {"shopee": ""}]
)
async def test_channel_accounts_are_printable_ids(client, admin, uid, channels):
    status, out = await answer(
        client, "POST", "/v1/sellers",
        json={"seller_id": uid("s"), "name": "Toko", "channels": channels}, headers=admin,
    )  # fmt: skip
    assert (status, out["error"]["field"]) == (422, "channels"), out


@pytest.mark.parametrize(
    "query", ["currency=XXX", "currency=", "as_of=yesterday", "as_of=2026-11-30T10:00:00",
              "as_of=2026-11-30"],
)  # fmt: skip
async def test_bad_balance_queries_are_4xx(client, admin, seller, query):
    status, out = await answer(
        client, "GET", f"/v1/sellers/{seller}/balance?{query}", headers=admin
    )
    assert 400 <= status < 500, (query, out)


@pytest.mark.parametrize(
    "path",
    ["/v1/orders/qris/a%20b", "/v1/orders/qris/" + "x" * 65, "/v1/orders/%00/o",
     "/v1/orders/" + "c" * 5000 + "/o", "/v1/sellers/a%20b/balance", "/v1/sellers/%00/balance",
     "/v1/orders/qris", "/v1/nope", "/v1/sellers/x/balance/extra"],
)  # fmt: skip
async def test_malformed_paths_are_json_4xx(client, admin, path):
    status, out = await answer(client, "GET", path, headers=admin)
    assert 400 <= status < 500, (path, out)


@pytest.mark.parametrize(
    ("method", "path"),
    [("DELETE", "/v1/events"), ("PUT", "/v1/sellers"), ("GET", "/v1/keys"),
     ("PATCH", "/v1/sellers/x/curation"), ("POST", "/healthz")],
)  # fmt: skip
async def test_wrong_methods_are_json_405(client, admin, method, path):
    status, out = await answer(client, method, path, headers=admin)
    assert status == 405, out
    assert out["error"]["code"] == "method_not_allowed"
    resp = await client.request(method, path, headers=admin)
    assert resp.headers.get("Allow"), "a 405 names the methods that are allowed (RFC 9110)"


async def test_a_nul_in_an_idempotency_key_does_not_sink_the_others_of_its_batch(
    api, client, admin, store: LedgerStore, seller, uid
):
    """One client's odd key must not fail the group commit it shares with other events."""
    head, _ = await store.head()
    good = [
        {"idempotency_key": uuid.uuid4().hex, "type": "order.placed", "occurred_at": AT,
         "seller_id": seller, "order_id": uid(f"o{i}"), "channel": "qris", "amount": "10"}
        for i in range(9)
    ]  # fmt: skip
    bad = good[0] | {"idempotency_key": "nul\u0000key", "order_id": uid("bad")}
    status, out = await answer(
        client, "POST", "/v1/events", json={"events": [*good, bad]}, headers=admin
    )
    assert status == 200, out
    assert [r["status"] for r in out["results"][:9]] == ["recorded"] * 9, out["results"]
    assert out["results"][9]["status"] in ("recorded", "rejected"), out["results"][9]
    assert (await store.head())[0] >= head + 9


async def test_a_nul_in_an_idempotency_key_is_a_4xx_not_a_5xx(client, admin, seller, uid):
    body = {
        "idempotency_key": "nul\u0000key",
        "type": "order.placed",
        "occurred_at": AT,
        "seller_id": seller,
        "order_id": uid("o"),
        "channel": "qris",
        "amount": "10",
    }
    status, out = await answer(client, "POST", "/v1/events", json=body, headers=admin)
    assert status in (201, 422), out


async def test_a_nul_in_a_channel_account_is_a_4xx_not_a_5xx(client, admin, uid):
    body = {"seller_id": uid("s"), "name": "Toko", "channels": {"shopee": "72772\u00000655"}}
    status, out = await answer(client, "POST", "/v1/sellers", json=body, headers=admin)
    assert status in (201, 422), out


async def test_totals_past_64_bits_are_a_4xx_and_sink_no_batch_mate(api, client, admin, store, uid):
    """Each amount fits 64 bits, but a seller's running total must too: the
    event that would overflow it is refused as input, not answered 503 (a retry
    could never succeed), and the other events of its batch are recorded."""
    seller = uid("s")
    await api.seller(seller)
    largest = "92233720368547758.07"  # 2**63 - 1 minor units
    await api.place(seller, uid("o1"), largest)
    items = [
        {"idempotency_key": uuid.uuid4().hex, "type": "order.placed", "occurred_at": AT,
         "seller_id": seller, "order_id": uid("o2"), "channel": "qris", "amount": largest},
        {"idempotency_key": uuid.uuid4().hex, "type": "order.placed", "occurred_at": AT,
         "seller_id": uid("other"), "order_id": uid("o3"), "channel": "qris", "amount": "1"},
    ]  # fmt: skip
    await api.seller(uid("other"))
    head, _ = await store.head()
    status, out = await answer(client, "POST", "/v1/events", json=items[0], headers=admin)
    assert 400 <= status < 500, out
    assert (await store.head())[0] == head
    items[0]["idempotency_key"] = uuid.uuid4().hex
    status, out = await answer(client, "POST", "/v1/events", json={"events": items},
                               headers=admin)  # fmt: skip
    assert status == 200, out
    assert out["results"][1]["status"] == "recorded", out["results"]
    assert out["results"][0]["status"] == "rejected", out["results"]
    assert out["results"][0]["error"]["code"] != "unavailable", out["results"]
    assert (await api.balance(seller))["pending"] == largest


async def test_timestamps_past_the_calendar_edge_are_refused_as_input(
    api, client, admin, store, seller, uid
):
    """Timestamps must lie between 2000-01-01 and 2999-12-31 as instants (CHANGELOG
    0.1.0): year 1 at +14:00 (year 0 in UTC) and year 9999 at -14:00 (year 10000)
    are refused as input, 422 naming ``occurred_at``, never a 503 that a retry
    could not fix, and nothing is recorded."""
    head = await store.head()
    for at in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
               "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"):  # fmt: skip
        body = {"idempotency_key": uuid.uuid4().hex, "type": "order.placed", "occurred_at": at,
                "seller_id": seller, "order_id": uid("o") + uuid.uuid4().hex[:6],
                "channel": "qris", "amount": "1"}  # fmt: skip
        status, out = await answer(client, "POST", "/v1/events", json=body, headers=admin)
        assert status == 422, (at, out)
        assert (out["error"]["code"], out["error"].get("field")) == (
            "validation_error", "occurred_at"
        ), (at, out)  # fmt: skip
    assert await store.head() == head


async def test_an_edge_timestamp_does_not_sink_its_batch_mates(api, client, admin, seller, uid):
    good = {
        "idempotency_key": uuid.uuid4().hex,
        "type": "order.placed",
        "occurred_at": AT,
        "seller_id": seller,
        "order_id": uid("good"),
        "channel": "qris",
        "amount": "1",
    }
    edge = good | {"idempotency_key": uuid.uuid4().hex, "order_id": uid("edge"),
                   "occurred_at": "0001-01-01T00:00:00+14:00"}  # fmt: skip
    status, out = await answer(
        client, "POST", "/v1/events", json={"events": [good, edge]}, headers=admin
    )
    assert status == 200, out
    assert out["results"][0]["status"] == "recorded", out["results"]
    assert out["results"][1]["status"] == "rejected", out["results"]
    assert out["results"][1]["error"]["code"] == "validation_error", out["results"]


async def test_a_chunked_body_over_one_mib_is_413_json(client, admin, store):
    async def chunks() -> Any:
        yield b'{"events": ["'
        for _ in range(20):
            yield b"a" * 65536
        yield b'"]}'

    head = await store.head()
    resp = await client.post(
        "/v1/events", data=chunks(), headers=admin | {"Content-Type": "application/json"}
    )
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "payload_too_large"
    assert await store.head() == head
