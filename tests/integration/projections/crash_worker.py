"""A consumer process for the kill -9 test (not a test module).

``python -m tests.integration.projections.crash_worker DSN SCHEMA NATS_URL STREAM PREFIX
apply|ack`` runs the balances consumer with batches of 7 and stops dead in
the first batch - inside the transaction (``apply``) or after the commit and
before the acks (``ack``) - printing ``HANG`` so the test can SIGKILL it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any

import asyncpg
import nats

from projections.balances import BalancesProjection
from projections.consumer import Consumer


def hang() -> Any:
    print("HANG", flush=True)
    return asyncio.Event().wait()


class HangInApply(BalancesProjection):
    async def apply(self, conn: asyncpg.Connection, facts: Sequence[Any]) -> None:
        await super().apply(conn, facts)
        await hang()


class HangBeforeAck(Consumer):
    async def _settle(self, items: Sequence[Any], last: Any) -> int:
        await hang()
        return 0


async def main(dsn: str, schema: str, nats_url: str, stream: str, prefix: str, where: str) -> None:
    pool = await asyncpg.create_pool(
        dsn, min_size=1, max_size=2, server_settings={"search_path": schema}
    )
    nc = await nats.connect(nats_url)
    cls, projection = (
        (Consumer, HangInApply()) if where == "apply" else (HangBeforeAck, BalancesProjection())
    )
    consumer = cls(
        projection,
        pool=pool,
        nc=nc,
        stream=stream,
        subject_prefix=prefix,
        durable="projection_balances",
        batch_size_max=7,
        fetch_timeout_s=0.2,
    )
    await consumer.run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
