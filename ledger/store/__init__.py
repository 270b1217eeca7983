"""PostgreSQL, and only PostgreSQL: every statement the core sends to it.

The parts, one module each:

- ``schema``: the tables and their numbered migrations;
- ``units``: what a command writes (:class:`~ledger.store.units.Unit`);
- ``append``: the group-committed append of units under the head lock, with
  the race re-checks;
- ``log``: reading the log, one stream, one seller, the rows as stored;
- ``keys``: idempotency keys, unique claims, the write path's indexes, API keys;
- ``suspense``: the suspense list;
- ``verify_runs``: the outcomes of ``omniledger verify``.

:class:`LedgerStore` is all of them on one pool.
"""

from __future__ import annotations

import asyncpg

from ledger.store.append import Append
from ledger.store.keys import Keys
from ledger.store.log import LogReads
from ledger.store.schema import Schema
from ledger.store.suspense import Suspense
from ledger.store.verify_runs import VerifyRuns

__all__ = ["LedgerStore"]


# One class made of the parts rather than a facade forwarding to part objects:
# the app, the API, the relay, the auditors and the tests call
# ``store.commit(...)``, ``store.read_log(...)`` in some forty places, and a
# forwarding facade would repeat every signature once more. Each part keeps its
# methods beside its SQL, uses nothing of the others but ``_pool``, and can be
# read alone; shared statements (the claims' SQL) are module functions.
class LedgerStore(Schema, Append, LogReads, Keys, Suspense, VerifyRuns):
    """Every statement the core sends to PostgreSQL, on one connection pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool
