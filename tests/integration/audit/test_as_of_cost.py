"""Time travel costs one seller's events, not the log, and cannot starve writers
(issue 10, finding 8).

A seller with a scripted history sits in a log of a few thousand events of
other sellers, all written through the real write path. Its balance as of a
time (and as known at a time) equals the full replay's (``omniledger replay``
without ``--seller`` folds every event), and the reader read only that
seller's money events. Reads past the limits (in flight per process, one per
seller, a share of the wall clock) are answered 429 with ``Retry-After``
while writes go on.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ledger.api.http import create_app
from ledger.app.ledger import Ledger
from ledger.audit.replay import replay_balances
from ledger.audit.routes import AsOfLimit, AuditRoutes
from ledger.domain.errors import TooManyRequests
from ledger.ops.settings import Settings
from ledger.store import LedgerStore

from .conftest import ADMIN_KEY, CliRunner, History, Http
from .test_time_travel import END_OF_D, FAR, money, query, scripted

#: money events of the scripted seller (test_time_travel.scripted): 5 orders
#: placed, 3 captures, 1 refund, 1 cancellation, 1 payout
SCRIPTED_MONEY_EVENTS = 11
#: of them recorded by the instant K: o1 placed and captured, o2, o5 and o3
#: placed (the reader reads what was known; the fold then drops o3, after D)
SCRIPTED_KNOWN_AT_K = 5


async def others(history: History, orders: int, sellers: int = 10, tag: str = "") -> int:
    """``orders`` orders placed and captured over ``sellers`` other sellers; the events written."""
    tag = tag or uuid.uuid4().hex[:6]
    names = [f"bulk-{n}-{tag}" for n in range(sellers)]
    for name in names:
        await history.seller(name)
    for start in range(0, orders, 500):
        batch = range(start, min(start + 500, orders))
        await asyncio.gather(*(
            history.place(names[i % sellers], f"b{i}-{tag}", "1000", "2026-12-01T08:00:00+08:00")
            for i in batch
        ))  # fmt: skip
        await asyncio.gather(*(
            history.capture(f"b{i}-{tag}", "1000", "2026-12-01T08:30:00+08:00", fee="7")
            for i in batch
        ))  # fmt: skip
    return sellers + 2 * orders


def replayed(run_json: dict[str, Any], seller: str) -> dict[str, Any]:
    (found,) = [b for b in run_json["balances"] if b["seller_id"] == seller]
    return found


async def test_as_of_reads_only_the_sellers_events_and_equals_the_full_replay(
    history: History, http: Http, astore: LedgerStore, cli: CliRunner
) -> None:
    written = await others(history, 1500)
    h = await scripted(history)
    seller, k = h["seller"], h["k"].isoformat()
    head, _ = await astore.head()
    assert head > written > 3000

    for as_of, known_at, own in (
        (END_OF_D, None, SCRIPTED_MONEY_EVENTS),
        (END_OF_D, k, SCRIPTED_KNOWN_AT_K),
        (FAR, None, SCRIPTED_MONEY_EVENTS),
    ):
        status, answer = await http.get(f"/v1/sellers/{seller}/balance{query(as_of, known_at)}")
        assert status == 200, answer
        args = ["replay", "--as-of", as_of] + (["--known-at", known_at] if known_at else [])
        full = await cli(*args)  # every seller: a fold of the whole log
        assert full.rc == 0, full.err
        whole = replayed(full.json(), seller)
        assert money(answer) == money(whole), (as_of, known_at)
        assert answer["as_of_position"] == whole["as_of_position"]
        one = await cli(*args, "--seller", seller)
        assert money(replayed(one.json(), seller)) == money(whole)

        # the cost: this seller's money events, not the log's thousands
        fold = await replay_balances(
            astore,
            as_of=answer_time(as_of),
            known_at=answer_time(known_at) if known_at else None,
            seller_id=seller,
        )
        assert fold.events_read == own, (as_of, known_at)

    # the new column is no part of the hash chain
    verified = await cli("verify")
    assert verified.rc == 0, verified.out + verified.err


def answer_time(text: str) -> Any:
    from ledger.domain.commands import parse_timestamp

    return parse_timestamp(text, "as_of")


async def test_migration_labels_an_existing_log(
    history: History, http: Http, apool: asyncpg.Pool, astore: LedgerStore
) -> None:
    """A log written before migration 5 gets its seller column from the stored
    state, and a row altered into non-JSON does not stop the migration."""
    await others(history, 200)
    h = await scripted(history)
    seller = h["seller"]
    expected = (await http.get(f"/v1/sellers/{seller}/balance{query(END_OF_D)}"))[1]
    await apool.execute("ALTER TABLE omniledger_events DROP COLUMN seller_id")
    await apool.execute("DELETE FROM schema_migrations WHERE version = 5")
    altered = await apool.fetchval(
        "SELECT min(notification_id) FROM omniledger_events WHERE type = 'order.placed'"
    )
    await apool.execute(
        "UPDATE omniledger_events SET state = '\\xff00'::bytea WHERE notification_id = $1", altered
    )

    assert await astore.migrate() == [5]

    unlabelled = await apool.fetch(
        "SELECT notification_id FROM omniledger_events WHERE seller_id IS NULL"
        " AND type NOT LIKE 'suspense.%' AND type <> 'reconciliation.recorded'"
    )
    assert [r[0] for r in unlabelled] == [altered]
    status, answer = await http.get(f"/v1/sellers/{seller}/balance{query(END_OF_D)}")
    assert status == 200, answer
    assert money(answer) == money(expected)
    fold = await replay_balances(astore, as_of=answer_time(END_OF_D), seller_id=seller)
    assert fold.events_read == SCRIPTED_MONEY_EVENTS


@pytest.fixture
async def limited(fresh_db: str, aledger: Ledger, astore: LedgerStore) -> AsyncIterator[Http]:
    """The app allowing one as-of read in flight (and no time share bound)."""
    settings = Settings(
        database_url=fresh_db, admin_key=ADMIN_KEY, as_of_reads_max=1, as_of_time_share_pct=100
    )
    app = create_app(settings, aledger, astore, extensions=[AuditRoutes()])
    async with TestClient(TestServer(app)) as client:
        yield Http(client)


async def test_as_of_reads_past_the_limit_get_429_while_writes_succeed(
    history: History, http: Http, limited: Http
) -> None:
    tag = uuid.uuid4().hex[:6]
    # one seller with 3000 money events: each of its reads takes a while
    await others(history, 1500, sellers=1, tag=tag)
    big, small = f"bulk-0-{tag}", f"small-{tag}"
    await history.seller(small)
    as_of = query(FAR)

    async def read(app: Http, seller: str) -> tuple[int, dict[str, Any], str | None]:
        resp = await app.client.get(f"/v1/sellers/{seller}/balance{as_of}", headers=app.headers)
        return resp.status, await resp.json(), resp.headers.get("Retry-After")

    async def write(i: int, round_: int) -> int:
        status, body = await http.post_json("/v1/events", {
            "type": "order.placed", "idempotency_key": f"w{i}-{round_}-{tag}",
            "seller_id": small, "order_id": f"w{i}-{round_}-{tag}", "channel": "qris",
            "amount": "1000", "occurred_at": "2026-12-02T08:00:00+08:00",
        })  # fmt: skip
        assert status == 201, body
        return status

    refusals: dict[str, list[str]] = {"seller": [], "process": []}
    for round_ in range(5):  # concurrency is timing: a few rounds until both limits showed
        answers = await asyncio.gather(
            *(read(http, big) for _ in range(4)),  # default app: one per seller
            read(limited, big),  # limited app: one in flight in all
            *(read(limited, small) for _ in range(3)),
            *(write(i, round_) for i in range(20)),
        )
        reads = answers[:8]
        assert any(status == 200 for status, _, _ in reads)
        for index, (status, body, retry_after) in enumerate(reads):
            assert status in (200, 429), body
            if status == 429:
                assert retry_after == "1"
                assert body["error"]["code"] == "too_many_requests", body
                refusals["seller" if index < 4 else "process"].append(body["error"]["message"])
        if refusals["seller"] and refusals["process"]:
            break
    assert refusals["seller"], "no concurrent read of one seller was refused"
    assert refusals["process"], "no read past the in-flight bound was refused"
    assert all("this seller" in m for m in refusals["seller"])
    # the slots are given back: one read at a time is answered
    assert (await read(limited, small))[0] == 200
    assert (await read(http, big))[0] == 200
    status, answer = await http.get(f"/v1/sellers/{small}/balance")
    assert answer["pending"] == f"{20 * (round_ + 1) * 1000}.00"


def test_as_of_limit_bounds_in_flight_per_seller_and_time_share() -> None:
    now = [100.0]
    limit = AsOfLimit(reads_max=2, share_pct=25, clock=lambda: now[0])
    with limit.slot("a"):
        with pytest.raises(TooManyRequests, match="this seller"):
            with limit.slot("a"):
                pass
        with limit.slot("b"):
            with pytest.raises(TooManyRequests, match="2 balances"):
                with limit.slot("c"):
                    pass
    # a read of 3 s spends the 1 s banked and 2 s more; 25% of the clock
    # from its start earns them back 8 s after it started: until then, 429
    with limit.slot("a"):
        now[0] += 3.0
    now[0] += 4.9
    with pytest.raises(TooManyRequests, match="share"):
        with limit.slot("a"):
            pass
    now[0] += 0.2
    with limit.slot("a"):
        pass
