"""One fetched batch of :class:`projections.consumer.Consumer`: its items, the
run of them without a gap (filled from the log), and the rows of its poison.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson
from nats.aio.msg import Msg

from projections import envelope
from projections.envelope import PoisonMessage
from projections.puller import stream_seq

__all__ = [
    "FILL_MAX",
    "Item",
    "Pace",
    "ReadLog",
    "decode_shared",
    "poison_row",
    "recorded_at",
    "run_from",
    "without_gaps",
]

# the log lines keep the name they had when this was part of projections/consumer.py
log = logging.getLogger("projections.consumer")

#: At most this many positions the stream left out are read from the log per batch.
FILL_MAX: Final = 5000

#: Decoded envelopes kept for the other consumers of the process: about two
#: batches of each of three read models (a decoded message is ~1-2 KB).
DECODED_MAX: Final = 8192

#: A consumer that fetched a full batch waits while another is this many
#: positions behind it: well inside ``DECODED_MAX`` with a batch on top, so
#: what the leader decoded is still there when the last one comes by.
LEAD_MAX: Final = 4096
#: ... and no further than this: beyond it the cache cannot serve it anyway.
REACH_MAX: Final = 4 * DECODED_MAX
#: ... but never longer than this per batch: a slow or stuck model does not stall the others.
PACE_WAIT_MAX_S: Final = 1.0

#: ``read_log(after, limit)``: up to ``limit`` messages of the log after ``after``, in order.
ReadLog = Callable[[int, int], Awaitable[list[dict[str, Any]]]]


@dataclass(slots=True)
class Item:
    msg: Msg | None  # None: read from the log to fill a gap the stream left
    position: int | None  # trusted only when the envelope decoded (hash checked)
    message: dict[str, Any] | None
    fact: Any
    error: str | None


async def without_gaps(
    stored: int,
    fresh: dict[int, Item],
    *,
    read_log: ReadLog | None,
    parse: Callable[[dict[str, Any]], Any],
    name: str,
) -> tuple[list[Item], int | None]:
    """The fresh items from ``stored + 1`` on, in order, with no position missing.

    The log has no gaps, so a gap here is a message the stream did not hand
    over (naked after a failed batch while newer ones came, aged out or
    purged, unreadable): applying past it would lose it for good, since
    everything at or below the stored position is skipped. The missing
    positions are read from the log itself (the truth); without a log
    reader, only the items before the first gap are applied and the
    cursor is re-aligned after them. Returns the run and, when it stops
    short of a gap, the position the cursor must be re-aligned after.
    """
    if not fresh:
        return [], None
    last = max(fresh)
    if last - stored == len(fresh):
        return [fresh[p] for p in range(stored + 1, last + 1)], None
    if read_log is None:
        ordered = run_from(fresh, stored + 1, last)
        return ordered, stored + len(ordered)
    through = min(last, stored + FILL_MAX)
    log.warning(
        "projection %s: the stream did not deliver every position in %d-%d; "
        "reading the missing ones from the log",
        name,
        stored + 1,
        through,
    )
    for message in await read_log(stored, through - stored):
        position = message["position"]
        if position not in fresh:
            try:
                fresh[position] = Item(None, position, message, parse(message), None)
            except PoisonMessage as e:
                fresh[position] = Item(None, position, message, None, str(e))
    ordered = run_from(fresh, stored + 1, through)
    if len(ordered) != through - stored:  # the log itself is short: never skip ahead
        return ordered, stored + len(ordered)
    return ordered, None


#: an OrderedDict: popping a plain dict's first key again and again scans the
#: dead slots left at its front (quadratic until the dict is resized)
_decoded: collections.OrderedDict[tuple[bool, bytes], dict[str, Any]] = collections.OrderedDict()


def decode_shared(body: bytes, *, verify_hash: bool) -> dict[str, Any]:
    """``envelope.decode(body)``, once per body for all the consumers of this process.

    The read models each have a consumer of the same stream, so the same
    bytes arrive up to three times, close together; decoding them (JSON,
    timestamps, the hash check) is the largest part of a message's cost.
    The same bytes always decode to the same message, so a recent result is
    handed out again. It is shared: nothing may modify it (the parse
    functions and the consumer only read). A poison body is not kept.
    """
    key = (verify_hash, body)
    message = _decoded.get(key)
    if message is None:
        message = envelope.decode(body, verify_hash=verify_hash)
        if len(_decoded) >= DECODED_MAX:
            _decoded.popitem(last=False)  # the oldest
        _decoded[key] = message
    return message


class Pace:
    """Keeps the consumers of one process close together on the stream while they catch up.

    Each consumer decodes what ``decode_shared`` does not hold yet. Left
    alone, the model with the cheapest fold runs ahead through a backlog and
    the cache no longer holds what the slower ones need: each message is
    decoded up to once per model. So a consumer whose last fetch came back
    full (a backlog, not live traffic: a short fetch never waits) waits
    while another running consumer of the process (between ``join`` and
    ``leave``) is more than ``lead_max`` positions behind it, at most
    ``wait_max_s`` per batch. One further behind than ``reach_max`` (a
    model reset to zero, one that was failing) is not waited for: the
    cache cannot serve it anyway, and the others would crawl at a batch per
    ``wait_max_s``. Positions are comparable because every consumer reads
    the same stream with the same filter.
    """

    def __init__(
        self,
        *,
        lead_max: int = LEAD_MAX,
        reach_max: int = REACH_MAX,
        wait_max_s: float = PACE_WAIT_MAX_S,
    ) -> None:
        self.lead_max = lead_max
        self.reach_max = reach_max
        self.wait_max_s = wait_max_s
        self._positions: dict[object, int] = {}
        self._moved = asyncio.Event()

    def join(self, who: object, position: int) -> None:
        """``who`` runs from ``position``; the others may wait for it."""
        self.moved(who, position)

    def leave(self, who: object) -> None:
        """``who`` stopped (closed, or its batch failed): nobody waits for it."""
        if self._positions.pop(who, None) is not None:
            self._wake()

    def moved(self, who: object, position: int) -> None:
        self._positions[who] = position
        self._wake()

    def lagging(self, who: object) -> bool:
        """Whether a running consumer is behind ``who`` by more than ``lead_max``
        and at most ``reach_max``."""
        mine = self._positions.get(who)
        if mine is None:
            return False
        low, high = mine - self.reach_max, mine - self.lead_max
        return any(low <= p < high for p in self._positions.values())

    async def wait(self, who: object) -> None:
        """Returns once no consumer is ``lagging`` behind ``who``, or after ``wait_max_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_max_s
        while self.lagging(who):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._moved.wait(), remaining)
            except TimeoutError:
                return

    def _wake(self) -> None:
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()


def run_from(items: dict[int, Item], first: int, last: int) -> list[Item]:
    """``items[first]``, ``items[first + 1]``, ... up to ``last`` or the first one missing."""
    run = []
    for position in range(first, last + 1):
        item = items.get(position)
        if item is None:
            break
        run.append(item)
    return run


def poison_row(name: str, item: Item) -> tuple[Any, ...]:
    error = (item.error or "")[:2000]
    if item.msg is None:  # read from the log, not the stream
        assert item.message is not None
        body = orjson.dumps(item.message)
        return (name, 0, f"log:{item.message.get('type')}"[:200], item.position, body, error)
    return (name, stream_seq(item.msg), item.msg.subject, item.position, item.msg.data, error)


def recorded_at(message: dict[str, Any]) -> datetime | None:
    try:
        return envelope.recorded_at(message)
    except PoisonMessage:
        return None
