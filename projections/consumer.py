"""The one pull loop: fetch -> decode -> apply + advance position in one transaction -> ack.

One durable pull consumer per read model on the stream (``LEDGER``,
subjects ``<prefix>.>``). Each fetched batch is decoded and parsed outside
the database, then applied in ONE PostgreSQL transaction that also moves the
model's row in ``projection_positions``; only after the commit are the
messages acked (DESIGN rule 7). So:

- a message whose position is at or below the stored position is skipped:
  a redelivery, a duplicate publish or a replay changes nothing;
- a crash before the commit loses nothing (the stream redelivers), a crash
  after the commit and before the ack doubles nothing (skipped on redelivery);
- a message that cannot be decoded or parsed is written to
  ``projection_poison`` in the same transaction, then termed, with a log line:
  it never blocks the stream;
- a database error naks the batch with a growing delay. ``max_ack_pending``
  equals the batch size, so the server hands out nothing newer while a full
  batch waits. As a guard, a batch must start at the stream sequence after
  the last one handled; if it does not (a redelivery out of order, a
  message deleted from the stream), the cursor is re-created after the
  stored position;
- positions are applied in order and never past a gap: the log has none, so
  a position missing from what the stream handed over (naked and overtaken
  by newer messages, aged out, purged, unreadable) is read from the log in
  PostgreSQL (``read_log``) and applied in its place; without a log reader
  the batch is applied up to the gap and the cursor re-created after it.

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

One worker per read model: a second would be harmless for correctness (the
row lock and the skip by position serialise them) but they would keep
resetting each other's cursor.

Pull requests (NATS ADR-13) are made here rather than with nats-py's
``PullSubscription.fetch``, which waits for each message with its own task
and ``wait_for`` (about 250 us a message, a ceiling near 4,000 events/s):
:class:`_Puller` keeps one callback subscription on ``<inbox>.*``, sends a
``no_wait`` request for what is there, and only when nothing is, a lingering
request that returns with the first message.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg
import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import DEFAULT_PREFIX, AckPolicy, ConsumerConfig, DeliverPolicy

from ledger.contract.messages import SUBJECT_PREFIX
from projections import envelope, schema
from projections.envelope import PoisonMessage
from projections.projection import Projection

__all__ = ["DEFAULT_STREAM", "Consumer", "ConsumerGone", "StepResult"]

log = logging.getLogger(__name__)

DEFAULT_STREAM: Final = "LEDGER"
_MSG_ID: Final = "Nats-Msg-Id"
#: At most this many positions the stream left out are read from the log per batch.
_FILL_MAX: Final = 5000

#: ``read_log(after, limit)``: up to ``limit`` messages of the log after ``after``, in order.
ReadLog = Callable[[int, int], Awaitable[list[dict[str, Any]]]]

#: How many undecodable messages the start search steps over before it gives
#: up and starts earlier (earlier is always safe: skipped by position).
_SEARCH_SKIP_MAX: Final = 64


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one fetch did; for logs, metrics and tests."""

    fetched: int = 0
    applied: int = 0
    skipped: int = 0
    poison: int = 0
    failed: bool = False
    resynced: bool = False
    position: int = 0


class _GenerationChanged(Exception):
    pass


class ConsumerGone(nats.errors.Error):
    """The durable consumer was deleted under us; ``run()`` re-creates it."""


class _Puller:
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

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        self._buffer.clear()
        if sub is not None:
            await sub.unsubscribe()

    async def _on_msg(self, msg: Msg) -> None:
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


@dataclass(slots=True)
class _Item:
    msg: Msg | None  # None: read from the log to fill a gap the stream left
    position: int | None  # trusted only when the envelope decoded (hash checked)
    message: dict[str, Any] | None
    fact: Any
    error: str | None


class Consumer:
    """The consumer of one read model. ``run()`` until stopped, or ``start()`` + ``step()``."""

    def __init__(
        self,
        projection: Projection,
        *,
        pool: asyncpg.Pool,
        nc: NATS,
        stream: str = DEFAULT_STREAM,
        subject_prefix: str = SUBJECT_PREFIX,
        durable: str | None = None,
        batch_size_max: int = 500,
        fetch_timeout_s: float = 0.5,
        ack_wait_s: float = 30.0,
        retry_delay_s: float = 0.25,
        retry_delay_max_s: float = 30.0,
        verify_hash: bool = True,
        linger_s: float = 0.0,
        read_log: ReadLog | None = None,
    ) -> None:
        if projection.suffix:
            raise ValueError("a consumer feeds the live tables, not a rebuild's")
        if not 1 <= batch_size_max <= 10_000:
            raise ValueError("batch_size_max must be within 1..10000")
        self.projection = projection
        self.pool = pool
        self.stream = stream
        self.filter_subject = f"{subject_prefix}.>"
        self.durable = durable or f"projection_{projection.name}"
        self.batch_size_max = batch_size_max
        self.fetch_timeout_s = fetch_timeout_s
        self.ack_wait_s = ack_wait_s
        self.retry_delay_s = retry_delay_s
        self.retry_delay_max_s = retry_delay_max_s
        self.verify_hash = verify_hash
        #: after a short batch, wait this long for more before applying: fewer,
        #: larger transactions under a steady trickle, at most this much more lag
        self.linger_s = linger_s
        #: ``read_log(after, limit)``: the log's messages from PostgreSQL, to fill a gap
        self._read_log = read_log
        self._nc = nc
        self._js = nc.jetstream()
        self._puller: _Puller | None = None
        self._generation: int | None = None
        #: the stream sequence the next batch must start at (None: not known yet)
        self._expected_seq: int | None = None
        #: set by a commit that stopped before a gap it could not fill
        self._gap_after: int | None = None
        self._failures = 0
        #: the stored position after the last commit (or at start)
        self.position = 0

    # -- life cycle ---------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Consumes until ``stop`` is set or the task is cancelled; then unsubscribes.

        An unexpected failure (NATS or PostgreSQL gone, a bug) is logged, the
        subscription dropped and, after a growing delay, ``start()`` re-aligns
        the cursor with the stored position: the worker does not die with it.
        """
        stop = stop or asyncio.Event()
        try:
            while not stop.is_set():
                try:
                    if self._puller is None:
                        await self.start()
                    await self.step()
                except ConsumerGone as e:
                    log.warning(
                        "projection %s: consumer %s is gone (%s); re-creating it",
                        self.projection.name,
                        self.durable,
                        e,
                    )
                    await self.close()
                except Exception as e:
                    delay_s = self._next_delay()
                    if isinstance(e, nats.js.errors.NotFoundError):
                        # not made yet (a fresh start: the relay makes it), or being
                        # refilled by the relay after it fell behind the log
                        log.info(
                            "projection %s: stream %s does not exist (yet); retrying in %.2fs",
                            self.projection.name,
                            self.stream,
                            delay_s,
                        )
                    else:
                        log.exception(
                            "projection %s: consumer failed; restarting in %.2fs",
                            self.projection.name,
                            delay_s,
                        )
                    await self.close()
                    try:
                        await asyncio.wait_for(stop.wait(), delay_s)
                    except TimeoutError:
                        pass
        finally:
            await self.close()

    async def start(self) -> None:
        """Ensures the tables, aligns the durable consumer with the stored position, binds."""
        await schema.ensure_schema(self.pool, [self.projection])
        position, generation = await self._read_position()
        info = await self._consumer_info()
        if info is None or not await self._cursor_ok(info, position):
            await self._recreate(position)
        self._generation = generation
        self.position = position
        self._expected_seq = None
        await self._subscribe()

    async def close(self) -> None:
        """Unsubscribes and flushes the acks already sent; leaves the durable in place."""
        puller, self._puller = self._puller, None
        if puller is not None:
            try:
                await puller.stop()
                await self._nc.flush(timeout=2)
            except (nats.errors.Error, TimeoutError) as e:
                log.warning("projection %s: close: %s", self.projection.name, e)

    async def _subscribe(self) -> None:
        puller = _Puller(self._nc, self.stream, self.durable)
        await puller.start()
        self._puller = puller

    # -- one batch ----------------------------------------------------------

    async def step(self) -> StepResult:
        """Fetches one batch (waiting at most ``fetch_timeout_s``) and handles it."""
        if self._puller is None:
            raise RuntimeError("start() the consumer first")
        try:
            msgs = await self._puller.fetch(self.batch_size_max, self.fetch_timeout_s)
            if self.linger_s and 0 < len(msgs) < self.batch_size_max:
                await asyncio.sleep(self.linger_s)
                msgs += await self._puller.fetch(
                    self.batch_size_max - len(msgs), min(self.fetch_timeout_s, 0.05)
                )
        except ConsumerGone:
            raise  # run() starts over, which re-creates the durable
        except nats.errors.Error as e:
            delay_s = self._next_delay()
            log.warning(
                "projection %s: fetch failed (%s); retry in %.2fs", self.projection.name, e, delay_s
            )
            await asyncio.sleep(delay_s)
            return StepResult(failed=True, position=self.position)
        if not msgs:
            if self._puller.unanswered and await self._consumer_info() is None:
                # deleted while no request was waiting: nothing says so but silence
                raise ConsumerGone(f"consumer {self.durable} not found")
            # idle: a rebuild may have swapped tables in behind this position,
            # and no batch is coming to notice it (one primary-key read)
            _, generation = await self._read_position()
            if generation != self._generation:
                await self._resync("the tables were rebuilt")
                return StepResult(resynced=True, position=self.position)
            return StepResult(position=self.position)
        return await self.handle(msgs)

    async def handle(self, msgs: Sequence[Msg]) -> StepResult:
        """Decode, apply in one transaction, then ack (or nak the batch on failure)."""
        if not msgs:
            return StepResult(position=self.position)
        seqs = [_stream_seq(m) for m in msgs]
        if self._expected_seq is not None and min(seqs) > self._expected_seq:
            # Everything before _expected_seq was handled, so the stream owes us
            # that sequence first. Anything else (a redelivery out of order, a
            # message deleted from the stream) could put a later position ahead
            # of an unapplied one; the skip by position would then lose it.
            await self._resync(f"stream seq {min(seqs)} came before {self._expected_seq}")
            return StepResult(fetched=len(msgs), resynced=True, position=self.position)
        items = [self._decode(m) for m in msgs]
        try:
            applied, skipped = await self._commit(items)
        except _GenerationChanged:
            # the tables were swapped by a rebuild: these messages belong to the
            # old cursor; the new one starts after the rebuilt tables' position
            await self._resync("the tables were rebuilt")
            return StepResult(fetched=len(msgs), resynced=True, position=self.position)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as e:
            return await self._nak_all(msgs, e)
        except Exception as e:
            # a bug in a fold must not crash-loop the worker or skip the batch:
            # it is retried like a database error, with the traceback logged
            log.exception("projection %s: apply failed", self.projection.name)
            return await self._nak_all(msgs, e)
        self._failures = 0
        self._expected_seq = max(self._expected_seq or 0, max(seqs) + 1)
        poison = await self._settle(items)
        if self._gap_after is not None:
            # the items past the gap were not applied: fetch again after the stored position
            self._gap_after = None
            await self._resync("a position is missing from the stream")
            return StepResult(
                len(msgs), applied, skipped, poison, resynced=True, position=self.position
            )
        return StepResult(len(msgs), applied, skipped, poison, position=self.position)

    async def _settle(self, items: Sequence[_Item]) -> int:
        """After the commit: ack what was applied or skipped, term the poison; returns its count."""
        poison = 0
        for item in items:
            if item.error is not None:
                poison += 1
                log.warning(
                    "projection %s: poison message stream_seq=%s subject=%s: %s",
                    self.projection.name,
                    _stream_seq(item.msg),
                    item.msg.subject,
                    item.error,
                )
                await item.msg.term()
            else:
                await item.msg.ack()
        return poison

    def _decode(self, msg: Msg) -> _Item:
        try:
            message = envelope.decode(msg.data, verify_hash=self.verify_hash)
        except PoisonMessage as e:
            return _Item(msg, None, None, None, str(e))
        try:
            return _Item(msg, message["position"], message, self.projection.parse(message), None)
        except PoisonMessage as e:
            # the envelope is sound, so its position is trusted and passed over
            return _Item(msg, message["position"], message, None, str(e))

    async def _commit(self, items: list[_Item]) -> tuple[int, int]:
        async with self.pool.acquire() as conn, conn.transaction():
            # the row lock serialises this transaction with a rebuild's swap
            row = await conn.fetchrow(
                "SELECT position, generation FROM projection_positions WHERE name = $1 FOR UPDATE",
                self.projection.name,
            )
            if row is None:
                raise RuntimeError(f"no projection_positions row for {self.projection.name!r}")
            if row["generation"] != self._generation:
                raise _GenerationChanged
            stored: int = row["position"]
            fresh: dict[int, _Item] = {}
            for item in items:
                if item.position is not None and item.position > stored:
                    fresh.setdefault(item.position, item)
            ordered = await self._without_gaps(stored, fresh)
            facts = [i.fact for i in ordered if i.fact is not None and i.error is None]
            if facts:
                await self.projection.apply(conn, facts)
            poison = [i for i in items if i.error is not None]
            poison += [i for i in ordered if i.msg is None and i.error is not None]
            if poison:
                await conn.executemany(
                    """INSERT INTO projection_poison
                           (name, stream_seq, subject, position, body, error)
                       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
                    [_poison_row(self.projection.name, i) for i in poison],
                )
            if ordered:
                last = ordered[-1]
                assert last.message is not None and last.position is not None
                await conn.execute(
                    """UPDATE projection_positions
                       SET position = $2, updated_at = now(), last_recorded_at = $3
                       WHERE name = $1""",
                    self.projection.name,
                    last.position,
                    _recorded_at(last.message),
                )
        self.position = last.position if ordered and last.position is not None else stored
        trusted = sum(1 for i in items if i.position is not None)
        return len(ordered), trusted - len(ordered)

    async def _without_gaps(self, stored: int, fresh: dict[int, _Item]) -> list[_Item]:
        """The fresh items from ``stored + 1`` on, in order, with no position missing.

        The log has no gaps, so a gap here is a message the stream did not hand
        over (naked after a failed batch while newer ones came, aged out or
        purged, unreadable): applying past it would lose it for good, since
        everything at or below the stored position is skipped. The missing
        positions are read from the log itself (the truth); without a log
        reader, only the items before the first gap are applied and the
        cursor is re-aligned after them.
        """
        if not fresh:
            return []
        last = max(fresh)
        if last - stored == len(fresh):
            return [fresh[p] for p in range(stored + 1, last + 1)]
        if self._read_log is None:
            ordered = _run_from(fresh, stored + 1, last)
            self._gap_after = stored + len(ordered)
            return ordered
        through = min(last, stored + _FILL_MAX)
        log.warning(
            "projection %s: the stream did not deliver every position in %d-%d; "
            "reading the missing ones from the log",
            self.projection.name,
            stored + 1,
            through,
        )
        for message in await self._read_log(stored, through - stored):
            position = message["position"]
            if position not in fresh:
                try:
                    fresh[position] = _Item(
                        None, position, message, self.projection.parse(message), None
                    )
                except PoisonMessage as e:
                    fresh[position] = _Item(None, position, message, None, str(e))
        ordered = _run_from(fresh, stored + 1, through)
        if len(ordered) != through - stored:  # the log itself is short: never skip ahead
            self._gap_after = stored + len(ordered)
        return ordered

    async def _nak_all(self, msgs: Sequence[Msg], error: BaseException) -> StepResult:
        delay_s = self._next_delay()
        log.warning(
            "projection %s: batch of %d not applied (%s: %s); nak, redelivery in %.2fs",
            self.projection.name,
            len(msgs),
            type(error).__name__,
            error,
            delay_s,
        )
        for m in msgs:
            try:
                await m.nak(delay=delay_s)
            except nats.errors.Error:
                pass  # redelivered after ack_wait instead
        return StepResult(fetched=len(msgs), failed=True, position=self.position)

    def _next_delay(self) -> float:
        self._failures += 1
        return min(self.retry_delay_max_s, self.retry_delay_s * 2.0 ** min(self._failures - 1, 16))

    # -- the cursor ---------------------------------------------------------

    async def _read_position(self) -> tuple[int, int]:
        row = await self.pool.fetchrow(
            "SELECT position, generation FROM projection_positions WHERE name = $1",
            self.projection.name,
        )
        if row is None:
            raise RuntimeError(f"no projection_positions row for {self.projection.name!r}")
        return row["position"], row["generation"]

    async def _resync(self, reason: str) -> None:
        """Re-creates the cursor after the stored position, dropping what was fetched."""
        log.info("projection %s: %s; re-aligning the cursor", self.projection.name, reason)
        position, generation = await self._read_position()
        puller, self._puller = self._puller, None
        if puller is not None:
            await puller.stop()  # what it holds belongs to the old cursor
        await self._recreate(position)
        self._generation = generation
        self.position = position
        self._expected_seq = None
        await self._subscribe()

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
            or config.ack_policy != AckPolicy.EXPLICIT
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
                ack_policy=AckPolicy.EXPLICIT,
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
            position = _position_of(raw.headers, raw.data)
            if position is not None:
                return position > after_position
            seq = (raw.seq or seq) + 1
        return True

    async def _position_at(self, seq: int) -> int | None:
        try:
            raw = await self._js.get_msg(self.stream, seq=seq)
        except nats.js.errors.NotFoundError:
            return None
        return _position_of(raw.headers, raw.data)


def _position_of(headers: dict[str, str] | None, data: bytes | None) -> int | None:
    """A stored message's position: its ``Nats-Msg-Id``, else its body's, else ``None``."""
    msg_id = (headers or {}).get(_MSG_ID)
    if msg_id is not None and msg_id.isdigit():
        return int(msg_id)
    try:
        position = orjson.loads(data or b"").get("position")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return position if type(position) is int else None


def _stream_seq(msg: Msg) -> int:
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


def _run_from(items: dict[int, _Item], first: int, last: int) -> list[_Item]:
    """``items[first]``, ``items[first + 1]``, ... up to ``last`` or the first one missing."""
    run = []
    for position in range(first, last + 1):
        item = items.get(position)
        if item is None:
            break
        run.append(item)
    return run


def _poison_row(name: str, item: _Item) -> tuple[Any, ...]:
    error = (item.error or "")[:2000]
    if item.msg is None:  # read from the log, not the stream
        assert item.message is not None
        body = orjson.dumps(item.message)
        return (name, 0, f"log:{item.message.get('type')}"[:200], item.position, body, error)
    return (name, _stream_seq(item.msg), item.msg.subject, item.position, item.msg.data, error)


def _recorded_at(message: dict[str, Any]) -> datetime | None:
    try:
        return envelope.recorded_at(message)
    except PoisonMessage:
        return None
