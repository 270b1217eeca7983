"""Issue 15, point 3: the parts that scale out, each as several real processes.

- Two ``omniledger serve`` processes on two ports, one database, the client
  balancing round robin between them (as deploy/'s load balancer does):
  positions stay gap-free, the hash chain stays one chain (``verify``), and one
  idempotency key sent to both is one event.
- Projections spread by read model: ``project --models balances`` and
  ``project --models`` the others; killing the second stops the others
  while balances goes on, and its restart catches them up.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from projections.catalog import PROJECTION_NAMES
from tests.integration.cluster.parts import Part, head
from tests.integration.system.conftest import Deployment, Http, run_cli

AT = "2026-11-30T10:00:00+08:00"
CATCH_UP_S = 20.0


def placed(seller: str, order: str, key: str | None = None) -> dict[str, Any]:
    return {
        "idempotency_key": key or uuid.uuid4().hex, "occurred_at": AT, "type": "order.placed",
        "seller_id": seller, "order_id": order, "channel": "qris", "amount": "1000",
    }  # fmt: skip


async def test_two_serve_processes_balanced_by_the_client(
    deployment: Deployment, tmp_path: Path
) -> None:
    serves = [Part(deployment, f"serve-{n}", "serve", log_dir=tmp_path) for n in (1, 2)]
    try:
        for part in serves:
            await part.start()
        tag = uuid.uuid4().hex[:6]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            apis = [Http(session, p.url, deployment.admin_key, p.log) for p in serves]
            turn = itertools.cycle(apis)
            sellers = [f"rr-{n}-{tag}" for n in range(4)]
            for seller in sellers:
                await next(turn).seller(seller)

            async def post(body: dict[str, Any]) -> tuple[int, Any]:
                return await next(turn).post("/v1/events", body)

            singles = [post(placed(sellers[i % 4], f"o{i}-{tag}")) for i in range(160)]
            batches = [
                post({"events": [placed(sellers[j % 4], f"b{b}-{j}-{tag}") for j in range(40)]})
                for b in range(4)
            ]
            same_key = uuid.uuid4().hex
            # the same write, under one key, to both processes at once (12 copies each)
            copies = [post(placed(sellers[0], f"same-{tag}", key=same_key)) for _ in range(24)]
            answers = await asyncio.gather(*singles, *batches, *copies)
            single_answers, batch_answers, copy_answers = (
                answers[:160], answers[160:164], answers[164:]
            )  # fmt: skip
            assert {s for s, _ in single_answers} == {201}, single_answers[:3]
            for status, body in batch_answers:
                assert status == 200, body
                assert {r["status"] for r in body["results"]} == {"recorded"}, body
            assert {s for s, _ in copy_answers} <= {200, 201}, copy_answers
            assert sum(s == 201 for s, _ in copy_answers) == 1, copy_answers
            assert len({b["position"] for _, b in copy_answers}) == 1, copy_answers

            events = await apis[0].events()
            # both processes see one log
            assert [e["position"] for e in await apis[1].events()] == [
                e["position"] for e in events
            ]
        positions = [e["position"] for e in events]
        assert positions == list(range(1, len(positions) + 1)), "a gap or a repeat"
        assert positions[-1] == await head(deployment.dsn)
        orders = [e for e in events if e["type"] == "order.placed"]
        assert len(orders) == 160 + 4 * 40 + 1
        verify = await run_cli(deployment, "verify")
        assert verify.rc == 0, verify
    finally:
        for part in serves:
            assert await part.stop() == 0, part.log()


async def _positions(http: Http) -> dict[str, int]:
    status, body = await http.get("/v1/projections")
    assert status == 200, body
    return {p["name"]: p["position"] for p in body["projections"]}


async def _until(http: Http, want: dict[str, int], log: str = "") -> None:
    """Until each named read model is at its position."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CATCH_UP_S
    while True:
        got = await _positions(http)
        if all(got.get(name) == at for name, at in want.items()):
            return
        assert loop.time() < deadline, (got, want, log)
        await asyncio.sleep(0.05)


async def test_projections_spread_over_processes_by_read_model(
    deployment: Deployment, tmp_path: Path
) -> None:
    serve = Part(deployment, "serve", "serve", log_dir=tmp_path)
    relay = Part(deployment, "relay", "relay", log_dir=tmp_path)
    balances = Part(deployment, "project-balances", "project", "--models", "balances",
                    log_dir=tmp_path)  # fmt: skip
    rest = [name for name in PROJECTION_NAMES if name != "balances"]
    others = Part(deployment, "project-others", "project", "--models", ",".join(rest),
                  log_dir=tmp_path)  # fmt: skip
    parts = [serve, relay, balances, others]
    try:
        for part in parts:
            await part.start()
        tag = uuid.uuid4().hex[:6]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            http = Http(session, serve.url, deployment.admin_key, serve.log)
            seller = f"by-model-{tag}"
            await http.seller(seller)

            async def write(round_: int) -> int:
                for i in range(10):
                    order = f"o{round_}-{i}-{tag}"
                    status, out = await http.post("/v1/events", placed(seller, order))
                    assert status == 201, out
                return await head(deployment.dsn)

            first = await write(1)
            every = dict.fromkeys(PROJECTION_NAMES, first)
            await _until(http, every, balances.log() + others.log())

            await others.kill()  # the others stop; balances goes on alone
            later = await write(2)
            await _until(http, {"balances": later}, balances.log())
            await asyncio.sleep(1.0)
            stalled = await _positions(http)
            assert all(stalled[name] == first for name in rest), stalled

            await others.start()
            await _until(http, dict.fromkeys(PROJECTION_NAMES, later))
            check = await run_cli(deployment, "check-projections")
            assert check.rc == 0, check
    finally:
        for part in reversed(parts):
            await part.stop()


async def test_project_refuses_an_unknown_read_model(deployment: Deployment) -> None:
    run = await run_cli(deployment, "project", "--models", "balances,nope")
    assert run.rc == 2, run
    assert "nope" in run.err and run.err.count("\n") <= 2, run
