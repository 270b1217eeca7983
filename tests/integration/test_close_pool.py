"""A stopping process closes its database pool in bounded time (``close_pool``).

``omniledger project`` once stayed up for minutes after SIGTERM: a consumer
task that did not end on cancellation still held its connection, and
``Pool.close`` waits for every connection to come back.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from ledger.ops.bootstrap import close_pool


@pytest.mark.timeout(60)
async def test_a_connection_never_released_is_closed_after_the_timeout(pg_dsn: str) -> None:
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    held = await pool.acquire()
    pid = await held.fetchval("SELECT pg_backend_pid()")
    await held.execute("BEGIN; CREATE TEMP TABLE left_open (x int)")  # a transaction in flight

    started = time.monotonic()
    await close_pool(pool, timeout_s=0.5)

    assert time.monotonic() - started < 5
    with pytest.raises(asyncpg.InterfaceError):  # the pool took it back, closed
        await held.fetchval("SELECT 1")
    conn = await asyncpg.connect(pg_dsn)
    try:
        for _ in range(50):  # the server notices the closed socket within moments
            if not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
                break
            await asyncio.sleep(0.1)
        assert not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid)
    finally:
        await conn.close()


@pytest.mark.timeout(60)
async def test_an_idle_pool_closes_gracefully(pg_dsn: str) -> None:
    pool = await asyncpg.create_pool(pg_dsn, min_size=2, max_size=2)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT 1") == 1

    await close_pool(pool, timeout_s=5)

    assert pool.is_closing()
