"""The JetStream durable consumer as a cursor over the stream, for
:class:`projections.consumer.Consumer` (its base class).

The stored position is the truth and the JetStream consumer only a cursor.
At start the consumer keeps the durable only if it has handed out nothing
beyond the stored position and has nothing left unacked (a worker that died
mid-batch leaves some: waiting ``ack_wait`` for them would stall); otherwise,
and always after a rebuild has swapped tables in (the row's ``generation``
changed), it deletes the durable and creates it again at the first stream
sequence whose position is above the stored one. That sequence is found by
a binary search over the stream (one message get per step) rather than
assumed to equal the position: a stream that was recreated, trimmed, or has a duplicate republished
outside the dedupe window does not line up. The search assumes positions do
not decrease along the stream, which the relay guarantees by publishing in
position order; the skip by position makes any earlier start harmless.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import nats.js.errors
import orjson
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from projections.projection import Projection

__all__ = ["DurableCursor", "position_of"]

# the log lines keep the name they had when this was part of projections/consumer.py
log = logging.getLogger("projections.consumer")

_MSG_ID: Final = "Nats-Msg-Id"

#: How many undecodable messages the start search steps over before it gives
#: up and starts earlier (earlier is always safe: skipped by position).
_SEARCH_SKIP_MAX: Final = 64


class DurableCursor:
    """Finds where the durable must start and re-creates it there; the
    consumer's settings it reads are set by :class:`~projections.consumer.Consumer`."""

    projection: Projection
    stream: str
    durable: str
    filter_subject: str
    batch_size_max: int
    ack_wait_s: float
    _js: JetStreamContext

    async def _consumer_info(self) -> Any:
        try:
            return await self._js.consumer_info(self.stream, self.durable)
        except nats.js.errors.NotFoundError:
            return None

    async def _cursor_ok(self, info: Any, stored: int) -> bool:
        """Whether the existing durable can resume without losing a position above ``stored``."""
        config = info.config
        if (
            config.filter_subject != self.filter_subject
            or config.max_ack_pending != self.batch_size_max
            or config.ack_policy != AckPolicy.ALL
        ):
            return False
        if info.num_ack_pending:
            return False  # left by a worker that died mid-batch: reset now, not after ack_wait
        delivered = info.delivered.stream_seq if info.delivered else 0
        if delivered == 0:
            return stored == 0
        position = await self._position_at(delivered)
        return position is not None and position <= stored

    async def _recreate(self, after_position: int) -> None:
        start_seq = await self.start_sequence(after_position)
        try:
            await self._js.delete_consumer(self.stream, self.durable)
        except nats.js.errors.NotFoundError:
            pass
        await self._js.add_consumer(
            self.stream,
            ConsumerConfig(
                durable_name=self.durable,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=start_seq,
                ack_policy=AckPolicy.ALL,
                ack_wait=self.ack_wait_s,
                max_ack_pending=self.batch_size_max,
                filter_subject=self.filter_subject,
            ),
        )
        log.info(
            "projection %s: consumer %s starts at stream seq %d (after position %d)",
            self.projection.name,
            self.durable,
            start_seq,
            after_position,
        )

    async def start_sequence(self, after_position: int) -> int:
        """The first stream sequence whose message has a position above ``after_position``.

        Binary search over ``[first_seq, last_seq + 1]``: the predicate "the
        next message at or after ``seq`` is above ``after_position`` (or there
        is none)" is false then true along the stream.
        """
        state = (await self._js.stream_info(self.stream)).state
        lo, hi = max(1, state.first_seq), state.last_seq + 1
        if state.messages == 0 or after_position == 0:
            return lo if after_position == 0 else hi
        while lo < hi:
            mid = (lo + hi) // 2
            if await self._above(mid, after_position):
                hi = mid
            else:
                lo = mid + 1
        return lo

    async def _above(self, seq: int, after_position: int) -> bool:
        for _ in range(_SEARCH_SKIP_MAX):
            try:
                raw = await self._js.get_msg(
                    self.stream, seq=seq, subject=self.filter_subject, next=True
                )
            except nats.js.errors.NotFoundError:
                return True  # nothing at or after seq: starting here misses nothing
            position = position_of(raw.headers, raw.data)
            if position is not None:
                return position > after_position
            seq = (raw.seq or seq) + 1
        return True

    async def _position_at(self, seq: int) -> int | None:
        try:
            raw = await self._js.get_msg(self.stream, seq=seq)
        except nats.js.errors.NotFoundError:
            return None
        return position_of(raw.headers, raw.data)


def position_of(headers: dict[str, str] | None, data: bytes | None) -> int | None:
    """A stored message's position: its ``Nats-Msg-Id``, else its body's, else ``None``."""
    msg_id = (headers or {}).get(_MSG_ID)
    if msg_id is not None and msg_id.isdigit():
        return int(msg_id)
    try:
        position = orjson.loads(data or b"").get("position")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return position if type(position) is int else None
