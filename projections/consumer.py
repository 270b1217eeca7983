# A little over 400 lines (487): Consumer is one state machine (stored position,
# generation, expected stream sequence, failures) and reads best whole; its
# pull requests (puller.py), cursor alignment (cursor.py) and batch helpers
# (batch.py) are already apart.
"""The one pull loop: fetch -> decode -> apply + advance position in one transaction -> ack.

One durable pull consumer per read model on the stream (``LEDGER``,
subjects ``<prefix>.>``). Each fetched batch is decoded and parsed outside
the database, then applied in ONE PostgreSQL transaction that also moves the
model's row in ``projection_positions``; only after the commit are the
messages acked (DESIGN rule 7), with one ack: the durable's ack policy is
"all", so acking the batch's last message acks every one before it (an ack
a message costs as much CPU as applying it). So:

- a message whose position is at or below the stored position is skipped:
  a redelivery, a duplicate publish or a replay changes nothing;
- a crash before the commit loses nothing (the stream redelivers), a crash
  after the commit and before the ack doubles nothing (skipped on redelivery);
- a message that cannot be decoded or parsed is written to
  ``projection_poison`` in the same transaction, then acked with the batch,
  with a log line: it never blocks the stream;
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

One worker per read model: a second would be harmless for correctness (the
row lock and the skip by position serialise them) but they would keep
resetting each other's cursor. The workers of one process share decoded
messages (``decode_shared``) and, through a backlog, keep within a few
thousand positions of each other so that they do (``Pace``, batch.py): a
throughput aid only, every rule above holds whatever it does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import asyncpg
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from ledger.contract.messages import SUBJECT_PREFIX
from projections import schema
from projections.batch import (
    Item,
    Pace,
    ReadLog,
    decode_shared,
    poison_row,
    recorded_at,
    without_gaps,
)
from projections.cursor import DurableCursor
from projections.envelope import PoisonMessage
from projections.projection import Projection
from projections.puller import ConsumerGone, Puller, stream_seq

#: Failures of the servers, not of the code: logged in one line and retried.
_UNAVAILABLE: Final = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    # a connection the server closed in the middle of an operation (asyncpg's
    # protocol state then refuses the next one)
    asyncpg.InternalClientError,
    nats.errors.ConnectionClosedError,
    nats.errors.NoServersError,
    nats.errors.TimeoutError,
)

#: after a timed-out try, the next one starts at most this long after it began
_TIMEOUT_RETRY_S: Final = 4.0

__all__ = ["DEFAULT_STREAM", "Consumer", "ConsumerGone", "ReadLog", "StepResult"]

log = logging.getLogger(__name__)

DEFAULT_STREAM: Final = "LEDGER"


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


class Consumer(DurableCursor):
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
        batch_size_max: int = 2000,
        fetch_timeout_s: float = 0.5,
        ack_wait_s: float = 30.0,
        retry_delay_s: float = 0.25,
        retry_delay_max_s: float = 30.0,
        verify_hash: bool = True,
        linger_s: float = 0.0,
        read_log: ReadLog | None = None,
        api_timeout_s: float = 2.0,
        pace: Pace | None = None,
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
        #: shared with the process's other consumers: keeps them close (batch.py)
        self._pace = pace
        #: the last fetch filled a batch: a backlog, so the pace applies
        self._full = False
        self._nc = nc
        # A JetStream API request (consumer info, ...) that reached a cluster node
        # as it died, or a consumer between two leaders, is never answered: ask
        # again soon rather than wait out nats-py's default 5 s each time.
        self._js = nc.jetstream(timeout=api_timeout_s)
        self._puller: Puller | None = None
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
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                tried_at = loop.time()
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
                    if isinstance(e, TimeoutError):  # nats-py's is one too
                        # A cluster electing a consumer's leader answers nothing for
                        # seconds: the wait for the answer was most of the pause, and
                        # the backoff must not grow past the election.
                        elapsed_s = loop.time() - tried_at
                        delay_s = max(0.0, min(delay_s, _TIMEOUT_RETRY_S) - elapsed_s)
                    if isinstance(e, _UNAVAILABLE):
                        # PostgreSQL or NATS away (a restart, `up` killed): one line,
                        # not a traceback per read model per try
                        log.warning(
                            "projection %s: %s unavailable (%s); retrying in %.2fs",
                            self.projection.name,
                            "NATS" if isinstance(e, nats.errors.Error) else "database",
                            e,
                            delay_s,
                        )
                    elif isinstance(e, nats.js.errors.NotFoundError):
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
        if self._pace is not None:
            self._pace.join(self, position)

    async def close(self) -> None:
        """Unsubscribes and flushes the acks already sent; leaves the durable in place."""
        if self._pace is not None:
            self._pace.leave(self)
        puller, self._puller = self._puller, None
        if puller is not None:
            try:
                await puller.stop()
                await self._nc.flush(timeout=2)
            except (nats.errors.Error, TimeoutError) as e:
                log.warning("projection %s: close: %s", self.projection.name, e)

    async def _subscribe(self) -> None:
        puller = Puller(self._nc, self.stream, self.durable)
        await puller.start()
        self._puller = puller

    # -- one batch ----------------------------------------------------------

    async def step(self) -> StepResult:
        """Fetches one batch (waiting at most ``fetch_timeout_s``) and handles it."""
        if self._puller is None:
            raise RuntimeError("start() the consumer first")
        if self._full and self._pace is not None:
            await self._pace.wait(self)
        try:
            msgs = await self._puller.fetch(self.batch_size_max, self.fetch_timeout_s)
            self._full = len(msgs) >= self.batch_size_max
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
        seqs = [stream_seq(m) for m in msgs]
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
        if self._pace is not None:
            self._pace.moved(self, self.position)
        top = max(seqs)
        self._expected_seq = max(self._expected_seq or 0, top + 1)
        poison = await self._settle(items, msgs[seqs.index(top)])
        if self._gap_after is not None:
            # the items past the gap were not applied: fetch again after the stored position
            self._gap_after = None
            await self._resync("a position is missing from the stream")
            return StepResult(
                len(msgs), applied, skipped, poison, resynced=True, position=self.position
            )
        return StepResult(len(msgs), applied, skipped, poison, position=self.position)

    async def _settle(self, items: Sequence[Item], last: Msg) -> int:
        """After the commit: one ack for the batch (``last``, its highest stream
        sequence: acking all up to it); logs the poison.

        The poison is in ``projection_poison`` by now, written with the batch,
        so it is acked with the rest rather than termed: either way it is
        never delivered again. Returns the poison's count.
        """
        poison = 0
        for item in items:
            if item.error is not None:
                assert item.msg is not None, "only stream messages are settled"
                poison += 1
                log.warning(
                    "projection %s: poison message stream_seq=%s subject=%s: %s",
                    self.projection.name,
                    stream_seq(item.msg),
                    item.msg.subject,
                    item.error,
                )
        await last.ack()
        return poison

    def _decode(self, msg: Msg) -> Item:
        try:
            message = decode_shared(msg.data, verify_hash=self.verify_hash)
        except PoisonMessage as e:
            return Item(msg, None, None, None, str(e))
        try:
            return Item(msg, message["position"], message, self.projection.parse(message), None)
        except PoisonMessage as e:
            # the envelope is sound, so its position is trusted and passed over
            return Item(msg, message["position"], message, None, str(e))

    async def _commit(self, items: list[Item]) -> tuple[int, int]:
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
            fresh: dict[int, Item] = {}
            for item in items:
                if item.position is not None and item.position > stored:
                    fresh.setdefault(item.position, item)
            ordered, gap_after = await without_gaps(
                stored,
                fresh,
                read_log=self._read_log,
                parse=self.projection.parse,
                name=self.projection.name,
            )
            if gap_after is not None:
                self._gap_after = gap_after
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
                    [poison_row(self.projection.name, i) for i in poison],
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
                    recorded_at(last.message),
                )
        self.position = last.position if ordered and last.position is not None else stored
        trusted = sum(1 for i in items if i.position is not None)
        return len(ordered), trusted - len(ordered)

    async def _nak_all(self, msgs: Sequence[Msg], error: BaseException) -> StepResult:
        if self._pace is not None:
            self._pace.leave(self)  # back at its next commit; nobody waits for it meanwhile
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

    # -- the cursor (the durable's alignment: projections/cursor.py) --------

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
        if self._pace is not None:
            self._pace.moved(self, position)
