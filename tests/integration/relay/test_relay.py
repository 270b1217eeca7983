"""The relay puts every committed event on the stream once, in order, and survives crashes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

import asyncpg
import nats
import orjson
from nats.js import api as js_api

from ledger.relay.relay import RELAY_LOCK_KEY, Relay
from ledger.store import LedgerStore
from tests.integration.relay.conftest import stream_messages, write_history


async def _wait_until(predicate, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def _run(relay: Relay) -> asyncio.Task:
    return asyncio.create_task(relay.run())


async def _stop(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _publish_history(rpool, rledger, relay_config) -> int:
    """Writes the standard history and runs a relay until all of it is published."""
    total = await write_history(rledger)
    relay = Relay(rpool, relay_config)
    task = await _run(relay)
    try:
        await _wait_until(lambda: _published(relay, total))
    finally:
        await _stop(task)
    return total


async def test_every_event_reaches_the_stream_once_in_order(rpool, rledger, relay_config, nats_url):
    total = await _publish_history(rpool, rledger, relay_config)
    log = await LedgerStore(rpool).read_log(0, 10_000)
    msgs = await stream_messages(nats_url, relay_config.stream_name)
    assert [m.seq for m in msgs] == [e["position"] for e in log] == list(range(1, total + 1))
    for m, event in zip(msgs, log, strict=True):
        assert m.headers["Nats-Msg-Id"] == str(event["position"])
        assert m.subject == f"{relay_config.subject_prefix}.{event['type']}"
        assert orjson.loads(m.data) == event


async def _published(relay: Relay, position: int) -> bool:
    return relay.published_position >= position


async def test_new_commits_wake_the_relay(rpool, rledger, relay_config, nats_url):
    relay = Relay(rpool, relay_config)
    task = await _run(relay)
    try:
        await _wait_until(lambda: _leader(relay))
        total = await write_history(rledger, sellers=1, orders=3)
        await _wait_until(lambda: _published(relay, total), timeout_s=5)
    finally:
        await _stop(task)
    assert len(await stream_messages(nats_url, relay_config.stream_name)) == total


async def _leader(relay: Relay) -> bool:
    return relay.is_leader


async def test_killed_between_publish_and_checkpoint_loses_and_doubles_nothing(
    rpool, rledger, relay_config, nats_url
):
    total = await _publish_history(rpool, rledger, relay_config)
    # Simulate the crash window: the stream has everything, the checkpoint lags behind.
    await LedgerStore(rpool).set_relay_checkpoint(relay_config.stream_name, 3)
    more = await write_history(rledger, sellers=1, orders=2)
    relay2 = Relay(rpool, relay_config)
    task = await _run(relay2)
    try:
        await _wait_until(lambda: _leader(relay2))
        await _wait_until(lambda: _published(relay2, total + more))
    finally:
        await _stop(task)
    msgs = await stream_messages(nats_url, relay_config.stream_name)
    assert [m.seq for m in msgs] == list(range(1, total + more + 1))
    assert len({m.headers["Nats-Msg-Id"] for m in msgs}) == len(msgs)


async def test_deleted_stream_is_restored_from_postgresql(rpool, rledger, relay_config, nats_url):
    total = await write_history(rledger)
    relay = Relay(rpool, relay_config)
    task = await _run(relay)
    try:
        await _wait_until(lambda: _published(relay, total))
        nc = await nats.connect(nats_url)
        await nc.jetstream().delete_stream(relay_config.stream_name)
        await nc.close()
        # the next commit makes the relay notice; it refills from position 1
        total += await write_history(rledger, sellers=1, orders=1)

        async def complete() -> bool:
            try:
                msgs = await stream_messages(nats_url, relay_config.stream_name)
            except Exception:
                return False
            return len(msgs) == total

        await _wait_until(complete, timeout_s=15)
    finally:
        await _stop(task)
    msgs = await stream_messages(nats_url, relay_config.stream_name)
    log = await LedgerStore(rpool).read_log(0, 10_000)
    assert [orjson.loads(m.data) for m in msgs] == log


async def test_a_page_refused_in_the_middle_is_not_taken_as_published(
    rpool, rledger, relay_config, nats_url, caplog
):
    """A page asks for one ack, its last message's: the stream refusing the page
    from its fourth message on (a limit, as a cluster without a stream leader
    refuses everything) is seen, nothing past what the stream holds counts as
    published, and the relay completes the stream once the stream takes
    messages again."""
    total = await _publish_history(rpool, rledger, relay_config)
    more = await write_history(rledger, sellers=1, orders=5)  # one page of 11 events
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    config = (await js.stream_info(relay_config.stream_name)).config
    limited = dataclasses.replace(config, max_msgs=total + 3, discard=js_api.DiscardPolicy.NEW)
    await js.update_stream(limited)
    relay = Relay(rpool, relay_config)
    task = await _run(relay)
    try:

        async def refused_twice() -> bool:
            return sum("publish refused" in r.getMessage() for r in caplog.records) >= 2

        await _wait_until(refused_twice)
        assert relay.published_position == total + 3
        assert await LedgerStore(rpool).relay_checkpoint(relay_config.stream_name) <= total + 3
        await js.update_stream(config)
        await _wait_until(lambda: _published(relay, total + more))
    finally:
        await _stop(task)
        await nc.close()
    msgs = await stream_messages(nats_url, relay_config.stream_name)
    log = await LedgerStore(rpool).read_log(0, 10_000)
    assert [m.seq for m in msgs] == list(range(1, total + more + 1))
    assert [orjson.loads(m.data) for m in msgs] == log


async def test_one_relay_is_active_and_a_standby_takes_over(rpool, rledger, relay_config, nats_url):
    first, second = Relay(rpool, relay_config), Relay(rpool, relay_config)
    t1 = await _run(first)
    await _wait_until(lambda: _leader(first))
    t2 = await _run(second)
    await asyncio.sleep(0.6)
    assert first.is_leader and not second.is_leader
    await _stop(t1)
    try:
        await _wait_until(lambda: _leader(second), timeout_s=5)
        total = await write_history(rledger, sellers=1, orders=2)
        await _wait_until(lambda: _published(second, total))
    finally:
        await _stop(t2)
    assert len(await stream_messages(nats_url, relay_config.stream_name)) == total


async def test_a_stream_whose_messages_aged_out_is_resumed_after_its_last_sequence(
    rpool, rledger, relay_config, nats_url
):
    """Max age or max bytes (or a purge) can leave a stream with no message but
    its sequence numbers: a restarted relay resumes after the last one, instead
    of failing on the message it cannot read (it looped on that, forever)."""
    total = await _publish_history(rpool, rledger, relay_config)
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().purge_stream(relay_config.stream_name)
        state = (await nc.jetstream().stream_info(relay_config.stream_name)).state
        assert (state.messages, state.last_seq) == (0, total)
    finally:
        await nc.close()
    more = await write_history(rledger, sellers=1, orders=2)
    relay2 = Relay(rpool, relay_config)
    task = await _run(relay2)
    try:
        await _wait_until(lambda: _published(relay2, total + more), timeout_s=10)
    finally:
        await _stop(task)
    msgs = await stream_messages(nats_url, relay_config.stream_name)
    log = await LedgerStore(rpool).read_log(total, 10_000)
    assert [m.seq for m in msgs] == [e["position"] for e in log]
    assert [orjson.loads(m.data) for m in msgs] == log


async def test_a_relay_that_lost_its_lock_never_deletes_the_stream(
    rpool, rledger, relay_config, nats_url, fresh_db
):
    """The leader's lock connection dies (a network cut, a restart of its
    backend) and another process holds the lock now. When its next publish is
    refused, the old leader must step down, not delete and refill the stream
    that the new leader owns."""
    total = await write_history(rledger, sellers=1, orders=2)
    relay = Relay(rpool, dataclasses.replace(relay_config, ack_timeout_s=1.0))
    task = await _run(relay)
    holder = await asyncpg.connect(fresh_db)  # the next leader, as far as locks go
    nc = await nats.connect(nats_url)
    try:
        await _wait_until(lambda: _published(relay, total))
        js = nc.jetstream()
        created = (await js.stream_info(relay_config.stream_name)).created
        pid = await holder.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            RELAY_LOCK_KEY,
        )
        assert await holder.fetchval("SELECT pg_terminate_backend($1)", pid)

        async def taken() -> bool:  # once the terminated backend has exited
            return bool(await holder.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY))

        await _wait_until(taken, timeout_s=5)
        # a message the new leader published, then a commit that wakes the old one
        await js.publish(
            f"{relay_config.subject_prefix}.foreign", b"{}", stream=relay_config.stream_name
        )
        await write_history(rledger, sellers=1, orders=1)
        await _wait_until(lambda: _not_leader(relay), timeout_s=5)
        await asyncio.sleep(0.5)
        info = await js.stream_info(relay_config.stream_name)
        assert info.created == created, "the stream was deleted and made again"
        # (what the old leader published before it noticed may have landed after
        # the foreign message: each at the sequence after the last, as a real new
        # leader's would; only deleting the stream would lose that order)
    finally:
        await _stop(task)
        await holder.close()
        await nc.close()


async def _not_leader(relay: Relay) -> bool:
    return not relay.is_leader
