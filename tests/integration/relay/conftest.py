"""A ledger database and a NATS stream name of this session, for the relay tests."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import nats
import pytest

from ledger.app.ledger import Ledger
from ledger.domain.commands import parse_command
from ledger.relay.relay import RelayConfig
from ledger.store import LedgerStore
from tests.support.servers import fresh_database


@pytest.fixture
async def fresh_db(pg_admin_dsn: str) -> AsyncIterator[str]:
    """A database of its own per test: the relay tests look at the whole log."""
    async with fresh_database(pg_admin_dsn, "omniledger_relay") as dsn:
        yield dsn


@pytest.fixture
async def rpool(fresh_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(fresh_db, min_size=1, max_size=10)
    assert pool is not None
    await LedgerStore(pool).migrate()
    yield pool
    await pool.close()


@pytest.fixture
async def rledger(rpool: asyncpg.Pool) -> AsyncIterator[Ledger]:
    ledger = Ledger(LedgerStore(rpool))
    ledger.start()
    yield ledger
    await ledger.stop()


@pytest.fixture
async def relay_config(nats_url: str) -> AsyncIterator[RelayConfig]:
    tag = uuid.uuid4().hex[:8]
    config = RelayConfig(
        nats_url=nats_url,
        stream_name=f"LEDGER_T{tag}",
        subject_prefix=f"t{tag}",
        standby_poll_s=0.2,
        idle_poll_s=0.2,
    )
    yield config
    nc = await nats.connect(nats_url)
    with contextlib.suppress(Exception):
        await nc.jetstream().delete_stream(config.stream_name)
    await nc.close()


async def write_history(ledger: Ledger, sellers: int = 2, orders: int = 5) -> int:
    """Registers sellers, places and pays orders; returns how many events were recorded."""
    count = 0
    tag = uuid.uuid4().hex[:6]
    for s in range(sellers):
        sid = f"s{s}-{tag}"
        await ledger.register_seller(
            seller_id=sid,
            name=sid,
            district="Tamalate",
            nib=None,
            channels={},
            occurred_at="2026-11-30T10:00:00+08:00",
            fingerprint=sid.encode(),
        )
        count += 1
        for o in range(orders):
            for raw in (
                {
                    "type": "order.placed",
                    "seller_id": sid,
                    "order_id": f"o{s}-{o}-{tag}",
                    "channel": "qris",
                    "amount": "1000",
                },
                {
                    "type": "payment.captured",
                    "order_id": f"o{s}-{o}-{tag}",
                    "channel": "qris",
                    "amount": "1000",
                    "gateway": "midtrans",
                    "gateway_ref": f"p{s}-{o}-{tag}",
                },
            ):
                raw |= {
                    "idempotency_key": uuid.uuid4().hex,
                    "occurred_at": "2026-11-30T10:00:00+08:00",
                }
                await ledger.record(parse_command(raw))
                count += 1
    return count


async def stream_messages(nats_url: str, stream: str) -> list[Any]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        state = (await js.stream_info(stream)).state
        first = max(state.first_seq or 1, 1)  # a purged or aged-out stream starts later
        return [await js.get_msg(stream, seq=s) for s in range(first, (state.last_seq or 0) + 1)]
    finally:
        await nc.close()
