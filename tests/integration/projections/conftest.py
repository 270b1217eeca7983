"""Fixtures for the projection tests: a schema of their own per test, a stream of their own.

Each test gets a PostgreSQL schema (its pool's ``search_path``) in the
session's database, so positions and read tables never mix between tests,
and a JetStream stream ``LEDGER_T<tag>_<n>`` on subjects ``t<tag>n<n>.>``
(a real ``LEDGER`` stream may exist on the shared server), deleted after.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import nats
import nats.js.errors
import pytest
from nats.aio.client import Client as NATS

from projections import Consumer
from projections.projection import Projection
from tests.integration.projections.harness import Stream

_numbers = itertools.count(1)


@pytest.fixture(scope="session")
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    conn = await nats.connect(nats_url, name="projection-tests")
    yield conn
    await conn.drain()


@pytest.fixture
async def stream(nc: NATS, session_tag: str) -> AsyncIterator[Stream]:
    n = next(_numbers)
    js = nc.jetstream()
    s = Stream(name=f"LEDGER_T{session_tag}_{n}", prefix=f"t{session_tag}n{n}", js=js, nc=nc)
    for attempt in range(3):
        try:
            await js.add_stream(name=s.name, subjects=[f"{s.prefix}.>"], duplicate_window=120)
            break
        except nats.js.errors.ServerError as e:
            # nats-server 2.9 can fail a create racing another session's delete
            # of the last stream ("could not create storage directory", 10049)
            if e.err_code != 10049 or attempt == 2:
                raise
            await asyncio.sleep(0.1)
    yield s
    await js.delete_stream(s.name)  # its consumers go with it


@pytest.fixture
async def schema_name(pg_dsn: str) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f"CREATE SCHEMA {name}")
    finally:
        await conn.close()
    yield name


@pytest.fixture
async def pool(pg_dsn: str, schema_name: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(
        pg_dsn, min_size=1, max_size=8, server_settings={"search_path": schema_name}
    )
    yield p
    await p.close()


ConsumerFactory = Callable[..., Consumer]


@pytest.fixture
def make_consumer(pool: asyncpg.Pool, nc: NATS, stream: Stream) -> ConsumerFactory:
    """A consumer of the test's stream with quick timeouts; keyword overrides pass through."""

    def make(projection: Projection, **kw: Any) -> Consumer:
        options: dict[str, Any] = {
            "pool": pool,
            "nc": nc,
            "stream": stream.name,
            "subject_prefix": stream.prefix,
            "durable": f"projection_{projection.name}",
            "fetch_timeout_s": 0.2,
            "retry_delay_s": 0.05,
        }
        options.update(kw)
        return Consumer(projection, **options)

    return make
