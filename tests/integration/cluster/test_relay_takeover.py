"""Issue 15, point 3: two ``omniledger relay`` processes, the leader killed under load.

One ``serve`` takes a bounded write load (tests/integration/faults/load.py); two
relays run against the same database: the first elected (the PostgreSQL
session advisory lock of ledger/relay/relay.py), the second a standby. The
leader gets SIGKILL; the time until the standby has published an event
committed after the kill must be at most ``TAKEOVER_BOUND_S``, and at the end
the stream holds every position of the log exactly once, in order
(sequence == position == ``Nats-Msg-Id``), each acknowledged write at the
position its answer gave, no fact twice, and ``omniledger verify`` passes.

Takeover is measured from the kill to the first stream sequence past the log
head read just after the kill: the dead leader can have read nothing past that
head, so a message beyond it was published by the standby.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import nats
import orjson

from tests.integration.cluster.parts import Part, head, stream_last_seq
from tests.integration.faults.load import Load, LoadConfig
from tests.integration.system.conftest import Deployment, Http, run_cli, stream_messages

TAKEOVER_BOUND_S = 5.0
#: load before the kill, so that it strikes a leader with writes in flight
PRE_KILL_S = 2.0
#: load after the standby took over
POST_TAKEOVER_S = 2.0
CATCH_UP_S = 20.0
POLL_S = 0.02
SELLERS = 3


@dataclass
class Takeover:
    takeover_s: float
    acked_total: int
    acked_during: int  # acknowledged between the kill and the standby's first publish
    stream_behind_at_kill: int  # events committed but not yet on the stream at the kill
    head: int
    failed_attempts: int  # of the clients' requests, any kind (a retry follows each)

    def line(self) -> str:
        return (
            f"relay takeover: {self.takeover_s:.2f} s from kill -9 to the standby's first "
            f"publish; {self.acked_during} writes acknowledged in between, {self.acked_total} "
            f"in all; stream {self.stream_behind_at_kill} events behind at the kill; "
            f"log head {self.head}; {self.failed_attempts} failed attempts; lost 0, doubled 0"
        )


async def test_standby_relay_takes_over_within_5_s_of_kill_9(
    deployment: Deployment, tmp_path: Path
) -> None:
    serve = Part(deployment, "serve", "serve", log_dir=tmp_path)
    first = Part(deployment, "relay-1", "relay", log_dir=tmp_path)
    second = Part(deployment, "relay-2", "relay", log_dir=tmp_path)
    nc = await nats.connect(deployment.nats_url)
    try:
        await serve.start()  # migrates the schema before either relay starts
        await first.start()
        await first.wait_log("relay: elected leader")
        await second.start()
        await asyncio.sleep(1.5)  # the standby has connected and tried the lock
        assert "elected leader" not in second.log(tail=None), second.log()

        figures, load = await _kill_leader_under_load(deployment, serve, first, second, nc)
        print(figures.line())
        assert figures.takeover_s <= TAKEOVER_BOUND_S, (figures, second.log())
        assert "relay: elected leader" in second.log(tail=None), second.log()
        await _stream_is_the_log(deployment, load, figures.head)
        verify = await run_cli(deployment, "verify")
        assert verify.rc == 0, verify
    finally:
        await nc.close()
        for part in (second, first, serve):
            await part.stop()


async def _kill_leader_under_load(
    deployment: Deployment, serve: Part, leader: Part, standby: Part, nc: Any
) -> tuple[Takeover, Load]:
    loop = asyncio.get_running_loop()
    tag = f"takeover-{uuid.uuid4().hex[:6]}"
    sellers = [f"{tag}-s{n}" for n in range(SELLERS)]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        http = Http(session, serve.url, deployment.admin_key, serve.log)
        for seller in sellers:
            await http.seller(seller)
    load = Load(serve.url, http.headers, sellers, tag, LoadConfig(duration_s=60.0))
    running = asyncio.create_task(load.run())
    try:
        await asyncio.sleep(PRE_KILL_S)
        assert load.acked, f"no write acknowledged before the kill: {load.failures}"
        killed_at = time.monotonic()
        await leader.kill()
        committed = await head(deployment.dsn)  # the dead leader read nothing past this
        on_stream = await stream_last_seq(nc, deployment.stream)
        while (last := await stream_last_seq(nc, deployment.stream)) <= committed:
            standby.assert_running()
            assert loop.time() - killed_at < CATCH_UP_S, (last, committed, standby.log())
            await asyncio.sleep(POLL_S)
        published_at = time.monotonic()
        await asyncio.sleep(POST_TAKEOVER_S)
        load.stop()
        await asyncio.wait_for(running, load.config.retry_grace_s + 30)
    finally:
        load.stop()
        if not running.done():
            running.cancel()
    assert not load.rejected and not load.unacked, (load.failures, load.rejected[:3])
    final = await head(deployment.dsn)
    deadline = loop.time() + CATCH_UP_S
    while await stream_last_seq(nc, deployment.stream) < final:
        assert loop.time() < deadline, f"the stream did not reach {final}\n{standby.log()}"
        await asyncio.sleep(0.1)
    during = [w for w in load.acked if w.acked_at and killed_at <= w.acked_at <= published_at]
    return Takeover(
        takeover_s=round(published_at - killed_at, 2),
        acked_total=len(load.acked),
        acked_during=len(during),
        stream_behind_at_kill=max(0, committed - on_stream),
        head=final,
        failed_attempts=sum(load.failures.values()),
    ), load


async def _stream_is_the_log(deployment: Deployment, load: Load, final: int) -> None:
    """Every position once, in order; every acknowledged write at its position; no double."""
    info, msgs = await stream_messages(deployment.nats_url, deployment.stream)
    state = info.state
    assert (state.first_seq, state.last_seq, state.messages) == (1, final, final), state
    bodies = []
    for msg in msgs:
        body = orjson.loads(msg.data)
        assert (msg.headers or {}).get("Nats-Msg-Id") == str(msg.seq), (msg.seq, msg.headers)
        assert body["position"] == msg.seq, (msg.seq, body["position"])
        bodies.append(body)
    for w in load.acked:
        assert w.position is not None
        got = bodies[w.position - 1]
        assert (got["type"], got["data"].get("order_id")) == (
            w.body["type"],
            w.body["order_id"],
        ), (w.position, got, w.body)
    facts = Counter(
        (b["type"], b["data"].get("order_id"))
        for b in bodies
        if b["type"] in ("order.placed", "payment.captured")
    )
    assert [f for f, n in facts.items() if n > 1] == [], "an event on the stream twice"
    positions = Counter(w.position for w in load.acked)
    assert [p for p, n in positions.items() if n > 1] == [], "two writes at one position"
