"""How far a read database (``OMNILEDGER_READ_DATABASE_URL``, a streaming standby)
is behind the primary it replays.

Asked of the standby itself: it cannot see the primary's current WAL position,
only what it has received and what it has replayed. So the lag is 0 while it
streams and has replayed all it received (a standby of an idle primary is
current, however old its last replayed commit), and otherwise the age of the
last commit it replayed (``now() - pg_last_xact_replay_timestamp()``): what a
reader misses is at most that old. A database that is not in recovery (a
primary, or a promoted standby) is 0 behind.
"""

from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass
from typing import Final

import asyncpg

__all__ = ["ReplicaLag", "ReplicaState", "database_label", "replica_state"]

_STATE_SQL: Final = """
SELECT pg_is_in_recovery() AS standby,
       CASE
         WHEN NOT pg_is_in_recovery() THEN 0
         WHEN EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')
              AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
         ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
       END AS lag_s,
       coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)::int8
         AS replay_behind_bytes
"""


@dataclass(frozen=True, slots=True)
class ReplicaState:
    standby: bool
    #: None: a standby that has replayed no commit since it started
    lag_s: float | None
    #: WAL received and not yet replayed
    replay_behind_bytes: int

    def describe(self) -> str:
        if not self.standby:
            return "not a standby: 0 s behind"
        lag = "unknown (no commit replayed yet)" if self.lag_s is None else f"{self.lag_s:.2f} s"
        return f"a standby, replay lag {lag}, {self.replay_behind_bytes} bytes not yet replayed"


async def replica_state(pool: asyncpg.Pool) -> ReplicaState:
    row = await pool.fetchrow(_STATE_SQL)
    assert row is not None
    lag = row["lag_s"]
    return ReplicaState(
        bool(row["standby"]),
        None if lag is None else max(0.0, round(float(lag), 3)),
        int(row["replay_behind_bytes"]),
    )


class ReplicaLag:
    """``await lag()``: the read database's lag in seconds, asked at most every
    ``MAX_AGE_S`` (every read answer carries it; one query per answer would
    double the reads' cost)."""

    MAX_AGE_S: Final = 0.5

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._at = -1e9
        self._lag_s: float | None = None

    async def __call__(self) -> float | None:
        now = time.monotonic()
        if now - self._at >= self.MAX_AGE_S:
            state = await replica_state(self._pool)
            self._lag_s, self._at = state.lag_s, time.monotonic()
        return self._lag_s


def database_label(url: str) -> str:
    """``hosts/database`` of a PostgreSQL URL, without the user or password: for a
    log line."""
    parts = urllib.parse.urlsplit(url)
    hosts = (
        parts.netloc.rpartition("@")[2]
        or urllib.parse.parse_qs(parts.query).get("host", ["(default)"])[0]
    )
    return f"{hosts}{parts.path}"
