"""The outcomes of ``omniledger verify`` of the live log, newest last (migration 7).

Kept beside the log, not in it: a verification is about the hash chain, not
an event of it (recording it as one would change what the next one checks).
"""

from __future__ import annotations

import asyncpg
import orjson

__all__ = ["VerifyRuns"]


class VerifyRuns:
    """The verify-runs part of :class:`ledger.store.LedgerStore`."""

    _pool: asyncpg.Pool

    async def record_verify(
        self, *, ok: bool, events: int, head_position: int, problems: list[str]
    ) -> None:
        await self._pool.execute(
            "INSERT INTO verify_runs (ok, events, head_position, problems)"
            " VALUES ($1, $2, $3, $4::jsonb)",
            ok,
            events,
            head_position,
            orjson.dumps(problems).decode(),
        )
