"""What waits in the writer: one command's decision and how it is answered, and
what one batch decided. Data only; the writer (``writer.py``) acts on it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from uuid import UUID

from ledger.app.answers import Recorded
from ledger.app.batch import Batch
from ledger.app.group import Slot
from ledger.domain.errors import IdempotencyConflict, LedgerError
from ledger.store.keys import Claim
from ledger.store.units import Unit

__all__ = ["Decided", "Decision", "Item", "Pending"]

Decision = Callable[[Batch], Awaitable[Unit]]
#: one client command of a batch: its decision, key, fingerprint, hints and claims
Item = tuple[Decision, str | None, bytes, tuple[UUID, ...], tuple[Claim, ...]]


@dataclass(slots=True)
class Pending:
    decide: Decision
    key: str | None
    fingerprint: bytes
    #: its own future, or its slot in a request's group (``submit_many``)
    future: asyncio.Future[Recorded] | Slot
    shown_key: str | None = None
    hints: tuple[UUID, ...] = ()
    streams: tuple[UUID, ...] = ()
    attempts: int = 0
    duplicate_as: type[LedgerError] = IdempotencyConflict
    #: the stream versions its last decision saw (0: absent), for refusals
    seen: dict[UUID, int] = field(default_factory=dict)
    #: the unique names its decision will take, looked up with the batch's keys
    claims: tuple[Claim, ...] = ()


#: what one batch decided: units to commit, with their requests and their
#: places in the batch, and the requests a rule refused
@dataclass(slots=True)
class Decided:
    units: list[Unit] = field(default_factory=list)
    owners: list[Pending] = field(default_factory=list)
    unit_index: list[int] = field(default_factory=list)
    refused: list[tuple[int, Pending, LedgerError]] = field(default_factory=list)
