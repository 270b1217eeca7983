"""``/metrics`` counts each gateway's facts by outcome (issue 13): an operator sees
recorded, duplicate, suspense and refused notifications per gateway."""

from __future__ import annotations

import re

from tests.integration.gateways.conftest import Hooks, xendit_qr


async def _count(hooks: Hooks, gateway: str, outcome: str) -> float:
    resp = await hooks.client.get("/metrics")
    text = await resp.text()
    found = re.search(
        rf'omniledger_gateway_facts_total{{gateway="{gateway}",outcome="{outcome}"}} (\S+)', text
    )
    return float(found.group(1)) if found else 0.0


async def test_webhook_outcomes_are_counted_per_gateway(hooks: Hooks, uid) -> None:
    before = {o: await _count(hooks, "xendit", o) for o in ("recorded", "duplicate", "suspense",
                                                             "refused")}  # fmt: skip
    seller, order = uid("s"), uid("o")
    await hooks.seller(seller)
    await hooks.place(seller, order, "10000")
    body = xendit_qr(order, uid("qrpy"))
    assert (await hooks.xendit(body))[0] == 200
    assert (await hooks.xendit(body))[0] == 200  # the same again: a duplicate
    assert (await hooks.xendit(xendit_qr(uid("ghost-order"), uid("qrpy"))))[0] == 200  # suspense
    status, _ = await hooks.xendit(body, token="wrong")
    assert status == 401
    after = {o: await _count(hooks, "xendit", o) for o in before}
    assert {o: after[o] - before[o] for o in before} == {
        "recorded": 1, "duplicate": 1, "suspense": 1, "refused": 1,
    }  # fmt: skip
