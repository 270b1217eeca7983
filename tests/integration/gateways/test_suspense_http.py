"""The suspense list over HTTP: listing, resolving, and what a resolved fact does later."""

from __future__ import annotations

import asyncio
import uuid

from ledger.app.ledger import Ledger
from ledger.domain.commands import parse_command
from tests.integration.gateways.conftest import (
    Hooks,
    midtrans_body,
    xendit_qr,
    xendit_refund,
)


async def _suspended_payment(hooks: Hooks, uid) -> tuple[str, str, dict]:
    """A QRIS settlement for an order not placed yet: (order_id, entry id, body)."""
    order, txn = uid("o"), uid("t")
    body = midtrans_body("midtrans_qris_settlement", order, txn)
    status, answer = await hooks.midtrans(body)
    assert status == 200, answer
    assert answer["results"][0]["status"] == "suspense"
    return order, answer["results"][0]["suspense_id"], body


async def test_resolve_after_the_order_is_placed_credits_once_and_closes(hooks: Hooks, uid) -> None:
    order, entry_id, body = await _suspended_payment(hooks, uid)
    seller = uid("s")
    await hooks.seller(seller)
    await hooks.place(seller, order, "275000.00")

    status, answer = await hooks.resolve(entry_id, "qris", order)

    assert status == 201, answer
    assert answer["status"] == "recorded"
    assert answer["suspense_id"] == entry_id
    assert entry_id not in {e["id"] for e in await hooks.suspense()}
    history = await hooks.history_types(order)
    assert history == ["order.placed", "payment.captured"]
    resolved = [e for e in (await hooks.order(order))["history"] if e["type"] == "payment.captured"]
    assert resolved[0]["position"] == answer["position"]
    # the gateway redelivers; the same target is resolved again: still once
    for _ in range(3):
        status, again = await hooks.midtrans(body)
        assert status == 200, again
        assert again["results"][0]["status"] == "duplicate"
    status, again = await hooks.resolve(entry_id, "qris", order)
    assert status == 200, again
    assert again["status"] == "duplicate"
    assert again["position"] == answer["position"]
    balance = await hooks.balance(seller)
    assert balance["captured_total"] == "275000.00"
    assert balance["pending"] == "0.00"


async def test_the_log_shows_the_resolution(hooks: Hooks, uid) -> None:
    order, entry_id, _ = await _suspended_payment(hooks, uid)
    seller = uid("s")
    await hooks.seller(seller)
    await hooks.place(seller, order, "275000.00")
    status, answer = await hooks.resolve(entry_id, "qris", order)
    assert status == 201, answer
    status, page = await hooks.get(f"/v1/events?after={answer['position'] - 1}&limit=2")
    assert status == 200, page
    applied, resolved = page["events"]
    assert applied["type"] == "payment.captured"
    assert resolved["type"] == "suspense.resolved"
    assert resolved["stream_id"] == entry_id
    assert (resolved["data"]["channel"], resolved["data"]["order_id"]) == ("qris", order)


async def test_resolving_onto_another_order_after_resolution_is_suspense_closed(
    hooks: Hooks, uid
) -> None:
    order, entry_id, _ = await _suspended_payment(hooks, uid)
    seller = uid("s")
    await hooks.seller(seller)
    await hooks.place(seller, order, "275000.00")
    await hooks.place(seller, uid("other"), "275000.00")
    assert (await hooks.resolve(entry_id, "qris", order))[0] == 201

    status, answer = await hooks.resolve(entry_id, "qris", uid("other"))

    assert status == 422, answer
    assert answer["error"]["code"] == "suspense_closed"
    assert answer["error"]["order_id"] == order
    assert (await hooks.balance(seller))["captured_total"] == "275000.00"


async def test_a_resolution_that_breaks_a_rule_is_422_and_the_entry_stays_open(
    hooks: Hooks, uid
) -> None:
    order, entry_id, _ = await _suspended_payment(hooks, uid)
    seller = uid("s")
    await hooks.seller(seller)
    small = uid("small")
    await hooks.place(seller, small, "1000.00")

    status, answer = await hooks.resolve(entry_id, "qris", small)
    assert status == 422, answer
    assert answer["error"]["code"] == "overpayment"
    status, answer = await hooks.resolve(entry_id, "qris", uid("nowhere"))
    assert status == 422, answer
    assert answer["error"]["code"] == "unknown_order"

    assert entry_id in {e["id"] for e in await hooks.suspense()}
    assert (await hooks.balance(seller))["captured_total"] == "0.00"
    # and once a fitting order exists, it resolves
    await hooks.place(seller, order, "275000.00")
    assert (await hooks.resolve(entry_id, "qris", order))[0] == 201


async def test_concurrent_resolutions_apply_once(hooks: Hooks, uid) -> None:
    order, entry_id, _ = await _suspended_payment(hooks, uid)
    seller = uid("s")
    await hooks.seller(seller)
    await hooks.place(seller, order, "275000.00")

    answers = await asyncio.gather(*(hooks.resolve(entry_id, "qris", order) for _ in range(5)))

    assert sorted(status for status, _ in answers) == [200, 200, 200, 200, 201]
    assert len({body["position"] for _, body in answers}) == 1
    assert (await hooks.balance(seller))["captured_total"] == "275000.00"


async def test_a_redelivery_after_the_order_is_placed_applies_and_closes(hooks: Hooks, uid) -> None:
    order, entry_id, body = await _suspended_payment(hooks, uid)
    seller = uid("s")
    await hooks.seller(seller)
    await hooks.place(seller, order, "275000.00")

    answers = await hooks.times(3, lambda: hooks.midtrans(body))

    assert sorted(a[1]["results"][0]["status"] for a in answers) == [
        "duplicate",
        "duplicate",
        "recorded",
    ]
    assert entry_id not in {e["id"] for e in await hooks.suspense()}
    assert (await hooks.balance(seller))["captured_total"] == "275000.00"
    status, again = await hooks.resolve(entry_id, "qris", order)
    assert (status, again["status"]) == (200, "duplicate")


async def test_a_refund_in_suspense_resolves_onto_the_order(hooks: Hooks, uid) -> None:
    seller, order, payment, refund_id = uid("s"), uid("o"), uid("qrpy"), uid("rfd")
    await hooks.seller(seller)
    await hooks.place(seller, order, "10000")
    # the refund arrives before the payment it refunds is known
    status, body = await hooks.xendit(xendit_refund(refund_id, payment, 3000))
    assert body["results"][0]["status"] == "suspense", body
    entry_id = body["results"][0]["suspense_id"]
    assert (await hooks.xendit(xendit_qr(order, payment)))[0] == 200

    status, answer = await hooks.resolve(entry_id, "qris", order)

    assert status == 201, answer
    balance = await hooks.balance(seller)
    assert (balance["captured_total"], balance["refunded_total"]) == ("10000.00", "3000.00")
    status, again = await hooks.xendit(xendit_refund(refund_id, payment, 3000))
    assert again["results"][0]["status"] == "duplicate"
    assert (await hooks.balance(seller))["refunded_total"] == "3000.00"


async def test_an_entry_whose_fact_got_in_by_a_race_is_closed_on_resolve(
    hooks: Hooks, gw_ledger: Ledger, uid
) -> None:
    """A redelivery recorded the fact while its suspense entry was being committed."""
    seller, order, txn = uid("s"), uid("o"), uid("t")
    await hooks.seller(seller)
    await hooks.place(seller, order, "275000.00")
    raw = {
        "idempotency_key": f"midtrans:payment:{txn}",
        "type": "payment.captured",
        "occurred_at": "2026-11-30T10:05:00+07:00",
        "order_id": order,
        "amount": "275000.00",
        "currency": "IDR",
        "gateway": "midtrans",
        "gateway_ref": txn,
    }
    command = parse_command(raw, gateway_facts=True)
    suspended = await gw_ledger.record_suspense(
        command, gateway="midtrans", reason="unknown_order", raw=raw
    )
    await gw_ledger.record(await gw_ledger.resolve_order(command))
    entry_id = str(suspended.stream_id)
    assert entry_id in {e["id"] for e in await hooks.suspense()}

    status, answer = await hooks.resolve(entry_id, "qris", order)

    assert status == 200, answer
    assert answer["status"] == "duplicate"
    assert entry_id not in {e["id"] for e in await hooks.suspense()}
    assert (await hooks.balance(seller))["captured_total"] == "275000.00"


async def test_unknown_and_malformed_ids_are_404(hooks: Hooks, uid) -> None:
    for entry_id in (str(uuid.uuid4()), "not-a-uuid"):
        status, answer = await hooks.resolve(entry_id, "qris", uid("o"))
        assert status == 404, answer
        assert answer["error"]["code"] == "not_found"


async def test_a_bad_resolve_body_is_4xx(hooks: Hooks, uid) -> None:
    _, entry_id, _ = await _suspended_payment(hooks, uid)
    path = f"/v1/suspense/{entry_id}/resolve"
    for body in (
        {},
        {"channel": "qris"},
        {"channel": "mars", "order_id": "o"},
        [],
        "x",
        {"channel": "qris", "order_id": "bad/id"},
    ):
        status, answer = await hooks.post(path, body)
        assert status in (400, 422), (body, answer)
    resp = await hooks.client.post(path, data=b"{nope", headers=hooks.admin)
    assert resp.status == 400


async def test_roles(hooks: Hooks, uid) -> None:
    order, entry_id, _ = await _suspended_payment(hooks, uid)
    auditor = await hooks.key("auditor")
    gateway = await hooks.key("gateway")
    seller = uid("s")
    await hooks.seller(seller)
    seller_key = await hooks.key("seller", seller)

    status, body = await hooks.get("/v1/suspense", headers=auditor)
    assert status == 200 and entry_id in {e["id"] for e in body["suspense"]}
    for headers in (gateway, seller_key):
        assert (await hooks.get("/v1/suspense", headers=headers))[0] == 403
    for headers in (auditor, gateway, seller_key):
        assert (await hooks.resolve(entry_id, "qris", order, headers=headers))[0] == 403
    resp = await hooks.client.get("/v1/suspense")
    assert resp.status == 401
    resp = await hooks.client.post(
        f"/v1/suspense/{entry_id}/resolve", json={"channel": "qris", "order_id": order}
    )
    assert resp.status == 401


async def test_list_limit(hooks: Hooks, uid) -> None:
    await _suspended_payment(hooks, uid)
    await _suspended_payment(hooks, uid)
    status, body = await hooks.get("/v1/suspense?limit=1")
    assert status == 200 and len(body["suspense"]) == 1
    for bad in ("0", "1001", "x"):
        status, body = await hooks.get(f"/v1/suspense?limit={bad}")
        assert status == 422, body


async def test_list_pages_by_position(hooks: Hooks, uid) -> None:
    """Every open entry is reachable by paging with ``after`` = the last page's ``next_after``."""
    mine = {(await _suspended_payment(hooks, uid))[1] for _ in range(3)}
    seen: list[dict] = []
    after = 0
    for _ in range(10_000):
        status, body = await hooks.get(f"/v1/suspense?limit=2&after={after}")
        assert status == 200, body
        assert all(e["position"] > after for e in body["suspense"])
        seen.extend(body["suspense"])
        if body["next_after"] is None:
            break
        after = body["next_after"]
    positions = [e["position"] for e in seen]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert mine <= {e["id"] for e in seen}
    status, body = await hooks.get("/v1/suspense?after=x")
    assert status == 422, body
