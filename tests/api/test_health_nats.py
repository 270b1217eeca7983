"""``/healthz`` says ``degraded`` while NATS is unreachable (issue 13, finding 4):
writes succeed then, but nothing reaches the stream or the read models."""

from __future__ import annotations

import dataclasses
import socket

from aiohttp.test_utils import TestClient, TestServer

from ledger.api.http import create_app


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _health(settings, ledger, store, nats_url: str):
    app = create_app(dataclasses.replace(settings, nats_url=nats_url), ledger, store)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/healthz")
        return resp.status, await resp.json()


async def test_nats_away_is_degraded_and_named(settings, ledger, store, nats_url) -> None:
    port = _closed_port()
    status, body = await _health(settings, ledger, store, f"nats://127.0.0.1:{port}")
    assert status == 200, "writes still work: a load balancer keeps sending them"
    assert body["status"] == "degraded" and body["nats"] == "unreachable"
    assert any(p.startswith("nats: unreachable at 127.0.0.1:") for p in body["problems"]), body
    # one server of a cluster's list that answers is enough
    status, body = await _health(settings, ledger, store, f"nats://127.0.0.1:{port},{nats_url}")
    assert (status, body["nats"]) == (200, "ok"), body
    assert not any(p.startswith("nats:") for p in body["problems"])


async def test_metrics_show_the_writer_and_the_pool(api, uid) -> None:
    """Issue 13: /metrics had no group-commit sizes, writer queue depth or pool use."""

    async def scrape() -> dict[str, float]:
        resp = await api.client.get("/metrics")
        found = {}
        for line in (await resp.text()).splitlines():
            name, _, value = line.partition(" ")
            if name.startswith(("omniledger_writer_", "omniledger_db_pool_")):
                found[name] = float(value)
        return found

    before = await scrape()
    seller = uid("s")
    await api.seller(seller)
    for i in range(3):
        await api.place(seller, uid(f"o{i}"), "100")
    after = await scrape()
    assert after["omniledger_writer_events"] - before["omniledger_writer_events"] == 4
    assert after["omniledger_writer_decisions"] - before["omniledger_writer_decisions"] >= 4
    assert after["omniledger_writer_batches"] > before["omniledger_writer_batches"]
    assert after["omniledger_writer_queue_depth"] == 0
    assert after["omniledger_db_pool_size"] >= after["omniledger_db_pool_in_use"] >= 0
