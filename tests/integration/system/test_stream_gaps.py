"""A read model never skips a position the stream failed to hand it: it reads it from the log.

``omniledger up`` with its relay and projection children, real PostgreSQL and
NATS. The balances worker is held inside its transaction (a row lock taken
here) with a batch in hand; meanwhile more events are committed and
published, and then the stream is purged (as max age or max bytes would age
them out). The held batch fails (its backend is terminated): its messages can
never be redelivered. Before the fix the worker applied the next message it
got and moved its position past the lost ones for good.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import nats

from tests.integration.system.conftest import Deployment, Http, run_cli

AT = "2026-11-30T10:00:00+08:00"


async def _place(http: Http, seller: str, order: str, amount: str) -> int:
    status, out = await http.post(
        "/v1/events",
        {"idempotency_key": uuid.uuid4().hex, "type": "order.placed", "occurred_at": AT,
         "seller_id": seller, "order_id": order, "channel": "qris", "amount": amount},
    )  # fmt: skip
    assert status == 201, out
    return int(out["position"])


async def _waiting_on_a_lock(conn: asyncpg.Connection, dsn_db: str) -> int:
    for _ in range(200):
        pid = await conn.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'"
            " AND pid <> pg_backend_pid() LIMIT 1",
            dsn_db,
        )
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.05)
    raise AssertionError("the balances worker never blocked on the row lock")


async def _published(deployment: Deployment, head: int) -> None:
    nc = await nats.connect(deployment.nats_url)
    try:
        js = nc.jetstream()
        for _ in range(200):
            if (await js.stream_info(deployment.stream)).state.last_seq >= head:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"the relay did not publish up to {head}")
    finally:
        await nc.close()


async def _purge(deployment: Deployment) -> None:
    nc = await nats.connect(deployment.nats_url)
    try:
        await nc.jetstream().purge_stream(deployment.stream)
    finally:
        await nc.close()


async def test_events_purged_from_the_stream_under_a_failed_batch_are_read_from_the_log(
    http: Http, deployment: Deployment
) -> None:
    seller = f"s-{uuid.uuid4().hex[:6]}"
    await http.seller(seller)
    await _place(http, seller, "o0", "1000")
    await http.caught_up()

    lock = await asyncpg.connect(deployment.dsn)
    try:
        held = lock.transaction()
        await held.start()
        await lock.fetchval(
            "SELECT position FROM projection_positions WHERE name = 'balances' FOR UPDATE"
        )
        await _place(http, seller, "o1", "100000")
        blocked = await _waiting_on_a_lock(lock, deployment.dsn.rsplit("/", 1)[-1])
        await _place(http, seller, "o2", "50000")
        status, out = await http.post(
            "/v1/events",
            {"idempotency_key": uuid.uuid4().hex, "type": "payment.captured", "occurred_at": AT,
             "order_id": "o2", "channel": "qris", "amount": "50000", "fee": "500",
             "gateway": "midtrans", "gateway_ref": uuid.uuid4().hex},
        )  # fmt: skip
        assert status == 201, out
        await _published(deployment, await http.head())
        await _purge(deployment)
        assert await lock.fetchval("SELECT pg_terminate_backend($1)", blocked)
        await held.rollback()
    finally:
        await lock.close()
    # something after the gap, so that the worker has a message to notice it by
    await _place(http, seller, "o3", "1000")
    await http.caught_up(timeout_s=60)

    status, balance = await http.get(f"/v1/sellers/{seller}/balance")
    assert status == 200, balance
    expected = {"pending": "102000.00", "captured_total": "50000.00", "fees_total": "500.00",
                "available": "49500.00"}  # fmt: skip
    assert {k: balance[k] for k in expected} == expected, balance
    status, replayed = await http.get(
        f"/v1/sellers/{seller}/balance?as_of=2100-01-01T00:00:00Z"
    )  # from the log alone
    assert {k: replayed[k] for k in expected} == expected, replayed
    check = await run_cli(deployment, "check-projections")
    assert check.rc == 0, check
    status, health = await http.get("/healthz")
    assert (status, health["relay_lag_events"]) == (200, 0), health
    assert health["relay_position"] == health["head_position"], health
