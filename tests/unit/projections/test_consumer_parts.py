"""The consumer's small helpers: where a stored message sits, which sequence a delivery
is, how the consumers of one process keep pace."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from nats.aio.msg import Msg

from projections.batch import Pace
from projections.cursor import position_of
from projections.puller import stream_seq


@pytest.mark.parametrize(
    ("headers", "data", "position"),
    [
        ({"Nats-Msg-Id": "42"}, b"{}", 42),
        ({"Nats-Msg-Id": "old-42"}, orjson.dumps({"position": 41}), 41),  # body when id is not one
        (None, orjson.dumps({"position": 7}), 7),
        (None, b"not json", None),
        (None, orjson.dumps({"position": "7"}), None),
        (None, None, None),
    ],
)
def test_position_of_a_stored_message(
    headers: dict[str, str] | None, data: bytes | None, position: int | None
) -> None:
    assert position_of(headers, data) == position


@pytest.mark.parametrize(
    ("reply", "seq"),
    [
        ("$JS.ACK.LEDGER.projection_balances.1.42.40.1764540000000000000.3", 42),
        ("$JS.ACK.hub.ACCHASH.LEDGER.projection_balances.2.42.40.1764540000000000000.3", 42),
        ("$JS.ACK.hub.ACCHASH.LEDGER.c.2.42.40.1764540000000000000.3.rnd", 42),
        ("_INBOX.abc", 0),
        ("", 0),
    ],
)
def test_stream_seq_from_the_ack_subject(reply: str, seq: int) -> None:
    msg = Msg(None, subject="ledger.order.placed", reply=reply, data=b"")  # type: ignore[arg-type]
    assert stream_seq(msg) == seq
    if seq:
        assert msg.metadata.sequence.stream == seq  # what nats-py reads from it too


def test_server_failures_are_one_line_not_a_traceback() -> None:
    """Issue 13: a projection child killed with the service (its database gone)
    printed a 40-line asyncpg traceback per read model; these are logged in one
    line and retried, a bug still with its traceback."""
    import asyncpg
    import nats.errors

    from projections.consumer import _UNAVAILABLE

    for error in (
        ConnectionRefusedError(111, "Connection refused"),
        asyncpg.CannotConnectNowError("the database system is shutting down"),
        asyncpg.InternalClientError("cannot switch to state 12"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        nats.errors.ConnectionClosedError(),
    ):
        assert isinstance(error, _UNAVAILABLE), error
    assert not isinstance(ValueError("a bug"), _UNAVAILABLE)
    assert not isinstance(asyncpg.UniqueViolationError("a bug"), _UNAVAILABLE)


async def test_pace_holds_the_leader_until_the_one_behind_comes_near() -> None:
    pace = Pace(lead_max=100, reach_max=1000, wait_max_s=5.0)
    leader, behind = object(), object()
    pace.join(leader, 500)
    pace.join(behind, 300)
    assert pace.lagging(leader) and not pace.lagging(behind)
    waiting = asyncio.create_task(pace.wait(leader))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    pace.moved(behind, 350)  # still more than 100 behind
    await asyncio.sleep(0.05)
    assert not waiting.done()
    pace.moved(behind, 400)
    await asyncio.wait_for(waiting, 1.0)


async def test_pace_waits_for_no_one_out_of_reach_stopped_or_slow_for_long() -> None:
    pace = Pace(lead_max=100, reach_max=1000, wait_max_s=0.1)
    leader, far, failing = object(), object(), object()
    pace.join(leader, 5000)
    pace.join(far, 3000)  # out of reach: the cache could not serve it anyway
    assert not pace.lagging(leader)
    pace.join(failing, 4500)
    assert pace.lagging(leader)
    pace.leave(failing)
    assert not pace.lagging(leader)
    pace.join(failing, 4500)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(pace.wait(leader), 1.0)  # gives up after wait_max_s
    assert 0.09 <= loop.time() - started < 0.5
