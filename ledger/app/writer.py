"""The group-commit writer: one task, a queue, batches, settle, bounded retries.

``Writer.submit`` hands one decision to a single writer task. While one
transaction is committing, new requests queue up; the writer then takes all
of them at once (up to ``batch_size_max``), decides each on the aggregates in
memory, and appends the whole batch in one transaction: one fsync and one
ordering lock for many requests (DESIGN rule 3).

Idempotency: a key already in the table answers ``duplicate`` (same body) or
``idempotency_conflict`` (different body); copies of one key that arrive
together share one decision. The key is stored in the same transaction as
its events (DESIGN rule 5), so a refused command burns nothing.

With several ``serve`` processes a cached aggregate can be stale; the store
then drops the unit under its lock and the writer decides it again on fresh
state (bounded retries), and re-checks refusals that may rest on stale state.

A little over 400 lines, on purpose: submit, batch, settle and the refusal
re-check share the writer's queue, in-flight table and retry list, and split
across modules they would have to reach into each other's state.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections.abc import Awaitable
from typing import Any, Final
from uuid import UUID

import asyncpg

from ledger.app.answers import DB_ERRORS, Recorded, conflict
from ledger.app.batch import AlreadyRecorded, Batch
from ledger.app.group import Group, waitable
from ledger.app.pending import Decided, Decision, Item, Pending
from ledger.app.repository import Repository
from ledger.domain.errors import (
    IdempotencyConflict,
    LedgerError,
    Unavailable,
    ValidationError,
)
from ledger.store import LedgerStore
from ledger.store.connection import Connection
from ledger.store.keys import Claim, Found
from ledger.store.units import Unit

__all__ = ["CLIENT_KEYS", "Decision", "Writer"]

log = logging.getLogger("omniledger.ledger")

_ATTEMPTS_MAX: Final = 5
#: Namespaces of idempotency keys: a client's (and a gateway's), the ledger's own.
CLIENT_KEYS: Final = "c:"
_INTERNAL_KEYS: Final = "i:"


class Writer:
    """The single task that decides and appends every fact, in batches."""

    def __init__(
        self, store: LedgerStore, repository: Repository, *, batch_size_max: int = 2000
    ) -> None:
        self.store = store
        self._repository = repository
        self._queue: asyncio.Queue[Pending] = asyncio.Queue()
        self._retry: list[Pending] = []
        self._in_flight: dict[str, Pending] = {}
        self._batch_size_max = batch_size_max
        self._task: asyncio.Task[None] | None = None
        self._conn: Connection | None = None
        #: counters for /metrics: group commits, events, the largest group seen,
        #: retried decisions, and decisions taken (decisions / batches = the mean
        #: group size)
        self.stats = {
            "batches": 0,
            "events": 0,
            "batch_size_max_seen": 0,
            "retries": 0,
            "decisions": 0,
        }

    @property
    def queue_depth(self) -> int:
        """Decisions waiting for the writer's next group."""
        return self._queue.qsize()

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._write_loop(), name="ledger-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self._drop_connection()

    def _forget(self, key: str, _done: object) -> None:
        """A key's first copy is answered: later copies are decided on their own."""
        self._in_flight.pop(key, None)

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await self.store.pool.release(conn)  # type: ignore[arg-type]  # a pool's own
            except Exception:  # a broken connection: the pool replaces it
                conn.terminate()

    # -- submitting ----------------------------------------------------------------
    async def submit(
        self,
        decide: Decision,
        key: str | None,
        fingerprint: bytes,
        *,
        duplicate_as: type[LedgerError] = IdempotencyConflict,
        internal: bool = False,
        hints: tuple[UUID, ...] = (),
        claims: tuple[Claim, ...] = (),
    ) -> Recorded:
        # Clients may choose any key; the ledger's own keys live in another
        # namespace so that no client key can ever collide with them.
        shown_key = key
        if key is not None:
            key = (_INTERNAL_KEYS if internal else CLIENT_KEYS) + key
        if self._task is None or self._task.done():
            raise Unavailable("the ledger writer is not running")
        loop = asyncio.get_running_loop()
        if key is not None and key in self._in_flight:
            first = self._in_flight[key]
            try:
                result = await asyncio.shield(waitable(first.future))
            except LedgerError:
                if first.fingerprint == fingerprint:
                    raise  # the same request: the same answer
                # The first body was refused and its key is still free: this
                # one is decided on its own, as if it had come second.
                return await self.submit(
                    decide, shown_key, fingerprint,
                    duplicate_as=duplicate_as, internal=internal, hints=hints, claims=claims,
                )  # fmt: skip
            if first.fingerprint != fingerprint:
                raise conflict(duplicate_as, shown_key)
            return Recorded(
                "duplicate", result.position, result.stream_id, result.version, shown_key
            )
        future: asyncio.Future[Recorded] = loop.create_future()
        pending = Pending(
            decide,
            key,
            fingerprint,
            future,
            shown_key,
            hints=hints,
            duplicate_as=duplicate_as,
            claims=claims,
        )
        if key is not None:
            self._in_flight[key] = pending
            pending.future.add_done_callback(functools.partial(self._forget, key))
        self._queue.put_nowait(pending)
        return await asyncio.shield(future)

    async def submit_many(self, items: list[Item]) -> list[Recorded | BaseException]:
        """Decides a request's client commands, each as ``submit`` would, with
        one wait for all of them: no task, future or shield per command.

        A copy of a key already in flight (earlier in this request, or in
        another) waits for the first copy through ``submit``, as before.
        """
        if self._task is None or self._task.done():
            return [Unavailable("the ledger writer is not running")] * len(items)
        group = Group(len(items), asyncio.get_running_loop())
        copies: list[tuple[int, Awaitable[Recorded]]] = []
        for index, (decide, shown_key, fingerprint, hints, claims) in enumerate(items):
            key = None if shown_key is None else CLIENT_KEYS + shown_key
            if key is not None and key in self._in_flight:
                copy = self.submit(decide, shown_key, fingerprint, hints=hints, claims=claims)
                copies.append((index, copy))
                continue
            pending = Pending(
                decide, key, fingerprint, group.slot(index), shown_key, hints=hints, claims=claims
            )
            if key is not None:
                self._in_flight[key] = pending
                pending.future.add_done_callback(functools.partial(self._forget, key))
            self._queue.put_nowait(pending)
        group.seal()
        copied = asyncio.gather(*(c for _, c in copies), return_exceptions=True)
        await asyncio.shield(group.future)  # a hang-up does not cancel what is queued
        for (index, _), outcome in zip(copies, await copied, strict=True):
            group.outcomes[index] = outcome
        return [o for o in group.outcomes if o is not None]

    # -- the loop ------------------------------------------------------------------
    async def _write_loop(self) -> None:
        while True:
            if self._retry:
                batch, self._retry = self._retry, []
            else:
                batch = [await self._queue.get()]
            while len(batch) < self._batch_size_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._process(batch)
            except asyncio.CancelledError:
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(Unavailable("the ledger is shutting down"))
                raise
            except Exception as e:  # the batch as a whole failed: nothing was written
                self._repository.clear()
                await self._drop_connection()
                error: LedgerError
                if isinstance(e, DB_ERRORS):
                    log.warning("append failed, database unavailable: %s", e)
                    error = Unavailable("the database is unavailable; retry later")
                else:
                    log.exception("append failed")
                    error = Unavailable("the append failed; retry later")
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(error)

    async def _process(self, batch: list[Pending]) -> None:
        self.stats["batches"] += 1
        self.stats["batch_size_max_seen"] = max(self.stats["batch_size_max_seen"], len(batch))
        self.stats["decisions"] += len(batch)
        keys = [p.key for p in batch if p.key is not None]
        if self._conn is None or self._conn.is_closed():
            # The writer's own connection: no pool hand-over and reset per statement.
            self._conn = await self.store.pool.acquire()
            # The writer's statements run thousands of times while the tables
            # grow from empty; a generic plan cached while they were tiny
            # (sequential scans) would stay forever. Plan each with its values.
            await self._conn.execute("SET plan_cache_mode = force_custom_plan")
        claims = {c for p in batch for c in p.claims}
        # The keys, the claims and the streams not cached: one round trip.
        missing = self._repository.missing({h for p in batch for h in p.hints})
        found = (
            await self.store.lookup(keys, claims, self._conn, streams=missing)
            if keys or claims or missing
            else Found({}, set(), {})
        )
        work = Batch(self.store, self._repository, self._conn)
        work.claims_known, work.claims_taken = claims, found.taken
        work.absent |= self._repository.absorb(missing, found.streams)
        decided = await self._decide(batch, found.known, work)
        retry: list[tuple[int, Pending]] = []
        if decided.units:
            await self._commit(decided, work, retry)
        await self._answer_refusals(decided.refused, retry)
        retry.sort(key=lambda item: item[0])
        self._retry.extend(p for _, p in retry)

    async def _decide(
        self, batch: list[Pending], known: dict[str, tuple[bytes, int, UUID, int]], work: Batch
    ) -> Decided:
        decided = Decided()
        for index, p in enumerate(batch):
            if p.key is not None and p.key in known:
                self._answer_known(p, known[p.key])
                continue
            work.seen = p.seen = {}
            try:
                unit = await p.decide(work)
            except AlreadyRecorded as already:
                history = await self.store.stream_history(already.stream_id)
                first = history[0]
                p.future.set_result(
                    Recorded("duplicate", first["position"], already.stream_id, 1, p.shown_key)
                )
                continue
            except LedgerError as e:
                decided.refused.append((index, p, e))
                continue
            except DB_ERRORS:
                raise
            except Exception as e:  # a bug in deciding: refuse this one, keep the batch
                log.exception("deciding a command failed")
                self._repository.evict(work.touched)
                p.future.set_exception(e)
                continue
            unit.idempotency_key = p.key
            unit.fingerprint = p.fingerprint
            p.streams = tuple(unit.base_versions)
            decided.units.append(unit)
            decided.owners.append(p)
            decided.unit_index.append(index)
        return decided

    async def _commit(
        self, decided: Decided, work: Batch, retry: list[tuple[int, Pending]]
    ) -> None:
        units, owners, unit_index = decided.units, decided.owners, decided.unit_index
        try:
            outcome = await self.store.commit(units, self._conn)
            self._settle(owners, units, outcome, work, unit_index, retry)
        except asyncpg.PostgresError as e:
            self._repository.evict(work.touched)
            if isinstance(e, DB_ERRORS):
                raise
            # The database refused something in this batch (not a lost
            # connection): commit unit by unit so that one bad request
            # cannot fail the others. Later units decided on an earlier
            # one's state fail its version check and are decided again.
            log.warning("batch of %d refused (%s); committing one by one", len(units), e)
            for p, unit, index in zip(owners, units, unit_index, strict=True):
                await self._commit_alone(p, unit, work, index, retry)
        except BaseException:
            self._repository.evict(work.touched)
            raise

    def _answer_known(self, p: Pending, known: tuple[bytes, int, UUID, int]) -> None:
        digest, position, stream_id, version = known
        if digest != hashlib.sha256(p.fingerprint).digest():
            p.future.set_exception(conflict(p.duplicate_as, p.shown_key))
        else:
            p.future.set_result(Recorded("duplicate", position, stream_id, version, p.shown_key))

    async def _answer_refusals(
        self, refused: list[tuple[int, Pending, LedgerError]], retry: list[tuple[int, Pending]]
    ) -> None:
        """Answers the commands a rule refused, unless the refusal may be stale.

        A refusal decided after a decision that was then dropped may have
        rested on it (a payout refused for money an uncommitted payout took):
        it is decided again. And a refused copy of a fact another replica
        committed meanwhile is answered as the duplicate it is.
        """
        first_drop = min((index for index, _ in retry), default=None)
        final: list[tuple[int, Pending, LedgerError]] = []
        for index, p, error in refused:
            if first_drop is not None and index > first_drop and p.attempts < _ATTEMPTS_MAX:
                p.attempts += 1
                retry.append((index, p))
            else:
                final.append((index, p, error))
        final = await self._recheck_refusals(final, retry)
        keys = [p.key for _, p, _ in final if p.key is not None]
        known = await self.store.lookup_keys(keys, self._conn) if keys else {}
        for _, p, error in final:
            if p.key is not None and p.key in known:
                self._answer_known(p, known[p.key])
            else:
                p.future.set_exception(error)

    async def _recheck_refusals(
        self,
        refused: list[tuple[int, Pending, LedgerError]],
        retry: list[tuple[int, Pending]],
    ) -> list[tuple[int, Pending, LedgerError]]:
        """The refusals that stand; those decided on state the log has since
        moved past are decided again.

        A refusal is never checked under the head lock the way an accepted
        unit is (its base versions), so a cached aggregate that another
        replica has changed since (a capture there, then a refund here) would
        refuse a valid fact, and keep refusing it while cached. So, only when
        something was refused: if a stream it read now has more events than
        the decision saw, the cached copy is dropped and the command decided
        again on a fresh load (at most ``_ATTEMPTS_MAX`` times).
        """
        seen = {s for _, p, _ in refused for s in p.seen}
        if not seen:
            return refused
        current = await self.store.stream_versions(list(seen), self._conn)
        stale = {s for _, p, _ in refused for s, v in p.seen.items() if current.get(s, 0) != v}
        if not stale:
            return refused
        self._repository.evict(stale)
        standing = []
        for index, p, error in refused:
            if stale.intersection(p.seen) and p.attempts < _ATTEMPTS_MAX:
                p.attempts += 1
                retry.append((index, p))
            else:
                standing.append((index, p, error))
        return standing

    async def _commit_alone(
        self,
        p: Pending,
        unit: Unit,
        work: Batch,
        index: int,
        retry: list[tuple[int, Pending]],
    ) -> None:
        try:
            outcome = await self.store.commit([unit], self._conn)
        except asyncpg.PostgresError as e:
            if isinstance(e, DB_ERRORS):
                raise
            log.error("the database refused one unit: %s", e)
            self._repository.evict(unit.base_versions)
            if isinstance(e, asyncpg.NumericValueOutOfRangeError):
                error = ValidationError("a running total would exceed 64 bits", field="amount")
            else:
                error = ValidationError("the database refused this event's content")
            p.future.set_exception(error)
            return
        self._settle([p], [unit], outcome, work, [index], retry)

    def _settle(
        self,
        owners: list[Pending],
        units: list[Unit],
        outcome: Any,
        work: Batch,
        unit_index: list[int],
        retry: list[tuple[int, Pending]],
    ) -> None:
        for p, unit, positions, dropped, index in zip(
            owners, units, outcome.positions, outcome.dropped, unit_index, strict=True
        ):
            if dropped is not None or positions is None:
                self._repository.evict(unit.base_versions)
                p.attempts += 1
                self.stats["retries"] += 1
                if p.attempts >= _ATTEMPTS_MAX:
                    p.future.set_exception(Unavailable("too much contention; retry later"))
                else:
                    retry.append((index, p))
                continue
            for stream_id in unit.base_versions:
                aggregate = work.touched.get(stream_id)
                if aggregate is not None:
                    self._repository.put(aggregate)
            first = unit.events[0]
            self.stats["events"] += len(unit.events)
            p.future.set_result(
                Recorded("recorded", positions[0], first.stream_id, first.version, p.shown_key)
            )
