"""Rebuild from the log into shadow tables and swap them in while the consumer runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import asyncpg
import pytest

from ledger.contract.messages import chain_hash
from projections import catalog, reads, rebuild, schema
from projections.rebuild import RebuildBusy, rebuild_all
from tests.integration.projections.conftest import ConsumerFactory
from tests.integration.projections.harness import Stream, drain, stored_position, until
from tests.unit.projections.log_builder import Expected, synthetic_log


async def from_log(messages: Iterable[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """What the caller hands ``rebuild``: messages read from PostgreSQL, in order."""
    for m in messages:
        yield m


async def snapshot(pool: asyncpg.Pool, name: str) -> dict[str, list[tuple[Any, ...]]]:
    tables = catalog.projection(name).tables
    return {t: sorted(tuple(r) for r in await pool.fetch(f"SELECT * FROM {t}")) for t in tables}


async def assert_balances(pool: asyncpg.Pool, expected: Expected, position: int) -> None:
    for seller in expected.captured:
        balance = await reads.seller_balance(pool, seller)
        assert balance is not None
        assert {k: balance[k] for k in expected.balance(seller)} == expected.balance(seller)
        assert balance["as_of_position"] == position


async def test_rebuild_produces_tables_identical_to_the_live_ones(
    stream: Stream, make_consumer: ConsumerFactory, pool: asyncpg.Pool
) -> None:
    log, expected = synthetic_log(3000, sellers=12, seed=11)
    await stream.publish_fast(log.messages)
    for name in catalog.PROJECTION_NAMES:
        consumer = make_consumer(catalog.projection(name))
        await consumer.start()
        try:
            await drain(consumer, log.position, timeout_s=30)
        finally:
            await consumer.close()
    await assert_balances(pool, expected, log.position)
    for name in catalog.PROJECTION_NAMES:
        live = await snapshot(pool, name)
        assert all(live.values()), name
        progress: list[tuple[int, int]] = []
        result = await rebuild(
            pool,
            name,
            from_log(log.messages),
            on_progress=lambda p, n, out=progress: out.append((p, n)),
            batch_size_max=700,
        )
        assert (result.position, result.messages, result.poison, result.generation) == (
            log.position,
            3000,
            0,
            1,
        )
        assert progress[-1] == (log.position, 3000) and len(progress) == 5
        assert await snapshot(pool, name) == live, name
        assert await stored_position(pool, name) == log.position
    # and again: the swapped-in tables carry the live constraint names
    before = await snapshot(pool, "city")
    again = await rebuild(pool, "city", from_log(log.messages))
    assert again.generation == 2 and await snapshot(pool, "city") == before
    pkeys = await pool.fetch(
        "SELECT conname FROM pg_constraint WHERE contype = 'p'"
        " AND connamespace = current_schema()::regnamespace AND conname LIKE 'proj\\_%'"
        " ORDER BY conname"
    )
    assert [r["conname"] for r in pkeys] == sorted(
        f"{t}_pkey" for n in catalog.PROJECTION_NAMES for t in catalog.projection(n).tables
    )
    leftovers = await pool.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        " AND tablename LIKE '%\\_\\_%'"
    )
    assert leftovers == []


async def test_the_live_consumer_catches_up_after_a_rebuild_behind_it(
    stream: Stream, make_consumer: ConsumerFactory, pool: asyncpg.Pool
) -> None:
    log, _ = synthetic_log(1200, sellers=6, seed=5)
    more, expected = synthetic_log(1500, sellers=6, seed=5)  # the same history, 300 further
    assert more.messages[:1200] == log.messages
    await stream.publish_fast(log.messages)
    consumer = make_consumer(catalog.projection("balances"), batch_size_max=100)
    await schema.ensure_schema(pool, [consumer.projection])
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await until(lambda: _at(pool, 1200))
        # rebuilt from the log as it was at position 600: the consumer is 600 ahead
        result = await rebuild(pool, "balances", from_log(log.messages[:600]))
        assert result.position == 600
        # it re-reads 601.. from the stream into the new tables
        await until(lambda: _at(pool, 1200))
        await stream.publish_fast(more.messages[1200:])
        await until(lambda: _at(pool, 1500))
        assert consumer.position == 1500
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    await assert_balances(pool, expected, 1500)


async def test_a_rebuild_ahead_of_the_consumer_is_not_applied_twice(
    stream: Stream, make_consumer: ConsumerFactory, pool: asyncpg.Pool
) -> None:
    log, expected = synthetic_log(800, sellers=5, seed=9)
    await stream.publish_fast(log.messages)
    consumer = make_consumer(catalog.projection("balances"), batch_size_max=50)
    await consumer.start()
    try:
        await drain(consumer, 200)
        await rebuild(pool, "balances", from_log(log.messages))  # to 800, consumer at 200
        result = await consumer.step()
        assert result.resynced
        await drain(consumer, 800)
        assert (await consumer.step()).fetched == 0
    finally:
        await consumer.close()
    await assert_balances(pool, expected, 800)


async def test_two_rebuilds_of_one_model_do_not_run_together(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            "SELECT pg_advisory_lock(hashtext('omniledger.projections.rebuild.city'))"
        )
        try:
            with pytest.raises(RebuildBusy):
                await rebuild(pool, "city", from_log([]))
        finally:
            await conn.execute(
                "SELECT pg_advisory_unlock(hashtext('omniledger.projections.rebuild.city'))"
            )
    result = await rebuild(pool, "city", from_log([]))
    assert (result.position, result.messages) == (0, 0)


async def test_one_pass_for_all_models_gives_what_one_rebuild_each_gives(
    pool: asyncpg.Pool,
) -> None:
    log, _ = synthetic_log(2500, sellers=9, seed=21)
    messages = [dict(m) for m in log.messages]
    tampered = dict(messages[700], data={**messages[700]["data"], "amount": "1"})
    messages[700] = tampered  # its hash no longer matches: set aside by every model
    names = list(catalog.PROJECTION_NAMES)
    each = {}
    for name in names:
        result = await rebuild(pool, name, from_log(messages), batch_size_max=600)
        each[name] = (result, await snapshot(pool, name))
    progress: list[tuple[int, int]] = []
    results = await rebuild_all(
        pool,
        names,
        from_log(messages),
        batch_size_max=600,
        on_progress=lambda p, n: progress.append((p, n)),
    )
    assert [r.name for r in results] == names
    for result in results:
        single, tables = each[result.name]
        assert (
            (result.position, result.messages, result.poison)
            == (
                log.position,
                2499,
                1,
            )
            == (single.position, single.messages, single.poison)
        )
        assert result.generation == single.generation + 1
        assert await snapshot(pool, result.name) == tables, result.name
        assert await stored_position(pool, result.name) == log.position
    assert progress[-1] == (log.position, 2499) and len(progress) == 5
    poison = await pool.fetch("SELECT name, position FROM projection_poison ORDER BY name")
    assert [tuple(r) for r in poison] == [(n, None) for n in sorted(names)]


async def test_models_sharing_a_parse_each_set_aside_what_it_refuses(
    pool: asyncpg.Pool,
) -> None:
    """recaps and city parse each message once in a pass (``shared_parse``): a
    message that parse refuses is set aside by both, and each model's tables
    are what a rebuild of it alone gives."""
    log, _ = synthetic_log(1500, sellers=7, seed=5)
    messages = [dict(m) for m in log.messages]
    at = next(i for i, m in enumerate(messages) if i > 400 and m["type"] == "payment.captured")
    broken = dict(messages[at], data={**messages[at]["data"], "channel": 7})
    broken["hash"] = chain_hash(broken["prev_hash"], broken)  # the envelope is sound
    messages[at] = broken
    names = ["recaps", "city"]
    each = {}
    for name in names:
        single = await rebuild(pool, name, from_log(messages), batch_size_max=400)
        each[name] = (single.poison, await snapshot(pool, name))
    await pool.execute("DELETE FROM projection_poison")
    results = await rebuild_all(pool, names, from_log(messages), batch_size_max=400)
    for result in results:
        assert (result.messages, result.poison) == (1500, 1)
        assert (result.poison, await snapshot(pool, result.name)) == each[result.name]
    poison = await pool.fetch("SELECT name, position FROM projection_poison ORDER BY name")
    assert [tuple(r) for r in poison] == [("city", at + 1), ("recaps", at + 1)]


async def test_one_pass_swaps_nothing_when_a_model_is_busy(pool: asyncpg.Pool) -> None:
    log, _ = synthetic_log(300, sellers=3, seed=4)
    first = await rebuild(pool, "balances", from_log(log.messages))
    key = "omniledger.projections.rebuild.city"
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", key)
        try:
            with pytest.raises(RebuildBusy):
                await rebuild_all(pool, ["balances", "city"], from_log(log.messages))
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", key)
    generation = await pool.fetchval(
        "SELECT generation FROM projection_positions WHERE name = 'balances'"
    )
    assert generation == first.generation
    # the lock of balances was given back: it can be rebuilt again
    again = await rebuild_all(pool, ["balances", "city"], from_log(log.messages))
    assert [r.generation for r in again] == [first.generation + 1, 1]
    with pytest.raises(ValueError):
        await rebuild_all(pool, ["city", "city"], from_log([]))


async def _at(pool: asyncpg.Pool, position: int) -> bool:
    return await stored_position(pool, "balances") >= position
