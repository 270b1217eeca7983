"""JetStream pull requests for :class:`projections.consumer.Consumer`.

Pull requests (NATS ADR-13) are made here rather than with nats-py's
``PullSubscription.fetch``, which waits for each message with its own task
and ``wait_for`` (about 250 us a message, a ceiling near 4,000 events/s):
:class:`Puller` keeps one callback subscription on ``<inbox>.*``, sends a
``no_wait`` request for what is there, and only when nothing is, a lingering
request that returns with the first message. On the projections' own client
(:class:`StatusOnlyClient`) its deliveries skip nats-py's queue and callback
task as well.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any, Final

import nats.errors
import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import DEFAULT_PREFIX

__all__ = ["ConsumerGone", "Puller", "StatusOnlyClient", "stream_seq"]


#: ``NATS/1.0``: the header block's first line; a space after it starts a status
_HEADER_LINE_BYTES: Final = 8
_SPACE: Final = 32


class StatusOnlyClient(NATS):
    """A NATS client that keeps a message's status and drops its other headers,
    and hands a puller's deliveries straight to it.

    The relay stores ``Nats-Msg-Id`` and ``Nats-Expected-Last-Sequence``
    with every message, and nats-py parses them into a dict for every
    delivery: a seventh of the consumers' CPU at full speed, for headers no
    consumer reads (the position is in the body; ``stream_seq`` reads the
    reply subject). A status (``NATS/1.0 404 ...``: the end of a pull
    request, a heartbeat) is parsed as before: the puller needs it. Stored
    messages read with ``get_msg`` carry theirs in the JSON answer, untouched.

    nats-py puts every delivery of a callback subscription on an
    ``asyncio.Queue`` that a task of the subscription empties, one callback
    coroutine a message: a twentieth of the consumers' CPU, for a callback
    that only appends to a buffer. A subscription given to ``deliver_to`` has
    its messages handed to a plain function instead, as they are read; every
    other subscription goes nats-py's way.
    """

    def __init__(self) -> None:
        super().__init__()
        self._direct: dict[int, Callable[[Msg], None]] = {}

    def deliver_to(self, sub: Subscription, handler: Callable[[Msg], None] | None) -> None:
        """``handler(msg)`` for each message of ``sub`` from now on (``None``: no longer)."""
        if handler is None:
            self._direct.pop(sub._id, None)
        else:
            self._direct[sub._id] = handler

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
    ) -> None:
        handler = self._direct.get(sid)
        if handler is None:
            await super()._process_msg(sid, subject, reply, data, headers)
            return
        self.stats["in_msgs"] += 1
        self.stats["in_bytes"] += len(data)
        hdr = await self._process_headers(headers)
        handler(self._build_message(sid, subject, reply, data, hdr))

    async def _process_headers(self, headers: bytes) -> dict[str, str] | None:
        if headers and len(headers) > _HEADER_LINE_BYTES and headers[_HEADER_LINE_BYTES] != _SPACE:
            return None
        result: dict[str, str] | None = await super()._process_headers(headers)
        return result


class ConsumerGone(nats.errors.Error):
    """The durable consumer was deleted under us, or (503 "no responders", in a
    cluster) has no leader at the moment; ``run()`` starts over, which finds
    out which and re-creates it only if it is gone."""


class Puller:
    """Pull requests on one callback subscription; deliveries are buffered in order.

    Each request has its own reply subject ``<inbox>.<n>`` so that its end
    (status ``404`` no messages, ``408`` expired, ``409`` a limit) can be told
    apart from a late status of an earlier request. Messages delivered for an
    earlier lingering request are kept and handed out first: the consumer
    delivers in stream order, whichever request they answer.
    """

    def __init__(self, nc: NATS, stream: str, durable: str) -> None:
        self._nc = nc
        self._next_subject = f"{DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = nc.new_inbox()
        self._sub: Any = None
        self._buffer: collections.deque[Msg] = collections.deque()
        self._changed = asyncio.Event()
        self._requests = 0
        self._current = ""
        self._current_ended = False
        self._gone: str | None = None
        #: the last no_wait request got no answer at all: the server always
        #: answers one, unless there is no consumer to take it
        self.unanswered = False

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_msg)
        if isinstance(self._nc, StatusOnlyClient):
            self._nc.deliver_to(self._sub, self._deliver)

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        self._buffer.clear()
        if sub is not None:
            if isinstance(self._nc, StatusOnlyClient):
                self._nc.deliver_to(sub, None)
            await sub.unsubscribe()

    async def _on_msg(self, msg: Msg) -> None:
        self._deliver(msg)

    def _deliver(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None:
            self._buffer.append(msg)
        elif status != "100":  # 100 is a heartbeat
            if msg.subject == self._current:
                self._current_ended = True
            description = (msg.headers or {}).get("Description", "")
            if status == "503" or (status == "409" and "deleted" in description.lower()):
                self._gone = f"{status} {description}".strip()
        self._changed.set()

    async def fetch(self, batch: int, timeout_s: float) -> list[Msg]:
        """Up to ``batch`` messages: those buffered, else what is there, else the first to come."""
        if self._sub is None:
            raise RuntimeError("the puller is stopped")
        self.unanswered = False
        if not self._buffer:
            await self._request({"batch": batch, "no_wait": True})
            await self._wait(lambda: self._current_ended or len(self._buffer) >= batch, timeout_s)
            if not self._current_ended and not self._buffer:
                self.unanswered = True
                return []
        if not self._buffer and self._gone is None:
            expires_ns = max(1_000_000, int(timeout_s * 1e9) - 50_000_000)
            await self._request({"batch": batch, "expires": expires_ns})
            await self._wait(lambda: self._current_ended or bool(self._buffer), timeout_s)
        if self._gone is not None and not self._buffer:
            raise ConsumerGone(self._gone)
        return [self._buffer.popleft() for _ in range(min(batch, len(self._buffer)))]

    async def _request(self, body: dict[str, Any]) -> None:
        self._requests += 1
        self._current = f"{self._inbox}.{self._requests}"
        self._current_ended = False
        await self._nc.publish(self._next_subject, orjson.dumps(body), reply=self._current)

    async def _wait(self, done: Callable[[], bool], timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not done() and self._gone is None:
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return


def stream_seq(msg: Msg) -> int:
    """The stream sequence from the ack subject (ADR-15), without ``msg.metadata``.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>``,
    or with ``<domain>.<account hash>`` after ``ACK`` (and a trailing token) in
    the newer form. ``msg.metadata`` parses the same and more, a fifth of the
    consumer's CPU time at full speed.
    """
    tokens = (msg.reply or "").split(".")
    try:
        if len(tokens) == 9:
            return int(tokens[5])
        if len(tokens) >= 11:
            return int(tokens[7])
    except ValueError:
        pass
    return 0
