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
