"""Latency of ``POST /v1/gateways/midtrans/notifications``: a script, not a test.

    .venv/bin/python -m tests.integration.gateways.bench_midtrans [--count 500]

Serves the app (core + ``GatewayRoutes``) on a loopback TCP port against a
fresh PostgreSQL database (the one on 127.0.0.1:5432 when it listens, else
``OMNILEDGER_TEST_DATABASE_URL``, else an embedded server), places ``count``
QRIS orders, then sends one signed ``settlement`` per order, one after the
other over a keep-alive connection, and prints latency percentiles of the
first deliveries and of a second round of redeliveries (duplicates). The
database is dropped at the end. Timed in the client, so it includes HTTP.
Midtrans' Get Status API is the tests' local stand-in, so a first delivery
includes one loopback status call (a redelivery of a recorded fact makes none).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web

from gateways.routes import GatewayRoutes
from ledger.api.http import create_app, install_admin_key
from ledger.app.ledger import Ledger
from ledger.ops.settings import Settings
from ledger.store import LedgerStore
from tests.integration.gateways.conftest import (
    MIDTRANS,
    MIDTRANS_SERVER_KEY,
    midtrans_body,
)
from tests.integration.gateways.midtrans_standin import MidtransStandIn
from tests.support import servers

ADMIN_KEY = "bench-admin-key"


@contextlib.contextmanager
def admin_dsn() -> Iterator[str]:
    import os

    explicit = os.environ.get("OMNILEDGER_TEST_DATABASE_URL")
    if explicit:
        yield explicit
        return
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=0.5).close()
        yield "postgresql://postgres@127.0.0.1:5432/postgres"
    except OSError:
        with tempfile.TemporaryDirectory() as folder:
            with servers.embedded_postgres(Path(folder) / "pg") as dsn:
                yield dsn


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def report(name: str, samples_s: list[float], answers: dict[str, int]) -> None:
    ms = [s * 1000 for s in samples_s]
    print(
        f"{name}: n={len(ms)} p50={percentile(ms, 0.50):.2f}ms p90={percentile(ms, 0.90):.2f}ms"
        f" p99={percentile(ms, 0.99):.2f}ms max={max(ms):.2f}ms mean={statistics.mean(ms):.2f}ms"
        f" results={answers}"
    )


async def bench(dsn_admin: str, count: int) -> None:
    name = f"omniledger_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn_admin)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = servers.with_database(dsn_admin, name)
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=10)
    assert pool is not None
    try:
        store = LedgerStore(pool)
        await store.migrate()
        await install_admin_key(store, ADMIN_KEY)
        ledger = Ledger(store)
        ledger.start()
        standin = MidtransStandIn(MIDTRANS_SERVER_KEY)
        await standin.start()
        settings = Settings(
            database_url=dsn,
            admin_key=ADMIN_KEY,
            midtrans_server_key=MIDTRANS_SERVER_KEY,
            midtrans_api_url=standin.url,
        )
        app = create_app(settings, ledger, store, extensions=[GatewayRoutes()])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
        tag = uuid.uuid4().hex[:6]
        orders = [f"bench-{tag}-{i}" for i in range(count)]
        async with aiohttp.ClientSession(base) as http:
            seller = f"seller-{tag}"
            resp = await http.post(
                "/v1/sellers", json={"seller_id": seller, "name": "Bench"}, headers=auth
            )
            assert resp.status == 201, await resp.text()
            for start in range(0, count, 1000):
                events = [
                    {
                        "idempotency_key": f"place:{order}",
                        "type": "order.placed",
                        "occurred_at": "2026-11-30T10:00:00+08:00",
                        "seller_id": seller,
                        "order_id": order,
                        "channel": "qris",
                        "amount": "275000.00",
                    }
                    for order in orders[start : start + 1000]
                ]
                resp = await http.post("/v1/events", json={"events": events}, headers=auth)
                assert resp.status == 200, await resp.text()
            sent = [midtrans_body("midtrans_qris_settlement", o, f"txn-{o}") for o in orders]
            for body in sent:
                standin.knows(body)  # Midtrans knows what it sends
            bodies = [json.dumps(body).encode() for body in sent]
            for label in ("first delivery", "redelivery"):
                samples: list[float] = []
                answers: dict[str, int] = {}
                for body in bodies:
                    started = time.perf_counter()
                    resp = await http.post(MIDTRANS, data=body)
                    payload = await resp.json()
                    samples.append(time.perf_counter() - started)
                    assert resp.status == 200, payload
                    status = payload["results"][0]["status"]
                    answers[status] = answers.get(status, 0) + 1
                report(label, samples, answers)
            # baseline: the same captures posted canonically, on orders of their own
            samples, answers = [], {}
            for order in orders:
                event = {
                    "idempotency_key": f"base:{order}",
                    "type": "order.placed",
                    "occurred_at": "2026-11-30T10:00:00+08:00",
                    "seller_id": seller,
                    "order_id": f"{order}-b",
                    "channel": "qris",
                    "amount": "275000.00",
                }
                resp = await http.post("/v1/events", json=event, headers=auth)
                assert resp.status == 201, await resp.text()
                event = {
                    "idempotency_key": f"base-pay:{order}",
                    "type": "payment.captured",
                    "occurred_at": "2026-11-30T10:05:00+08:00",
                    "order_id": f"{order}-b",
                    "channel": "qris",
                    "amount": "275000.00",
                    "gateway": "midtrans",
                    "gateway_ref": f"base-{order}",
                }
                started = time.perf_counter()
                resp = await http.post("/v1/events", json=event, headers=auth)
                payload = await resp.json()
                samples.append(time.perf_counter() - started)
                answers[payload["status"]] = answers.get(payload["status"], 0) + 1
            report("baseline POST /v1/events payment.captured", samples, answers)
            resp = await http.get(f"/v1/sellers/{seller}/balance", headers=auth)
            balance = await resp.json()
            print(f"captured_total={balance['captured_total']} (expected {2 * 275000 * count}.00)")
        await runner.cleanup()
        await standin.stop()
        await ledger.stop()
    finally:
        await pool.close()
        admin = await asyncpg.connect(dsn_admin)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    args = parser.parse_args()
    with admin_dsn() as dsn:
        asyncio.run(bench(dsn, args.count))


if __name__ == "__main__":
    main()
