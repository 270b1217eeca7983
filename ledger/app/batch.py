"""What one batch of decisions works on: the aggregates it loaded or created,
the accounts it moved, and the unique names (claims) it looked up or took.

Decisions in one batch see each other: a payout decided after a capture in
the same batch counts that capture (``accounts``), a second capture of one
payment is refused (``claims_taken``). Nothing here is committed until the
writer appends the batch's units.
"""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate

from ledger.app.repository import Created, Repository
from ledger.store import LedgerStore
from ledger.store.connection import Connection
from ledger.store.keys import Claim
from ledger.store.units import AccountDelta

__all__ = ["AlreadyRecorded", "Batch"]


class Batch:
    """The aggregates one batch decides on: the cache plus what it created."""

    def __init__(self, store: LedgerStore, repository: Repository, conn: Connection | None) -> None:
        self.store = store
        self.conn = conn
        self._repository = repository
        self.touched: dict[UUID, Aggregate | Created] = {}
        self.base_versions: dict[UUID, int] = {}
        self.accounts: dict[tuple[str, str], AccountDelta] = {}
        #: streams known not to exist when this batch started (prefetched)
        self.absent: set[UUID] = set()
        #: the versions the decision being made has seen, stream by stream
        self.seen: dict[UUID, int] = {}
        #: claims looked up for this batch, and those taken (before it, or by it)
        self.claims_known: set[Claim] = set()
        self.claims_taken: set[Claim] = set()

    async def get(self, stream_id: UUID) -> Aggregate | None:
        aggregate = self.touched.get(stream_id)
        if isinstance(aggregate, Created):  # made earlier in this batch, read now
            aggregate = self.touched[stream_id] = aggregate.aggregate()
        if aggregate is None and stream_id not in self.absent:
            aggregate = await self._repository.load(stream_id, self.conn)
            if aggregate is None:
                self.absent.add(stream_id)
        self.seen.setdefault(stream_id, 0 if aggregate is None else aggregate.version)
        return aggregate

    async def is_taken(self, claim: Claim) -> bool:
        """Whether a recorded fact, or one decided earlier in this batch, holds ``claim``.

        Looked up with the batch's keys when its command named it; otherwise here.
        """
        if claim not in self.claims_known:
            self.claims_known.add(claim)
            found = await self.store.lookup((), [claim], self.conn)
            self.claims_taken |= found.taken
        return claim in self.claims_taken

    def take(self, claim: Claim) -> None:
        self.claims_taken.add(claim)

    def remember(self, aggregate: Aggregate | Created, base_version: int) -> None:
        self.touched[aggregate.id] = aggregate
        self.base_versions.setdefault(aggregate.id, base_version)


class AlreadyRecorded(Exception):
    """Raised by a decision whose fact is in the log already (a reconciliation
    checked twice): the writer answers ``duplicate`` with the stream's first event."""

    def __init__(self, stream_id: UUID) -> None:
        super().__init__(str(stream_id))
        self.stream_id = stream_id
