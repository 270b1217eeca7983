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
