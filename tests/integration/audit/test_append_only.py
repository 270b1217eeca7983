"""The log is append-only in the database itself (issue 13, finding 7): UPDATE,
DELETE and TRUNCATE of the events are refused, the head only moves forward, and
the ledger's own appends go on. A superuser who says so for one transaction
(``SET LOCAL session_replication_role = replica``) may still: that is the
documented path of a migration that must rewrite the log, and of the
auditors' tamper tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from ledger.app.ledger import Ledger
from ledger.store import LedgerStore

from .conftest import History, head


@pytest.fixture
async def plain_pool(fresh_db: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool as the service has it: triggers on."""
    pool = await asyncpg.create_pool(fresh_db, min_size=1, max_size=4)
    assert pool is not None
    await LedgerStore(pool).migrate()
    yield pool
    await pool.close()


async def test_the_log_refuses_to_be_rewritten(plain_pool: asyncpg.Pool) -> None:
    ledger = Ledger(LedgerStore(plain_pool))
    ledger.start()
    try:
        history = History(ledger)
        await history.seller(f"s-{history.tag}")
        await history.place(f"s-{history.tag}", f"o-{history.tag}", "1000", "2026-11-30T10:00:00Z")
        before = await head(plain_pool)
        for statement in (
            "UPDATE omniledger_events SET type = 'payment.captured' WHERE notification_id = 2",
            "DELETE FROM omniledger_events WHERE notification_id = 2",
            "TRUNCATE omniledger_events",
            "UPDATE ledger_head SET position = position - 1",
            "DELETE FROM ledger_head",
            "TRUNCATE ledger_head",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await plain_pool.execute(statement)
        assert await head(plain_pool) == before
        assert await plain_pool.fetchval("SELECT count(*) FROM omniledger_events") == before[0]
        # the ledger's own appends (the head moving on) are untouched
        await history.place(f"s-{history.tag}", f"o2-{history.tag}", "1000", "2026-11-30T11:00:00Z")
        assert (await head(plain_pool))[0] == before[0] + 1
    finally:
        await ledger.stop()


async def test_a_superuser_may_for_one_transaction_as_documented(
    plain_pool: asyncpg.Pool,
) -> None:
    ledger = Ledger(LedgerStore(plain_pool))
    ledger.start()
    try:
        history = History(ledger)
        await history.seller(f"s-{history.tag}")
    finally:
        await ledger.stop()
    async with plain_pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute("UPDATE omniledger_events SET type = 'x' WHERE notification_id = 1")
        # only for that transaction
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE omniledger_events SET type = 'y' WHERE notification_id = 1")
    assert await plain_pool.fetchval("SELECT type FROM omniledger_events") == "x"
