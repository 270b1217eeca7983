"""The benchmark harness runs end to end: ``python -m loadtests.bench --smoke``.

Checks the harness, not the service's speed: the run exits 0, prints JSON
with every figure the benchmark promises (single-event throughput above
zero, nothing else judged), and leaves neither its databases nor its
stream behind. Uses this session's PostgreSQL and NATS.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from pathlib import Path

import asyncpg
import nats
import pytest
from nats.js.errors import NotFoundError

from projections.catalog import PROJECTION_NAMES as MODELS

REPO = Path(__file__).resolve().parents[2]
BENCH_TIMEOUT_S = 150


@pytest.mark.timeout(BENCH_TIMEOUT_S + 30)
async def test_bench_smoke_prints_every_figure_and_cleans_up(
    pg_admin_dsn: str, nats_url: str
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "loadtests.bench",
        "--smoke",
        "--pg-admin-dsn",
        pg_admin_dsn,
        "--nats-url",
        nats_url,
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith("OMNILEDGER_")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), BENCH_TIMEOUT_S)
    except TimeoutError:
        proc.terminate()  # the bench cleans up on SIGTERM
        await asyncio.wait_for(proc.wait(), 30)
        raise
    assert proc.returncode == 0, err.decode(errors="replace")[-4000:]
    report = json.loads(out)

    assert report["command"].startswith("python -m loadtests.bench --smoke")
    for key in ("cpu_model", "cores", "python", "postgres"):
        assert report["machine"][key], key
    single, batched = report["single_event"], report["batched"]
    assert single["events_per_s"] > 0
    assert single["events_per_request"] == 1
    assert {"p50", "p99"} <= single["latency_ms"].keys()
    assert batched["events_per_request"] == 100
    for phase in (single, batched):
        assert {"events_per_s", "requests_per_s", "latency_ms", "group_commit"} <= phase.keys()
        assert {"lag_events_p99", "time_to_zero_lag_s"} <= phase["lag"]["projections"].keys()
        assert {"lag_events_p99", "time_to_zero_lag_s"} <= phase["lag"]["relay"].keys()
    assert "events_per_s" in report["baselines"]["eventsourcing"]
    assert {"requests_per_s", "latency_ms"} <= report["baselines"]["one_insert"].keys()
    assert report["baselines"]["batched_insert"]["events_per_s"] > 0
    assert set(report["ratios"]) >= {"single_event_vs_eventsourcing", "single_event_vs_one_insert"}
    assert report["ratios"]["batched_vs_raw_batched_insert"] > 0
    paused = report["single_event_downstream_paused"]
    assert paused["downstream_paused"] and paused["events_committed"] > 0
    # keys of its own: every event it sent was new, none answered as a duplicate
    assert not [n for n in report["notes"] if "committed for" in n], report["notes"]
    assert report["ratios"]["single_event_downstream_paused_vs_one_insert"] > 0
    # resumed: the read models caught up with the backlog the pause left
    assert paused["lag"]["projections"]["time_to_zero_lag_s"] is not None, paused["lag"]
    assert batched["connections"] == 8  # --smoke's --batch-connections
    catch_up = report["catch_up"]
    assert catch_up["fill"]["events"] >= 2_000
    runs = catch_up["runs"]
    assert [run["models"] for run in runs] == [["balances", "recaps", "city"], list(MODELS)]
    for run, path in itertools.product(runs, ("stream", "log")):
        assert run[path]["events"] == catch_up["fill"]["events"], catch_up
        assert run[path]["events_per_s"] > 0, catch_up
    rss = report["peak_rss_kb"]
    assert rss["omniledger up"] and rss["generator (wrk, max over runs)"]
    assert rss["baseline_insert"] and rss["baseline_eventsourcing"]

    tag = report["tag"]
    conn = await asyncpg.connect(pg_admin_dsn)
    try:
        left = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1", f"%{tag}%")
    finally:
        await conn.close()
    assert left == []
    nc = await nats.connect(nats_url)
    try:
        with pytest.raises(NotFoundError):
            await nc.jetstream().stream_info(f"BENCH_{tag}")
        with pytest.raises(NotFoundError):
            await nc.jetstream().stream_info(f"CATCHUP_{tag}")
    finally:
        await nc.close()
