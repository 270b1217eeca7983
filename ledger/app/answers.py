"""What the writer answers: a recorded fact, a reused key, a database that is down."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

import asyncpg

from ledger.domain.errors import LedgerError, SellerExists

__all__ = ["DB_ERRORS", "Recorded", "conflict"]

#: Failures of the database itself (not of a rule): answered 503, retried by clients.
DB_ERRORS: Final = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncio.TimeoutError,
)


@dataclass(frozen=True, slots=True)
class Recorded:
    """The answer for one recorded (or already recorded) fact."""

    status: str  # "recorded" | "duplicate"
    position: int
    stream_id: UUID
    version: int
    idempotency_key: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "position": self.position,
            "stream_id": str(self.stream_id),
            "version": self.version,
            "idempotency_key": self.idempotency_key,
        }


def conflict(kind: type[LedgerError], shown_key: str | None) -> LedgerError:
    """The answer to a key already used with another body, in the words of its command."""
    if kind is SellerExists and shown_key is not None:
        seller_id = shown_key.partition(":")[2]  # the ledger's key "seller.registered:<id>"
        return SellerExists(
            f"seller {seller_id} is already registered (with other details)", field="seller_id"
        )
    return kind("this idempotency key was used with a different body", field="idempotency_key")
