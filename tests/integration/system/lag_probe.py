"""End-to-end lag probe (not collected by pytest): write -> relay -> projection -> read.

Posts single ``order.placed`` events at a steady rate against a running
``omniledger up`` and, for each, measures the time from its ``201`` answer
until ``GET /v1/sellers/{id}/balance`` shows ``as_of_position >=`` that
event's position (the balances projection has applied it). Prints p50/p90/p99
of that lag, and of the write answer itself.

How the read side is watched: two pollers GET one seller's balance back to
back (1 ms apart). ``as_of_position`` is the balances projection's position,
the same for every seller, so each poll answer resolves every event acked
before it arrived whose position it covers; the lag of an event is "answer
received" minus "201 received", so it is never under-counted and is
over-counted by at most one poll round trip.

Against a running service::

    .venv/bin/python -m tests.integration.system.lag_probe --url http://127.0.0.1:8080 \\
        --admin-key KEY --rate 200 --seconds 20

Or let it set up everything on the local servers (a fresh database on
127.0.0.1:5432, a stream of its own on 127.0.0.1:4222, ``omniledger up`` on a
free port; all removed afterwards)::

    .venv/bin/python -m tests.integration.system.lag_probe --spawn --rate 200 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import nats
import orjson

from tests.integration.system.conftest import Deployment, Service, free_loopback_port
from tests.support.servers import with_database


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of ``values`` (0 < p <= 100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil
    return ordered[int(rank) - 1]


def summary(label: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"{label}: n={len(ms)} p50={percentile(ms, 50):.1f} ms p90={percentile(ms, 90):.1f} ms "
        f"p99={percentile(ms, 99):.1f} ms max={max(ms, default=float('nan')):.1f} ms"
    )


@dataclass
class Probe:
    session: aiohttp.ClientSession
    url: str
    headers: dict[str, str]
    sellers: list[str]
    tag: str
    pending: dict[int, float] = field(default_factory=dict)  # position -> time of the 201
    lags: list[float] = field(default_factory=list)
    ack_latencies: list[float] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)
    polls: int = 0
    seen_position: int = 0
    sending_done: bool = False
    drained: asyncio.Event = field(default_factory=asyncio.Event)

    def _note_drained(self) -> None:
        if self.sending_done and not self.pending:
            self.drained.set()

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        async with self.session.post(
            self.url + path, data=orjson.dumps(body),
            headers={"Content-Type": "application/json", **self.headers},
        ) as r:  # fmt: skip
            return r.status, orjson.loads(await r.read())

    async def send(self, i: int) -> None:
        loop = asyncio.get_running_loop()
        body = {
            "idempotency_key": f"probe-{self.tag}-{i}",
            "type": "order.placed",
            "seller_id": self.sellers[i % len(self.sellers)],
            "order_id": f"probe-{self.tag}-{i}",
            "channel": "qris",
            "amount": "10000",
            "occurred_at": "2026-11-30T10:00:00+08:00",
        }
        start = loop.time()
        try:
            status, answer = await self.post("/v1/events", body)
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            self.errors.append(repr(e))
            return
        acked = loop.time()
        if status != 201:
            self.errors.append((status, answer))
            return
        self.ack_latencies.append(acked - start)
        position = answer["position"]
        if position <= self.seen_position:
            self.lags.append(0.0)  # a poll already answered with it before the 201 arrived
        else:
            self.pending[position] = acked

    async def poller(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        path = f"{self.url}/v1/sellers/{self.sellers[0]}/balance"
        while not stop.is_set():
            async with self.session.get(path, headers=self.headers) as r:
                body = orjson.loads(await r.read())
            now = loop.time()
            self.polls += 1
            if r.status != 200:
                self.errors.append(("poll", r.status, body))
                await asyncio.sleep(0.1)
                continue
            seen = body["as_of_position"]
            if seen > self.seen_position:
                self.seen_position = seen
                for position in [p for p in self.pending if p <= seen]:
                    self.lags.append(now - self.pending.pop(position))
                self._note_drained()
            await asyncio.sleep(0.001)

    async def run(self, rate: float, seconds: float) -> float:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        pollers = [asyncio.create_task(self.poller(stop)) for _ in range(2)]
        senders: list[asyncio.Task[None]] = []
        total = int(rate * seconds)
        t0 = loop.time()
        for i in range(total):
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            senders.append(asyncio.create_task(self.send(i)))
        await asyncio.gather(*senders)
        elapsed = loop.time() - t0
        self.sending_done = True
        self._note_drained()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drained.wait(), 60)
        stop.set()
        await asyncio.gather(*pollers)
        return elapsed


async def probe(url: str, admin_key: str, rate: float, seconds: float, sellers: int) -> int:
    tag = uuid.uuid4().hex[:6]
    headers = {"Authorization": f"Bearer {admin_key}"}
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        p = Probe(session, url, headers, [f"probe-{n}-{tag}" for n in range(sellers)], tag)
        for s in p.sellers:
            status, answer = await p.post("/v1/sellers", {"seller_id": s, "name": f"Toko {s}"})
            if status != 201:
                print(f"cannot register {s}: {status} {answer}", file=sys.stderr)
                return 1
        elapsed = await p.run(rate, seconds)
    sent = int(rate * seconds)
    print(f"sent {sent} single events in {elapsed:.1f} s ({sent / elapsed:.0f}/s, target "
          f"{rate:g}/s); {p.polls} balance polls ({p.polls / elapsed:.0f}/s)")  # fmt: skip
    print(summary("write (POST -> 201)", p.ack_latencies))
    print(summary("visible (201 -> balance as_of_position >= position)", p.lags))
    if p.pending:
        print(f"NOT VISIBLE within 60 s after the last write: {len(p.pending)} events")
    if p.errors:
        print(f"errors: {len(p.errors)}, e.g. {p.errors[:3]}")
    return 1 if p.pending or p.errors else 0


@contextlib.asynccontextmanager
async def spawned(
    admin_dsn: str, nats_url: str, extra_env: dict[str, str]
) -> AsyncIterator[Service]:
    """A fresh database and stream, and ``omniledger up`` on them; all removed afterwards."""
    tag = uuid.uuid4().hex[:8]
    name = f"omniledger_probe_{tag}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    with tempfile.TemporaryDirectory(prefix="lag_probe_") as tmp:
        deployment = Deployment(
            dsn=with_database(admin_dsn, name), nats_url=nats_url, stream=f"LEDGER_PROBE{tag}",
            prefix=f"probe{tag}", data_dir=Path(tmp), admin_key=f"probe-admin-{tag}",
            extra_env=extra_env,
        )  # fmt: skip
        service = Service(deployment, free_loopback_port(), Path(tmp) / "up.log")
        try:
            await service.start()
            yield service
        finally:
            await service.stop()
            admin = await asyncpg.connect(admin_dsn)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
            nc = await nats.connect(nats_url)
            with contextlib.suppress(Exception):
                await nc.jetstream().delete_stream(deployment.stream)
            await nc.close()


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running service, e.g. http://127.0.0.1:8080")
    parser.add_argument("--admin-key", help="its OMNILEDGER_ADMIN_KEY")
    parser.add_argument("--spawn", action="store_true", help="start `omniledger up` for the run")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--env", action="append", default=[], metavar="OMNILEDGER_X=VALUE",
                        help="extra environment for the spawned service (repeatable)")  # fmt: skip
    parser.add_argument("--rate", type=float, default=200.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sellers", type=int, default=20)
    args = parser.parse_args(argv)
    if args.spawn:
        extra = dict(pair.split("=", 1) for pair in args.env)
        async with spawned(args.pg, args.nats, extra) as service:
            print(f"omniledger up on {service.url}, stream {service.deployment.stream}")
            return await probe(service.url, service.deployment.admin_key, args.rate,
                               args.seconds, args.sellers)  # fmt: skip
    if not args.url or not args.admin_key:
        parser.error("give --url and --admin-key, or --spawn")
    return await probe(args.url, args.admin_key, args.rate, args.seconds, args.sellers)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
