"""Issue 12, point 3: ``omniledger serve --workers 2``, real processes on one port.

Two API processes share the port (SO_REUSEPORT), each with its own writer:
both answer (``/healthz`` and the ``X-Omniledger-Worker`` header say which);
a burst of writes through both leaves the log gap-free and one hash chain
(``omniledger verify``); one idempotency key sent through both is one event;
a worker killed with SIGKILL is started again while the other one answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.integration.system.conftest import (
    OMNILEDGER,
    CliRunner,
    Deployment,
    command_lines,
    free_loopback_port,
)

AT = "2026-11-30T10:00:00+08:00"
START_TIMEOUT_S = 30.0
RESTART_TIMEOUT_S = 15.0


class Workers:
    """``omniledger serve --workers N`` in a process group of its own."""

    def __init__(self, deployment: Deployment, workers: int, log_path: Path) -> None:
        self.deployment = deployment
        self.workers = workers
        self.url = f"http://127.0.0.1:{free_loopback_port()}"
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        port = self.url.rsplit(":", 1)[1]
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                str(OMNILEDGER), "serve", "--port", port, "--workers", str(self.workers),
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                env=self.deployment.env(), cwd=str(self.deployment.data_dir),
                start_new_session=True,
            )  # fmt: skip

    def worker_pids(self) -> dict[int, int]:
        """``{index: pid}`` of the live worker processes, from /proc."""
        assert self.proc is not None
        out: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == self.proc.pid and fields[0] != "Z":  # its children, live
                line = command_lines({int(entry)})[int(entry)].split()
                if "--worker-index" in line:
                    out[int(line[line.index("--worker-index") + 1])] = int(entry)
        return out

    async def stop(self) -> int | None:
        if self.proc is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            code = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


async def fresh_get(url: str) -> tuple[int, dict[str, Any], str | None]:
    """One request on a new connection (the kernel picks the worker per connection)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        async with s.get(url) as r:
            return r.status, orjson.loads(await r.read()), r.headers.get("X-Omniledger-Worker")


async def answering(workers: Workers, tries: int = 40) -> dict[int, int]:
    """``{index: pid}`` of the workers seen answering ``/healthz`` in ``tries`` requests."""
    seen: dict[int, int] = {}
    for _ in range(tries):
        status, body, header = await fresh_get(f"{workers.url}/healthz")
        assert status == 200, body
        assert header == str(body["worker"]["index"])
        seen[body["worker"]["index"]] = body["worker"]["pid"]
    return seen


@pytest.fixture
async def workers(deployment: Deployment, tmp_path: Path) -> AsyncIterator[Workers]:
    w = Workers(deployment, 2, tmp_path / "serve.log")
    await w.start()
    try:
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        while True:
            assert w.proc is not None and w.proc.returncode is None, w.log()
            with contextlib.suppress(aiohttp.ClientError, OSError):
                if len(await answering(w, tries=10)) == 2:
                    break
            assert asyncio.get_running_loop().time() < deadline, w.log()
            await asyncio.sleep(0.1)
        yield w
    finally:
        assert await w.stop() == 0, w.log()
        assert not w.worker_pids(), "a worker outlived serve --workers"


async def test_two_workers_answer_on_one_port(workers: Workers) -> None:
    seen = await answering(workers)
    assert seen == workers.worker_pids(), (seen, workers.worker_pids())


async def test_burst_through_both_workers_is_one_gap_free_chain(
    workers: Workers, cli: CliRunner
) -> None:
    tag = uuid.uuid4().hex[:6]
    headers = {"Authorization": f"Bearer {workers.deployment.admin_key}"}
    connector = aiohttp.TCPConnector(force_close=True)  # a new connection, a new draw, each
    async with aiohttp.ClientSession(connector=connector, headers=headers) as s:

        async def post(body: Any) -> tuple[int, Any, str]:
            async with s.post(f"{workers.url}/v1/events", json=body) as r:
                return r.status, await r.json(), r.headers["X-Omniledger-Worker"]

        sellers = [f"w-{n}-{tag}" for n in range(4)]
        for seller in sellers:
            async with s.post(
                f"{workers.url}/v1/sellers", json={"seller_id": seller, "name": seller}
            ) as r:
                assert r.status == 201, await r.text()

        def placed(i: int, key: str | None = None) -> dict[str, Any]:
            return {
                "idempotency_key": key or uuid.uuid4().hex, "occurred_at": AT,
                "type": "order.placed", "seller_id": sellers[i % len(sellers)],
                "order_id": f"o{i}-{tag}", "channel": "qris", "amount": str(1000 + i),
            }  # fmt: skip

        singles = [post(placed(i)) for i in range(120)]
        batches = [
            post({"events": [placed(1000 + 50 * b + j) for j in range(50)]}) for b in range(6)
        ]
        same_key = uuid.uuid4().hex
        copies = [post(placed(5000, key=same_key)) for _ in range(24)]
        answers = await asyncio.gather(*singles, *batches, *copies)

    single_answers, batch_answers = answers[:120], answers[120:126]
    copy_answers = answers[126:]
    assert {status for status, _, _ in single_answers} == {201}, single_answers[:3]
    for status, body, _ in batch_answers:
        assert status == 200, body
        assert {r["status"] for r in body["results"]} == {"recorded"}, body
    assert {w for _, _, w in answers} == {"1", "2"}, "the burst did not reach both workers"
    # one key through both workers: one event, every answer naming it
    assert {w for _, _, w in copy_answers} == {"1", "2"}, copy_answers
    assert {status for status, _, _ in copy_answers} <= {200, 201}, copy_answers
    assert sum(status == 201 for status, _, _ in copy_answers) == 1, copy_answers
    assert len({body["position"] for _, body, _ in copy_answers}) == 1, copy_answers

    async with aiohttp.ClientSession(headers=headers) as s:
        events: list[dict[str, Any]] = []
        after = 0
        while True:
            async with s.get(f"{workers.url}/v1/events?after={after}&limit=1000") as r:
                page = await r.json()
            events.extend(page["events"])
            if page["next_after"] is None:
                break
            after = page["next_after"]
    positions = [e["position"] for e in events]
    assert positions == list(range(1, len(positions) + 1)), "a gap or a repeat in positions"
    orders = [e for e in events if e["type"] == "order.placed"]
    assert len(orders) == 120 + 6 * 50 + 1
    run = await cli("verify")
    assert run.rc == 0, run


async def test_a_killed_worker_is_started_again(workers: Workers) -> None:
    before = workers.worker_pids()
    os.kill(before[1], signal.SIGKILL)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RESTART_TIMEOUT_S
    # the other worker goes on answering; worker 1 comes back as a new process
    while True:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            # a connection the kernel had queued on the killed socket is reset: retried
            seen = await answering(workers, tries=10)
            assert seen.get(2) == before[2], seen
            if seen.get(1) not in (None, before[1]):
                break
        assert loop.time() < deadline, workers.log()
        await asyncio.sleep(0.05)
    after = workers.worker_pids()
    assert after[2] == before[2] and after[1] == seen[1] != before[1], (before, after)
    assert "serve-1 exited with signal 9 (SIGKILL)" in workers.log(), workers.log()
    for _ in range(20):  # both answer, nothing refused
        status, _, _ = await fresh_get(f"{workers.url}/healthz")
        assert status == 200
