"""What every read model offers the consumer and the rebuild: DDL, parse, apply.

A projection is three steps, split so that only the last touches the database:

- ``parse(message)`` turns one decoded message into the facts the read model
  needs, or ``None`` for types it ignores. It raises
  :class:`~projections.envelope.PoisonMessage` for a message it cannot use, so
  that a bad message is set aside on its own and never fails a whole batch.
  Models that read the same facts say so with ``shared_parse()``: a rebuild
  of several parses each message once for all of them.
- a pure fold (module-level function in each model) turns facts, plus what
  state it needs from earlier batches, into row deltas.
- ``apply(conn, facts)`` loads that state, folds, and writes the deltas. The
  caller owns the transaction and advances the position in it (DESIGN rule 7).

Table names carry a ``suffix``: the live tables have none, a rebuild writes
into ``<table>__rebuild`` and swaps them in (``projections/rebuild.py``).
Constraints are named after their table so that the swap can rename them too.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Hashable, Sequence
from typing import Any, ClassVar

from ledger.store.connection import Connection

__all__ = ["REBUILD_SUFFIX", "Projection"]

REBUILD_SUFFIX = "__rebuild"


class Projection(abc.ABC):
    #: The name in ``projection_positions`` and in ``GET /v1/projections``.
    name: ClassVar[str]
    #: Base names of the tables this projection owns (all swapped on rebuild).
    tables: ClassVar[tuple[str, ...]]

    def __init__(self, *, suffix: str = "") -> None:
        if suffix not in ("", REBUILD_SUFFIX):
            raise ValueError(f"unknown table suffix {suffix!r}")
        self.suffix = suffix

    def table(self, base: str) -> str:
        return base + self.suffix

    @abc.abstractmethod
    def ddl(self) -> list[str]:
        """Idempotent ``CREATE TABLE IF NOT EXISTS`` statements for this suffix."""

    @abc.abstractmethod
    def parse(self, message: dict[str, Any]) -> Any | None:
        """The facts of one decoded message, ``None`` when this model ignores its type."""

    def shared_parse(self) -> tuple[Hashable, Callable[[dict[str, Any]], Any]] | None:
        """``(key, parse)`` when other models read the same facts, else ``None``.

        Models with equal keys get the same facts from ``parse`` (each model's
        ``apply`` takes all of them and ignores what it does not fold), so a
        rebuild of several calls it once per message for all of them. Facts
        are immutable: one object is handed to each.
        """
        return None

    @abc.abstractmethod
    async def apply(self, conn: Connection, facts: Sequence[Any]) -> None:
        """Folds ``facts`` (in position order) into the tables, inside the caller's transaction."""

    def constraint_names(self) -> dict[str, list[str]]:
        """Per base table, the base names of its constraints (renamed along with it on swap)."""
        return {base: [f"{base}_pkey"] for base in self.tables}
