"""The benchmark's baselines, each a process of its own, and what waits for them.

- ``insert_baseline``: a bare aiohttp endpoint, one INSERT per request
  (``loadtests.baseline_insert``), driven by the same wrk load as the ledger;
- ``eventsourcing_baseline``: the library's own Application, one save per
  event (``loadtests.baseline_eventsourcing``);
- ``batched_insert_baseline``: raw batched INSERTs of our row shape
  (``loadtests.baseline_batched_insert``).

``run_baselines`` runs the three in turn; ``loadtests.bench`` divides the
ledger's figures by theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Final

import aiohttp
import asyncpg

from ledger.ops.embedded import free_loopback_port
from loadtests import cpu
from loadtests.generator import run_wrk
from loadtests.processes import Child, peak_rss_kb
from loadtests.report import version_of
from loadtests.world import World, pg_parts

__all__ = ["backend_pids", "postgres_backends", "run_baselines", "wait_healthy"]

log = logging.getLogger("loadtests")

REPO: Final = Path(__file__).resolve().parent.parent
HEALTHY_TIMEOUT_S: Final = 90.0


async def wait_healthy(
    http: aiohttp.ClientSession, base_url: str, child: Child, workers: int = 1
) -> None:
    """Until every one of ``workers`` API processes on the port has answered
    ``/healthz`` 200: a load that began before one listens would never reach it
    (its connections are kept alive)."""
    deadline = time.monotonic() + HEALTHY_TIMEOUT_S
    seen: set[str] = set()
    while time.monotonic() < deadline:
        if not child.running():
            raise child.failed("exited before it was healthy")
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            # a new connection each time: the kernel picks the worker per connection
            async with http.get(f"{base_url}/healthz", headers={"Connection": "close"}) as r:
                if r.status == 200:
                    seen.add(r.headers.get("X-Omniledger-Worker", "1"))
                    if len(seen) >= workers:
                        return
                    continue
        await asyncio.sleep(0.2)
    raise child.failed(f"not healthy within {HEALTHY_TIMEOUT_S:.0f} s")


async def backend_pids(world: World, dbname: str) -> list[int]:
    """The PostgreSQL backends serving ``dbname`` now."""
    conn = await asyncpg.connect(world.pg_admin_dsn, timeout=5)
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", dbname)
    finally:
        await conn.close()
    return [r["pid"] for r in rows]


async def postgres_backends(world: World, dbname: str) -> dict[str, Any]:
    """Peak RSS of the PostgreSQL backends serving ``dbname`` (local servers only)."""
    try:
        pids = await backend_pids(world, dbname)
    except (TimeoutError, OSError, asyncpg.PostgresError) as e:
        return {"error": repr(e)}
    peaks = [kb for kb in (peak_rss_kb(pid) for pid in pids) if kb is not None]
    return {
        "backends": len(pids),
        "measured": len(peaks),
        "peak_rss_kb_max": max(peaks) if peaks else None,
        "peak_rss_kb_sum": sum(peaks) if peaks else None,
        "note": "VmHWM counts the shared buffers each backend touched",
    }


async def insert_baseline(world: World, http: aiohttp.ClientSession) -> dict[str, Any]:
    o = world.options
    dbname = f"bench_insert_{world.tag}"
    dsn = await world.create_database(dbname)
    port = free_loopback_port()
    child = world.children.add(
        Child(
            "baseline_insert",
            [sys.executable, "-m", "loadtests.baseline_insert", "--dsn", dsn, "--port", str(port)],
            log_path=world.log_path("baseline-insert"),
            cwd=REPO,
        )
    )
    child.start()
    await wait_healthy(http, f"http://127.0.0.1:{port}", child)
    if o.warmup_s:
        await run_wrk(world, mode="insert", phase="w", ports=[port], duration_s=o.warmup_s)
    parts = {"serve": [child.pid], "postgres": await backend_pids(world, dbname)}
    before = cpu.snapshot(parts)
    run = await run_wrk(world, mode="insert", phase="i", ports=[port], duration_s=o.duration_s)
    after = cpu.snapshot(parts)
    backends = await postgres_backends(world, dbname)
    await child.stop()
    return {
        "what": "bare aiohttp endpoint, one INSERT per request via an asyncpg pool (10)",
        "duration_s": round(run.duration_s, 3),
        "requests": run.requests,
        "requests_per_s": round(run.ok_requests / run.duration_s, 1),
        "errors": run.errors,
        "latency_ms": run.latency_ms(),
        "peak_rss_kb": child.peak_rss_kb,
        "generator_peak_rss_kb": run.peak_rss_kb,
        "postgres_backends": backends,
        "cpu_us_per_event": before.per_event_us(after, run.ok_requests),
    }


async def _json_result(child: Child, out: Path, timeout_s: float) -> dict[str, Any]:
    """Runs a baseline child to its end; its last JSON line, with its peak RSS."""
    child.start()
    code = await child.wait(timeout_s)
    text = await asyncio.to_thread(out.read_text, errors="replace")
    line = next((x for x in reversed(text.splitlines()) if x.startswith("{")), None)
    if code != 0 or line is None:
        raise child.failed("failed")
    result: dict[str, Any] = json.loads(line)
    result["peak_rss_kb"] = max(child.peak_rss_kb or 0, result.get("peak_rss_kb") or 0) or None
    return result


async def batched_insert_baseline(world: World) -> dict[str, Any]:
    """Raw batched INSERTs of our row shape (``loadtests.baseline_batched_insert``)."""
    o = world.options
    dsn = await world.create_database(f"bench_raw_{world.tag}")
    out = world.log_path("baseline-batched-insert")
    command = [sys.executable, "-m", "loadtests.baseline_batched_insert", "--dsn", dsn,
               "--duration", str(o.duration_s), "--batch-size", str(o.batch_size)]  # fmt: skip
    child = world.children.add(Child("baseline_batched_insert", command, log_path=out, cwd=REPO))
    before = cpu.box_busy_s()
    result = await _json_result(child, out, o.duration_s + 60)
    # the box's busy CPU over the whole child, start-up and table included: a little
    # more than its load alone, so the per-event figure errs in our favour
    busy_s = cpu.box_busy_s() - before
    if result.get("events"):
        result["cpu_us_per_event"] = {"box": round(busy_s / result["events"] * 1e6, 1)}
    return result


async def eventsourcing_baseline(world: World) -> dict[str, Any]:
    o = world.options
    dbname = f"bench_es_{world.tag}"
    await world.create_database(dbname)
    pg = pg_parts(world.pg_admin_dsn)
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTGRES_")}
    env.update(
        PERSISTENCE_MODULE="eventsourcing.postgres",
        POSTGRES_DBNAME=dbname,
        POSTGRES_HOST=pg["host"],
        POSTGRES_PORT=pg["port"],
        POSTGRES_USER=pg["user"],
        POSTGRES_PASSWORD=pg["password"],
        POSTGRES_POOL_SIZE=str(o.es_threads),
        PYTHONUNBUFFERED="1",
    )
    out = world.log_path("baseline-eventsourcing")
    child = world.children.add(
        Child(
            "baseline_eventsourcing",
            [
                sys.executable,
                "-m",
                "loadtests.baseline_eventsourcing",
                "--duration",
                str(o.duration_s),
                "--threads",
                str(o.es_threads),
            ],
            log_path=out,
            env=env,
            cwd=REPO,
        )
    )
    result = await _json_result(child, out, o.duration_s + 60)
    result["what"] = (
        f"eventsourcing {version_of('eventsourcing')} Application on eventsourcing.postgres,"
        f" one new aggregate per save, {o.es_threads} threads"
    )
    return result


async def run_baselines(world: World, http: aiohttp.ClientSession) -> dict[str, Any]:
    """``{"one_insert", "eventsourcing", "batched_insert"}``, measured in turn."""
    o = world.options
    log.info("baseline: one INSERT per request, %d s", o.duration_s)
    one_insert = await insert_baseline(world, http)
    log.info("one INSERT: %s requests/s", one_insert["requests_per_s"])
    log.info("baseline: eventsourcing Application, %d threads, %d s", o.es_threads, o.duration_s)
    es = await eventsourcing_baseline(world)
    log.info("eventsourcing: %s events/s", es["events_per_s"])
    log.info("baseline: raw batched INSERT, %d rows per transaction, %d s", o.batch_size,
             o.duration_s)  # fmt: skip
    raw = await batched_insert_baseline(world)
    log.info("raw batched INSERT: %s events/s", raw["events_per_s"])
    return {"eventsourcing": es, "one_insert": one_insert, "batched_insert": raw}
