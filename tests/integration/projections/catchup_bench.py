"""Catch-up apply rate of the projection consumers (not a test module; run by hand).

    .venv/bin/python -m tests.integration.projections.catchup_bench --events 100000

Publishes a synthetic, hash-chained history of ``--events`` messages to a
stream of its own (``LEDGER_BENCH_<tag>``, subjects ``bench<tag>.>``), then
times each read model's consumer from position 0 to the end, alone, and the
three together in one process as ``run_projections`` runs them. Uses a
database of its own (``omniledger_bench_<tag>``) on the server of ``--dsn``;
the stream and the database are removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

import asyncpg
import nats
import orjson

from ledger.contract.messages import subject_for
from projections import catalog
from projections.consumer import Consumer
from tests.unit.projections.log_builder import synthetic_log


async def publish(nc: Any, js: Any, stream: str, prefix: str, messages: list[dict]) -> None:
    for m in messages:
        await nc.publish(
            subject_for(m["type"], prefix),
            orjson.dumps(m),
            headers={"Nats-Msg-Id": str(m["position"])},
        )
    await nc.flush()
    for _ in range(3000):  # at most 5 minutes
        if (await js.stream_info(stream)).state.messages >= len(messages):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the stream did not receive every message")


async def catch_up(consumers: list[Consumer], position: int) -> float:
    for c in consumers:
        await c.start()

    async def drain(c: Consumer) -> None:
        while c.position < position:
            await c.step()

    started = time.perf_counter()
    try:
        await asyncio.gather(*(drain(c) for c in consumers))
    finally:
        for c in consumers:
            await c.close()
    return time.perf_counter() - started


async def main(args: argparse.Namespace) -> None:
    tag = uuid.uuid4().hex[:8]
    dbname, stream, prefix = f"omniledger_bench_{tag}", f"LEDGER_BENCH_{tag}", f"bench{tag}"
    t0 = time.perf_counter()
    log, _ = synthetic_log(args.events, sellers=args.sellers, seed=1)
    print(f"generated {len(log.messages)} messages in {time.perf_counter() - t0:.1f}s")
    admin = await asyncpg.connect(args.dsn)
    await admin.execute(f'CREATE DATABASE "{dbname}"')
    nc = await nats.connect(args.nats)
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[f"{prefix}.>"])
    dsn = args.dsn.rsplit("/", 1)[0] + f"/{dbname}"
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=6)
    try:
        t0 = time.perf_counter()
        await publish(nc, js, stream, prefix, log.messages)
        print(f"published in {time.perf_counter() - t0:.1f}s")
        names = args.models.split(",")

        def consumer(name: str, durable: str) -> Consumer:
            return Consumer(
                catalog.projection(name),
                pool=pool,
                nc=nc,
                stream=stream,
                subject_prefix=prefix,
                durable=durable,
                batch_size_max=args.batch,
            )

        for name in names:
            took = await catch_up([consumer(name, f"alone_{name}")], log.position)
            print(f"{name:9s} alone: {log.position / took:9.0f} events/s ({took:.1f}s)")
        # the three together, from scratch: fresh position rows
        await pool.execute(
            "UPDATE projection_positions SET position = 0, generation = generation + 1"
        )
        for name in names:
            for table in catalog.projection(name).tables:
                await pool.execute(f"TRUNCATE {table}")
        took = await catch_up([consumer(n, f"together_{n}") for n in names], log.position)
        print(
            f"{'+'.join(names)} together: {log.position / took:9.0f} events/s per model,"
            f" {len(names) * log.position / took:.0f} applied/s in all ({took:.1f}s)"
        )
    finally:
        await pool.close()
        await js.delete_stream(stream)
        await nc.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--sellers", type=int, default=200)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--models", default="balances,recaps,city")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    asyncio.run(main(parser.parse_args()))
