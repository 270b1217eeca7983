"""Reads from a read model say what they include (issue 13, finding 1).

Right after a first write, ``GET /v1/sellers/{id}/balance`` answered all zeros
``"as_of_position": 3``, the position of the payment it did not include: a
seller the balances projection had not seen yet was given the log's head. Here
the projection consumer is not running at all (the model stays where it is),
which is the moment a reader must not be misled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ledger.api.http import create_app
from ledger.app.ledger import Ledger
from ledger.ops import bootstrap
from ledger.ops.settings import Settings
from ledger.store import LedgerStore
from tests.api.conftest import Api


@pytest.fixture
async def projected(
    settings: Settings, ledger: Ledger, store: LedgerStore, pool: asyncpg.Pool, admin
) -> AsyncIterator[Api]:
    """The app as ``up`` builds it (balances read from the projection), without the
    projection consumers: the read model does not move."""
    await bootstrap.prepare(settings, pool)
    app = create_app(settings, ledger, store, extensions=bootstrap.extensions(settings, pool))
    async with TestClient(TestServer(app)) as client:
        yield Api(client, admin)


async def test_a_seller_the_model_has_not_seen_is_not_answered_as_of_the_head(
    projected: Api, store: LedgerStore, pool: asyncpg.Pool, uid
) -> None:
    seller = uid("s")
    await projected.seller(seller)
    placed = await projected.place(seller, uid("o"), "150000")
    model_at = await pool.fetchval(
        "SELECT position FROM projection_positions WHERE name = 'balances'"
    )
    head, _ = await store.head()
    assert model_at < placed["position"] <= head
    status, body = await projected.get(f"/v1/sellers/{seller}/balance")
    assert status == 200, body
    assert body["as_of_position"] == model_at, "the model's own position, never the head"
    assert body["seen"] is False and body["lag_events"] == head - model_at
    # a client that names its write does not get a balance without it
    status, body = await projected.get(
        f"/v1/sellers/{seller}/balance?min_position={placed['position']}"
    )
    assert status == 503 and body["error"]["code"] == "unavailable", body
