"""The consumer's small pure helpers: where a stored message sits, which sequence a delivery is."""

from __future__ import annotations

import orjson
import pytest
from nats.aio.msg import Msg

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
