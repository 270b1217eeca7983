"""The read models as a running service: ``omniledger project`` (and ``up``).

Kept apart from the package's other exports so that what does not consume
the stream (``omniledger projections rebuild``, ``check-projections``, the
dasbor's reads) does not import nats-py (and the aiohttp it pulls in).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import asyncpg
import nats
from nats.aio.client import Client as NATS

from ledger.contract.messages import SUBJECT_PREFIX
from ledger.contract.servers import nats_servers
from projections.batch import Pace
from projections.catalog import PROJECTION_NAMES, projection
from projections.consumer import DEFAULT_STREAM, Consumer, ReadLog
from projections.puller import StatusOnlyClient
from projections.recaps import DEFAULT_TIMEZONE

__all__ = ["connect_nats", "run_projections"]

log = logging.getLogger(__name__)


async def connect_nats(url: str, name: str, stop: asyncio.Event) -> NATS | None:
    """Connects to one of the servers of ``url`` (comma-separated), waiting as long
    as it takes (a growing pause, one log line per try): NATS may start after us,
    or be away for a while. ``None`` if stopped."""
    delay_s = 0.5
    while not stop.is_set():
        try:
            nc = StatusOnlyClient()  # what nats.connect does, with this client
            await nc.connect(
                servers=nats_servers(url),  # a cluster: it moves to another when one goes
                name=name,
                max_reconnect_attempts=-1,
                error_cb=_quiet_nats_error,
            )
            return nc
        except (nats.errors.Error, OSError) as e:
            log.warning(
                "%s: NATS at %s unreachable (%s); retrying in %.1f s", name, url, e, delay_s
            )
        try:
            await asyncio.wait_for(stop.wait(), delay_s)
        except TimeoutError:
            pass
        delay_s = min(delay_s * 2, 30.0)
    return None


async def _quiet_nats_error(error: Exception) -> None:
    # nats-py's default logs a traceback for every failed (re)connect
    log.warning("NATS: %s", error or type(error).__name__)


async def run_projections(
    *,
    stop: asyncio.Event,
    database_url: str | None = None,
    nats_url: str | None = None,
    pool: asyncpg.Pool | None = None,
    nc: NATS | None = None,
    stream: str = DEFAULT_STREAM,
    subject_prefix: str = SUBJECT_PREFIX,
    timezone: str = DEFAULT_TIMEZONE,
    durable_prefix: str = "projection_",
    names: Sequence[str] = PROJECTION_NAMES,
    batch_size_max: int = 2000,
    linger_s: float = 0.0,
    read_log: ReadLog | None = None,
) -> None:
    """Runs one consumer per read model in ``names`` until ``stop`` is set (or cancelled).

    Give either ``pool`` / ``nc`` (borrowed, left open) or ``database_url`` /
    ``nats_url`` (opened here and closed on return). Each consumer's durable
    is ``<durable_prefix><name>``. A consumer's failures are logged and
    retried inside it; this returns only when stopped. ``read_log(after,
    limit)`` reads the log from PostgreSQL: a consumer fills from it the
    positions the stream did not deliver.
    """
    models = [projection(name, timezone=timezone) for name in names]  # fail fast on a bad name
    own_pool = own_nc = False
    if pool is None:
        if database_url is None:
            raise ValueError("give pool or database_url")
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=len(models) + 1)
        own_pool = True
    try:
        if nc is None:
            if nats_url is None:
                raise ValueError("give nc or nats_url")
            nc = await connect_nats(nats_url, "omniledger-projections", stop)
            if nc is None:
                return  # stopped while waiting for NATS
            own_nc = True
        try:
            pace = Pace()
            consumers = [
                Consumer(
                    model,
                    pool=pool,
                    nc=nc,
                    stream=stream,
                    subject_prefix=subject_prefix,
                    durable=f"{durable_prefix}{model.name}",
                    batch_size_max=batch_size_max,
                    linger_s=linger_s,
                    read_log=read_log,
                    pace=pace,
                )
                for model in models
            ]
            log.info("projections %s consuming %s (%s.>)", ", ".join(names), stream, subject_prefix)
            async with asyncio.TaskGroup() as tasks:
                for consumer in consumers:
                    tasks.create_task(consumer.run(stop), name=f"projection-{consumer.durable}")
        finally:
            if own_nc:
                await nc.close()
    finally:
        if own_pool:
            await pool.close()
