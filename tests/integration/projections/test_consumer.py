"""The consumer's promises, against real PostgreSQL and NATS JetStream (DESIGN rule 7)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import asyncpg
import orjson
import pytest

from projections import reads, schema
from projections.balances import BalancesProjection
from projections.consumer import ConsumerGone
from tests.integration.projections.conftest import ConsumerFactory
from tests.integration.projections.harness import Stream, drain, stored_position, until
from tests.unit.projections.log_builder import LogBuilder

REPO_ROOT = str(Path(__file__).resolve().parents[3])


def scenario() -> LogBuilder:
    """Two sellers; seller a ends with pending 50000, available 58950; b with 0 and 69300."""
    log = LogBuilder()
    log.seller("a", "Panakkukang")
    log.seller("b", "Tamalate")
    log.order("a", "o1", "150000.00", "qris")
    log.order("a", "o2", "80000.00", "shopee")
    log.capture("a", "o1", "150000.00", "1050.00", "qris")
    log.capture("a", "o2", "30000.00", "0.00", "shopee")
    log.order("b", "o3", "50000.00", "whatsapp")
    log.cancel("b", "o3", "50000.00", "whatsapp")
    log.refund("a", "o1", "20000.00", "qris")
    log.payout("a", "100000.00")
    log.order("b", "o4", "70000.00", "website", at="2026-11-30T17:30:00Z")
    log.capture("b", "o4", "70000.00", "700.00", "website", at="2026-11-30T17:31:00Z")
    return log


SELLER_A = {
    "seller_id": "a",
    "currency": "IDR",
    "pending": "50000.00",
    "available": "58950.00",
    "captured_total": "180000.00",
    "refunded_total": "20000.00",
    "fees_total": "1050.00",
    "paid_out_total": "100000.00",
}
SELLER_B = {
    "seller_id": "b",
    "currency": "IDR",
    "pending": "0.00",
    "available": "69300.00",
    "captured_total": "70000.00",
    "refunded_total": "0.00",
    "fees_total": "700.00",
    "paid_out_total": "0.00",
}


async def balances_of(pool: asyncpg.Pool, *sellers: str) -> list[dict | None]:
    return [await reads.seller_balance(pool, s) for s in sellers]


async def test_every_message_is_applied_once(
    stream: Stream, make_consumer: ConsumerFactory, pool: asyncpg.Pool
) -> None:
    log = scenario()
    await stream.publish(log.messages)
    consumer = make_consumer(BalancesProjection())
    await consumer.start()
    try:
        await drain(consumer, log.position)
        for _ in range(3):  # nothing more arrives, nothing changes
            await consumer.step()
    finally:
        await consumer.close()
    a, b = await balances_of(pool, "a", "b")
    assert a == {**SELLER_A, "as_of_position": 12}
    assert b == {**SELLER_B, "as_of_position": 12}
    assert await reads.seller_balance(pool, "nobody") is None
    assert await stored_position(pool, "balances") == 12


async def test_a_message_published_twice_changes_balances_once(
    stream: Stream, make_consumer: ConsumerFactory, pool: asyncpg.Pool
) -> None:
    log = scenario()
    # the relay republishing after a crash, once the dedupe window has passed:
    # JetStream then stores the same position twice
    await stream.js.update_stream(
        name=stream.name, subjects=[f"{stream.prefix}.>"], duplicate_window=0.2
    )
    await stream.publish(log.messages[:6])
    await asyncio.sleep(0.3)
    await stream.publish(log.messages[3:])
    # and once more with another msg id: only the position in the body counts
    await stream.publish(log.messages[4:5], msg_id="5-again")
    assert (await stream.js.stream_info(stream.name)).state.messages == 6 + 9 + 1
    consumer = make_consumer(BalancesProjection())
    await consumer.start()
    try:
        await drain(consumer, log.position)
        result = await consumer.step()
        while result.fetched:
            result = await consumer.step()
    finally:
        await consumer.close()
    assert await balances_of(pool, "a", "b") == [
        {**SELLER_A, "as_of_position": 12},
        {**SELLER_B, "as_of_position": 12},
    ]


class FailingOnce(BalancesProjection):
    """Fails the first apply as a lost database would."""

    failures = 0

    async def apply(self, conn, facts):  # type: ignore[no-untyped-def]
        if not self.failures:
            self.failures += 1
            raise asyncpg.exceptions.DeadlockDetectedError("injected")
        await super().apply(conn, facts)


async def test_a_batch_naked_after_a_database_error_is_redelivered_and_applied_once(
    stream: Stream, make_consumer: ConsumerFactory, pool: asyncpg.Pool
) -> None:
    log = scenario()
    await stream.publish(log.messages)
    projection = FailingOnce()
    consumer = make_consumer(projection, batch_size_max=5)
    deliveries: dict[int, int] = {}
    handle = consumer.handle

    async def recording(msgs):  # type: ignore[no-untyped-def]
        for m in msgs:
            deliveries[m.metadata.sequence.stream] = m.metadata.num_delivered
        return await handle(msgs)

    consumer.handle = recording  # type: ignore[method-assign]
    await consumer.start()
    try:
        first = await consumer.step()
        assert first.failed and first.fetched == 5
        assert await stored_position(pool, "balances") == 0
        await drain(consumer, log.position)
    finally:
        await consumer.close()
    assert projection.failures == 1
    # the naked batch came back, before anything newer (max_ack_pending = batch)
    assert deliveries == {seq: 2 if seq <= 5 else 1 for seq in range(1, 13)}
    assert await balances_of(pool, "a", "b") == [
        {**SELLER_A, "as_of_position": 12},
        {**SELLER_B, "as_of_position": 12},
    ]


async def test_a_failed_first_batch_overtaken_by_newer_messages_loses_nothing(
    stream: Stream, make_consumer: ConsumerFactory, pool: asyncpg.Pool
) -> None:
    """The first batch after a start fails and is naked; it is smaller than
    ``max_ack_pending``, so the server hands out newer messages before it comes
    back. Applying those would move the stored position past the naked ones,
    which would then be skipped as already applied: lost for good."""
    log = scenario()
    await stream.publish(log.messages[:4])
    consumer = make_consumer(FailingOnce())
    await consumer.start()
    try:
        assert (await consumer.step()).failed
        await stream.publish(log.messages[4:])
        await drain(consumer, log.position)
    finally:
        await consumer.close()
    assert await balances_of(pool, "a", "b") == [
        {**SELLER_A, "as_of_position": 12},
        {**SELLER_B, "as_of_position": 12},
    ]


def log_reader(log: LogBuilder):  # type: ignore[no-untyped-def]
    """``read_log`` over the messages the test's log holds (the ledger's log in a deployment)."""

    async def read_log(after: int, limit: int) -> list[dict]:
        return [m for m in log.messages if after < m["position"] <= after + limit]

    return read_log


async def test_positions_the_stream_no_longer_holds_are_read_from_the_log(
    stream: Stream, make_consumer: ConsumerFactory, pool: asyncpg.Pool
) -> None:
    """Positions 5-7 aged out of the stream (or were purged) before this
    consumer read them: it reads them from the log, it does not skip them."""
    log = scenario()
    await stream.publish(log.messages[:4] + log.messages[7:])
    consumer = make_consumer(BalancesProjection(), read_log=log_reader(log))
    await consumer.start()
    try:
        await drain(consumer, log.position)
    finally:
        await consumer.close()
    assert await balances_of(pool, "a", "b") == [
        {**SELLER_A, "as_of_position": 12},
        {**SELLER_B, "as_of_position": 12},
    ]
    assert await pool.fetchval("SELECT count(*) FROM projection_poison") == 0


async def test_without_the_log_a_consumer_stops_at_a_gap_rather_than_skip_it(
    stream: Stream, make_consumer: ConsumerFactory, pool: asyncpg.Pool
) -> None:
    log = scenario()
    await stream.publish(log.messages[:4] + log.messages[7:])
    consumer = make_consumer(BalancesProjection())
    await consumer.start()
    try:
        results = [await consumer.step() for _ in range(4)]
    finally:
        await consumer.close()
    assert any(r.resynced for r in results), results
    assert await stored_position(pool, "balances") == 4
    assert (await reads.seller_balance(pool, "a") or {}).get("as_of_position") == 4


class HangingInApply(BalancesProjection):
    """Writes the batch, then waits forever inside the transaction."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()

    async def apply(self, conn, facts):  # type: ignore[no-untyped-def]
        await super().apply(conn, facts)
        self.entered.set()
        await asyncio.Event().wait()


async def test_a_consumer_cancelled_inside_the_transaction_loses_nothing(
    stream: Stream, make_consumer: ConsumerFactory, pool: asyncpg.Pool
) -> None:
    log = scenario()
    await stream.publish(log.messages)
    hanging = HangingInApply()
    task = asyncio.create_task(make_consumer(hanging, batch_size_max=7).run())
    await asyncio.wait_for(hanging.entered.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await stored_position(pool, "balances") == 0
    assert await reads.seller_balance(pool, "a") is None  # rolled back
    consumer = make_consumer(BalancesProjection(), batch_size_max=7)
    await consumer.start()  # the old cursor has unacked messages: it is reset
    try:
        await drain(consumer, log.position, timeout_s=5)
    finally:
        await consumer.close()
    assert await balances_of(pool, "a", "b") == [
        {**SELLER_A, "as_of_position": 12},
        {**SELLER_B, "as_of_position": 12},
    ]


async def test_a_consumer_cancelled_after_commit_before_ack_doubles_nothing(
    stream: Stream, make_consumer: ConsumerFactory, pool: asyncpg.Pool
) -> None:
    from projections.consumer import Consumer

    committed = asyncio.Event()

    class NeverAcks(Consumer):
        async def _settle(self, items, last):  # type: ignore[no-untyped-def]
            committed.set()
            await asyncio.Event().wait()
            return 0

    log = scenario()
    await stream.publish(log.messages)
    base = make_consumer(BalancesProjection(), batch_size_max=7)
    never = NeverAcks(
        BalancesProjection(),
        pool=pool,
        nc=base._nc,
        stream=stream.name,
        subject_prefix=stream.prefix,
        durable=base.durable,
        batch_size_max=7,
        fetch_timeout_s=0.2,
    )
    task = asyncio.create_task(never.run())
    await asyncio.wait_for(committed.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await stored_position(pool, "balances") == 7
    consumer = make_consumer(BalancesProjection(), batch_size_max=7)
    await consumer.start()
    try:
        await drain(consumer, log.position, timeout_s=5)
    finally:
        await consumer.close()
    assert await balances_of(pool, "a", "b") == [
        {**SELLER_A, "as_of_position": 12},
        {**SELLER_B, "as_of_position": 12},
    ]


async def test_poison_is_recorded_and_skipped(
    stream: Stream, make_consumer: ConsumerFactory, pool: asyncpg.Pool
) -> None:
    log = scenario()
    await stream.publish(log.messages[:4])
    await stream.publish_raw(f"{stream.prefix}.order.placed", b"{not json", "garbage-1")
    tampered = dict(log.messages[4], data={**log.messages[4]["data"], "amount": "9999999.00"})
    await stream.publish_raw(f"{stream.prefix}.payment.captured", orjson.dumps(tampered), "t-5")
    await stream.publish(log.messages[4:])
    bad = LogBuilder(first_position=13, prev_hash=log.prev_hash)
    bad.order("a", "o5", "12.345")  # three decimals for IDR: the envelope is fine, data is not
    bad.order("a", "o6", "1000.00")
    await stream.publish(bad.messages)
    consumer = make_consumer(BalancesProjection())
    await consumer.start()
    try:
        await drain(consumer, 14)
    finally:
        await consumer.close()
    rows = await pool.fetch(
        "SELECT stream_seq, subject, position, error FROM projection_poison ORDER BY stream_seq"
    )
    assert [(r["stream_seq"], r["position"]) for r in rows] == [(5, None), (6, None), (15, 13)]
    assert "not JSON" in rows[0]["error"]
    assert "hash mismatch" in rows[1]["error"]
    assert "fraction digits" in rows[2]["error"]
    a = await reads.seller_balance(pool, "a")
    assert a == {**SELLER_A, "pending": "51000.00", "as_of_position": 14}
    info = await stream.js.consumer_info(stream.name, consumer.durable)
    assert info.num_ack_pending == 0 and info.num_redelivered == 0


@pytest.mark.parametrize("where", ["apply", "ack"])
async def test_a_consumer_process_killed_mid_batch_then_restarted_ends_exact(
    where: str,
    stream: Stream,
    make_consumer: ConsumerFactory,
    pool: asyncpg.Pool,
    pg_dsn: str,
    schema_name: str,
    nats_url: str,
) -> None:
    log = scenario()
    await stream.publish(log.messages)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.projections.crash_worker",
        pg_dsn,
        schema_name,
        nats_url,
        stream.name,
        stream.prefix,
        where,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line.strip() == b"HANG"
    finally:
        proc.kill()  # SIGKILL: no finally blocks, no clean close
        await proc.wait()
    assert await stored_position(pool, "balances") == (0 if where == "apply" else 7)
    consumer = make_consumer(BalancesProjection(), batch_size_max=7)
    await consumer.start()
    try:
        await drain(consumer, log.position, timeout_s=5)
    finally:
        await consumer.close()
    assert await balances_of(pool, "a", "b") == [
        {**SELLER_A, "as_of_position": 12},
        {**SELLER_B, "as_of_position": 12},
    ]


async def test_a_clean_restart_resumes_the_same_durable(
    stream: Stream, make_consumer: ConsumerFactory, pool: asyncpg.Pool
) -> None:
    log = scenario()
    await stream.publish(log.messages[:6])
    first = make_consumer(BalancesProjection())
    await first.start()
    try:
        await drain(first, 6)
    finally:
        await first.close()
    created = (await stream.js.consumer_info(stream.name, first.durable)).created
    await stream.publish(log.messages[6:])
    second = make_consumer(BalancesProjection())
    await second.start()
    try:
        step = await second.step()
        assert (step.skipped, step.applied) == (0, 6)  # resumed right after position 6
        await drain(second, log.position)
    finally:
        await second.close()
    assert (await stream.js.consumer_info(stream.name, second.durable)).created == created
    assert await balances_of(pool, "a", "b") == [
        {**SELLER_A, "as_of_position": 12},
        {**SELLER_B, "as_of_position": 12},
    ]


async def test_a_new_cursor_starts_after_the_stored_position_found_by_search(
    stream: Stream, make_consumer: ConsumerFactory, pool: asyncpg.Pool
) -> None:
    log = scenario()
    # the stream does not line up with positions: positions 1-5 were
    # published once before (an earlier relay run), so seq = position + 5
    for m in log.messages[:5]:
        await stream.publish([m], msg_id=f"old-{m['position']}")
    await stream.publish(log.messages)
    consumer = make_consumer(BalancesProjection())
    await schema.ensure_schema(pool, [consumer.projection])
    await pool.execute("UPDATE projection_positions SET position = 8 WHERE name = 'balances'")
    assert await consumer.start_sequence(8) == 14
    assert await consumer.start_sequence(0) == 1
    assert await consumer.start_sequence(12) == 18  # after the last: only new messages
    await consumer.start()
    try:
        step = await consumer.step()
        assert (step.fetched, step.skipped, step.applied, step.position) == (4, 0, 4, 12)
    finally:
        await consumer.close()
    # only positions 9-12 were applied: a's refund and payout, b's paid order
    a, b = await balances_of(pool, "a", "b")
    assert a is not None and b is not None
    assert (a["available"], a["pending"]) == ("-120000.00", "0.00")
    assert (b["available"], b["pending"], b["fees_total"]) == ("69300.00", "0.00", "700.00")


async def test_a_running_consumer_whose_durable_is_deleted_recreates_it(
    stream: Stream, make_consumer: ConsumerFactory, pool: asyncpg.Pool
) -> None:
    log = scenario()
    await stream.publish(log.messages[:6])
    consumer = make_consumer(BalancesProjection())
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await until(lambda: _position_is(pool, 6))
        await stream.js.delete_consumer(stream.name, consumer.durable)
        await stream.publish(log.messages[6:])
        await until(lambda: _position_is(pool, 12))
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert await balances_of(pool, "a", "b") == [
        {**SELLER_A, "as_of_position": 12},
        {**SELLER_B, "as_of_position": 12},
    ]


async def _position_is(pool: asyncpg.Pool, position: int) -> bool:
    try:
        return await stored_position(pool, "balances") == position
    except asyncpg.UndefinedTableError:
        return False


async def test_a_batch_that_skips_ahead_in_the_stream_re_aligns_the_cursor(
    stream: Stream, make_consumer: ConsumerFactory, pool: asyncpg.Pool
) -> None:
    log = scenario()
    await stream.publish(log.messages)
    consumer = make_consumer(BalancesProjection(), batch_size_max=12)
    await consumer.start()
    try:
        assert consumer._puller is not None
        msgs = await consumer._puller.fetch(12, 2.0)
        assert len(msgs) == 12
        await consumer.handle(msgs[:3])
        # as if the server had handed out 7.. before redelivering 4..6
        result = await consumer.handle(msgs[6:])
        assert result.resynced and await stored_position(pool, "balances") == 3
        await drain(consumer, log.position)
    finally:
        await consumer.close()
    assert await balances_of(pool, "a", "b") == [
        {**SELLER_A, "as_of_position": 12},
        {**SELLER_B, "as_of_position": 12},
    ]


async def test_a_stream_recreated_and_refilled_by_the_relay_is_followed(
    stream: Stream, make_consumer: ConsumerFactory, pool: asyncpg.Pool
) -> None:
    log = scenario()
    more = LogBuilder(first_position=13, prev_hash=log.prev_hash)
    more.order("b", "o7", "5000.00", "pos")
    more.payout("a", "50000.00")
    await stream.publish(log.messages)
    consumer = make_consumer(BalancesProjection(), retry_delay_s=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await until(lambda: _position_is(pool, 12))
        # the relay found the stream behind the log: it deletes it and refills it
        await stream.js.delete_stream(stream.name)
        await asyncio.sleep(0.3)
        await stream.js.add_stream(name=stream.name, subjects=[f"{stream.prefix}.>"])
        await stream.publish(log.messages[:7])
        await asyncio.sleep(0.3)
        await stream.publish(log.messages[7:] + more.messages)
        await until(lambda: _position_is(pool, 14))
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    a, b = await balances_of(pool, "a", "b")
    assert a == {
        **SELLER_A,
        "available": "8950.00",
        "paid_out_total": "150000.00",
        "as_of_position": 14,
    }
    assert b == {**SELLER_B, "pending": "5000.00", "as_of_position": 14}


async def test_a_durable_deleted_between_fetches_is_noticed(
    stream: Stream, make_consumer: ConsumerFactory, pool: asyncpg.Pool
) -> None:
    log = scenario()
    await stream.publish(log.messages[:6])
    consumer = make_consumer(BalancesProjection())
    await consumer.start()
    try:
        await drain(consumer, 6)
        await asyncio.sleep(0.3)  # no pull request is left waiting on the server
        await stream.js.delete_consumer(stream.name, consumer.durable)
        with pytest.raises(ConsumerGone):
            for _ in range(3):
                await consumer.step()
    finally:
        await consumer.close()
    await stream.publish(log.messages[6:])
    restarted = make_consumer(BalancesProjection())
    await restarted.start()
    try:
        await drain(restarted, 12)
    finally:
        await restarted.close()
    assert await balances_of(pool, "a", "b") == [
        {**SELLER_A, "as_of_position": 12},
        {**SELLER_B, "as_of_position": 12},
    ]
