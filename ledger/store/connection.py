"""The one name for "a PostgreSQL connection" in annotations.

asyncpg hands out two kinds that answer the same calls: a connection of its
own (``asyncpg.connect``) and a proxy for one borrowed from a pool
(``pool.acquire()``). Every function that only runs statements takes either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

__all__ = ["Connection"]

Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
