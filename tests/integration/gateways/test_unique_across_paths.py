"""A gateway fact is recorded once whichever path brings it (issue 10, finding 4):
a refund by webhook and its copy through ``POST /v1/events``, in either order."""

from __future__ import annotations

import uuid

from tests.integration.gateways.conftest import Hooks, xendit_qr, xendit_refund


async def _paid(hooks: Hooks, uid) -> tuple[str, str, str]:
    seller, order, payment = uid("s"), uid("o"), uid("qrpy")
    await hooks.seller(seller)
    await hooks.place(seller, order, "10000")
    status, body = await hooks.xendit(xendit_qr(order, payment))
    assert status == 200 and body["results"][0]["status"] == "recorded", body
    return seller, order, payment


def _canonical_refund(order: str, refund_id: str) -> dict[str, object]:
    return {
        "idempotency_key": uuid.uuid4().hex,
        "type": "refund.issued",
        "occurred_at": "2026-11-30T12:00:00+08:00",
        "order_id": order,
        "channel": "qris",
        "amount": "4000",
        "gateway": "xendit",
        "gateway_ref": refund_id,
    }


async def test_a_webhook_refund_copied_through_the_api_is_refused(hooks: Hooks, uid) -> None:
    seller, order, payment = await _paid(hooks, uid)
    refund_id = uid("rfd")
    status, body = await hooks.xendit(xendit_refund(refund_id, payment, 4000))
    assert status == 200 and body["results"][0]["status"] == "recorded", body
    status, body = await hooks.post("/v1/events", _canonical_refund(order, refund_id))
    assert (status, body["error"]["code"]) == (422, "refund_exists"), body
    assert (await hooks.balance(seller))["refunded_total"] == "4000.00"


async def test_an_api_refund_notified_by_webhook_is_a_duplicate(hooks: Hooks, uid) -> None:
    seller, order, payment = await _paid(hooks, uid)
    refund_id = uid("rfd")
    status, body = await hooks.post("/v1/events", _canonical_refund(order, refund_id))
    assert status == 201, body
    head = await hooks.head()
    status, body = await hooks.xendit(xendit_refund(refund_id, payment, 4000))
    assert status == 200, body
    assert body["results"][0]["status"] == "duplicate", body
    assert body["results"][0]["reason"] == "refund_exists"
    assert await hooks.head() == head, "nothing recorded, not even a suspense entry"
    assert await hooks.suspense_for(f"xendit:refund:{refund_id}") == []
    assert (await hooks.balance(seller))["refunded_total"] == "4000.00"
