"""The one-statement commit (``APPEND_AT_HEAD``) falls back when another process wrote.

A store writes a batch in one statement only while the head is where its own
last commit left it and no race check finds anything; otherwise it writes
nothing and commits the long way (head lock, race checks, drops). Here a
second ``serve`` process is a Ledger on a store object of its own (the
``replica`` fixture shares the session's store, so it shares what that store
knows of the head).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from ledger.app.ledger import Ledger
from ledger.contract.messages import chain_hash
from ledger.domain.commands import parse_command
from ledger.store import LedgerStore
from ledger.store.units import CommitOutcome


class _CountingStore(LedgerStore):
    """The real store; counts its one-statement commits that wrote and that fell back."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.at_head = {"written": 0, "fell_back": 0}

    async def _commit_at_head(self, *args: Any, **kwargs: Any) -> CommitOutcome | None:
        outcome = await super()._commit_at_head(*args, **kwargs)
        self.at_head["written" if outcome is not None else "fell_back"] += 1
        return outcome


@pytest.fixture
async def other(pool: asyncpg.Pool) -> AsyncIterator[tuple[Ledger, _CountingStore]]:
    store = _CountingStore(pool)
    ledger = Ledger(store)
    ledger.start()
    yield ledger, store
    await ledger.stop()


def _placed(seller: str, order_id: str, amount: str = "1000") -> Any:
    return parse_command({
        "idempotency_key": f"p-{order_id}", "type": "order.placed", "seller_id": seller,
        "order_id": order_id, "channel": "qris", "amount": amount,
        "occurred_at": "2026-11-30T10:00:00+08:00",
    })  # fmt: skip


def _captured(order_id: str, amount: str, ref: str) -> Any:
    return parse_command({
        "idempotency_key": f"c-{ref}", "type": "payment.captured", "order_id": order_id,
        "channel": "qris", "amount": amount, "gateway": "xendit", "gateway_ref": ref,
        "occurred_at": "2026-11-30T10:00:00+08:00",
    })  # fmt: skip


async def _assert_chained(store: LedgerStore) -> None:
    head, head_hash = await store.head()
    log = await store.read_log(0, head + 1)
    assert [e["position"] for e in log] == list(range(1, head + 1)), "positions 1..N"
    prev = log[0]["prev_hash"]
    for e in log:
        assert e["prev_hash"] == prev, f"position {e['position']}: prev_hash breaks the chain"
        assert e["hash"] == chain_hash(e["prev_hash"], e), f"position {e['position']}: bad hash"
        prev = e["hash"]
    assert prev == head_hash


async def test_a_head_moved_by_another_process_is_committed_the_long_way(api, ledger, other, uid):
    mine, store = other
    seller = uid("s")
    await api.seller(seller)
    first = await mine.record(_placed(seller, uid("o1")))  # learns the head
    theirs = await ledger.record(_placed(seller, uid("o2")))  # moves it
    fell_back = store.at_head["fell_back"]
    third = await mine.record(_placed(seller, uid("o3")))
    assert store.at_head["fell_back"] == fell_back + 1
    written = store.at_head["written"]
    fourth = await mine.record(_placed(seller, uid("o4")))
    assert store.at_head["written"] == written + 1
    positions = [r.position for r in (first, theirs, third, fourth)]
    assert positions == sorted(positions) and len(set(positions)) == 4
    assert fourth.position == third.position + 1
    await _assert_chained(store)


async def test_a_stale_cache_under_an_unmoved_head_is_caught_and_decided_again(
    api, ledger, other, uid
):
    """The head is where this process left it, but the order it cached was
    captured by another process before that: the statement's race check
    refuses to write, the long way drops the unit, and it is decided again
    on the order as it is now."""
    mine, store = other
    seller, order_id = uid("s"), uid("o")
    await api.seller(seller)
    await mine.record(_placed(seller, order_id))  # cached here at version 1
    await ledger.record(_captured(order_id, "400", uid("r1")))  # version 2, elsewhere
    await mine.record(_placed(seller, uid("o-sync")))  # the head is known again here
    fell_back = store.at_head["fell_back"]
    late = await mine.record(_captured(order_id, "600", uid("r2")))
    assert store.at_head["fell_back"] >= fell_back + 1
    assert (late.status, late.version) == ("recorded", 3)
    status, body = await api.get(f"/v1/sellers/{seller}/balance")
    assert status == 200, body
    assert body["captured_total"] == "1000.00"
    # and the order is full: one more capture is refused on fresh state here too
    with pytest.raises(Exception, match="more than the order amount"):
        await mine.record(_captured(order_id, "1", uid("r3")))
    await _assert_chained(store)
