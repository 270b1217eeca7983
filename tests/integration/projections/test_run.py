"""``run_projections``: all three read models in one process, stopped by an event."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import nats.errors
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from projections import catalog, reads, run_projections
from projections.puller import StatusOnlyClient
from tests.integration.projections.harness import Stream, stored_position, until
from tests.unit.projections.log_builder import synthetic_log


async def test_run_projections_feeds_every_read_model_until_stopped(
    stream: Stream, nc: NATS, pool: asyncpg.Pool, pg_dsn: str, schema_name: str, nats_url: str
) -> None:
    log, expected = synthetic_log(2000, sellers=10, seed=2)
    await stream.publish_fast(log.messages[:1000])
    search_path = f"options=-csearch_path%3D{schema_name}"
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_projections(
            stop=stop,
            database_url=f"{pg_dsn}{'&' if '?' in pg_dsn else '?'}{search_path}",
            nats_url=nats_url,
            stream=stream.name,
            subject_prefix=stream.prefix,
            durable_prefix="run_",
        )
    )
    try:

        async def caught_up(position: int) -> bool:
            try:
                names = catalog.PROJECTION_NAMES
                positions = [await stored_position(pool, n) for n in names]
                return positions == [position] * len(names)
            except asyncpg.UndefinedTableError:
                return False

        await until(lambda: caught_up(1000), timeout_s=20)
        await stream.publish_fast(log.messages[1000:])
        await until(lambda: caught_up(2000), timeout_s=20)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    for seller in expected.captured:
        balance = await reads.seller_balance(pool, seller)
        assert balance is not None
        assert {k: balance[k] for k in expected.balance(seller)} == expected.balance(seller)
    durables = {c.name for c in await stream.js.consumers_info(stream.name)}
    assert durables == {f"run_{n}" for n in catalog.PROJECTION_NAMES}
    # the city's per-channel order counts add up to the log's orders
    days = {m["occurred_at"][:10] for m in log.messages}
    orders = 0
    for day in sorted(days | {"2026-12-01"}):
        recap = await reads.city_recap(pool, day)
        orders += sum(c["orders"] for c in recap["channels"])
    assert orders == sum(1 for m in log.messages if m["type"] == "order.placed")


async def test_the_projections_client_drops_headers_but_keeps_a_status(nats_url: str) -> None:
    client = StatusOnlyClient()
    await client.connect(nats_url)
    try:
        subject = f"status-only.{uuid.uuid4().hex}"
        sub = await client.subscribe(subject)
        await client.publish(subject, b'{"position": 1}', headers={"Nats-Msg-Id": "1"})
        msg = await sub.next_msg(timeout=2)
        assert (msg.data, msg.headers) == (b'{"position": 1}', None)
        # a status is still read: 503, no one answers the request
        with pytest.raises(nats.errors.NoRespondersError):
            await client.request(f"{subject}.nobody", b"", timeout=2)
    finally:
        await client.close()


async def test_the_projections_client_hands_a_pullers_messages_straight_to_it(
    nats_url: str,
) -> None:
    client = StatusOnlyClient()
    await client.connect(nats_url)
    try:
        subject = f"direct.{uuid.uuid4().hex}"
        queued: list[bytes] = []

        async def on_queue(msg: Msg) -> None:
            queued.append(msg.data)

        sub = await client.subscribe(subject, cb=on_queue)
        direct: list[tuple[bytes, dict[str, str] | None]] = []
        client.deliver_to(sub, lambda msg: direct.append((msg.data, msg.headers)))
        await client.publish(subject, b"1", headers={"Nats-Msg-Id": "1"})
        await client.publish(subject, b"2", headers={"Status": "404"})  # not a status line
        await client.flush()

        async def both_direct() -> bool:
            return len(direct) == 2

        async def third_queued() -> bool:
            return queued == [b"3"]

        await until(both_direct, timeout_s=2)
        client.deliver_to(sub, None)
        await client.publish(subject, b"3")
        await client.flush()
        await until(third_queued, timeout_s=2)
        assert direct == [(b"1", None), (b"2", None)]
    finally:
        await client.close()
