"""The benchmark: ``python -m loadtests.bench``, one run on one machine, JSON out.

One run does, against the PostgreSQL and NATS it is given (or embedded ones
when none is given and nothing listens on 127.0.0.1:5432 / :4222):

1. creates a fresh database ``omniledger_bench_<tag>`` and uses a stream
   ``BENCH_<tag>`` with subjects ``bench_<tag>.*`` of its own;
2. starts ``omniledger up`` on a free loopback port against them (or, with
   ``--serve-processes``/``--project-processes`` above 1 or ``--split``,
   N ``omniledger serve`` + one ``omniledger relay`` + M ``omniledger
   project`` processes), registers sellers;
3. drives ``wrk`` (its own process; ``loadtests/post_events.lua`` makes every
   idempotency key unique; connections spread over the serve ports) for
   ``--duration`` seconds per phase: single ``order.placed`` events, then
   100-event batches; while each runs it polls ``GET /v1/projections`` (and
   the relay's stream against ``/healthz``) every 100 ms, and afterwards
   times how long until the lag is zero (the batched phase with
   ``--batch-connections``, 16 by default, as issue 12 sets it); then single
   events once more with the relay and projection processes paused
   (SIGSTOP), the write path alone on the cores, resumed before the lag is timed;
4. stops the service; fills another database with ``--catchup-events``
   orders placed and captured and times the read models catching up from
   zero, from the stream (relay + project) and from the log (rebuild)
   (``loadtests/catchup.py``);
5. measures three baselines on the same PostgreSQL
   server, each in a fresh database (``loadtests/baselines.py``):
   ``loadtests/baseline_insert.py`` (bare aiohttp + one asyncpg INSERT per
   request, same generator, same bodies), ``loadtests/baseline_eventsourcing.py``
   (a plain ``eventsourcing`` Application, one new aggregate per save, 8
   threads) and ``loadtests/baseline_batched_insert.py`` (raw batched INSERTs
   of our row shape, 100 per transaction, 8 connections);
6. prints one JSON document (figures, ratios, peak RSS per process, machine,
   the exact command) and, with ``--write``, replaces its section in
   ``BENCHMARKS.md``.

Everything it starts is stopped, its databases dropped and its stream
deleted, also on failure, Ctrl-C or SIGTERM. Every loop is bounded in time.
Only loopback addresses are used for what it starts.

    python -m loadtests.bench --smoke                 # ~20 s, checks the harness
    python -m loadtests.bench --duration 10           # the figures
    python -m loadtests.bench --duration 10 --serve-processes 2 --project-processes 2
    python -m loadtests.bench --duration 10 --write   # on a quiet machine only

The parts: ``world.py`` (options, servers, databases, stream), ``processes.py``
(children, peak RSS, cleanup), ``generator.py`` (wrk), ``lag.py`` (polling
the lag), ``report.py`` (machine facts, ratios, ``BENCHMARKS.md``); this
module starts the service and runs the phases.

Not here: thresholds (figures are reported, never judged), tuning of the
service, anything that needs the service's internals beyond its HTTP API
(``/healthz``, ``/metrics``, ``/v1/projections``, ``/v1/sellers``, ``/v1/events``).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aiohttp

from ledger.ops.embedded import free_loopback_port
from loadtests import catchup, cpu
from loadtests.baselines import backend_pids, postgres_backends, run_baselines, wait_healthy
from loadtests.generator import connections_for, run_wrk
from loadtests.lag import LAG_POLL_INTERVAL_S, LagWatch, summarize_lag
from loadtests.processes import Child, ChildFailed, Children, descendants
from loadtests.report import exact_command, machine_info, ratios, write_benchmarks
from loadtests.world import (
    DEFAULT_NATS_URL,
    DEFAULT_PG_ADMIN_DSN,
    Options,
    Stream,
    World,
    nats_server,
    postgres_server,
)
from projections.catalog import PROJECTION_NAMES
from tests.integration.audit.bench_audit import fill

__all__ = ["main"]

log = logging.getLogger("loadtests")

REPO: Final = Path(__file__).resolve().parent.parent
BENCHMARKS_MD: Final = REPO / "BENCHMARKS.md"
#: the service finishes the requests it holds before it exits (graceful stop)
SERVICE_STOP_TIMEOUT_S: Final = 60.0
HTTP_TIMEOUT_S: Final = 5.0
CLEANUP_STEP_TIMEOUT_S: Final = 20.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtests.bench", description=__doc__.splitlines()[0]
    )
    p.add_argument("--duration", type=int, default=10, help="seconds per phase (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load first")
    p.add_argument("--connections", type=int, default=64, help="generator connections")
    p.add_argument("--sellers", type=int, default=100, help="sellers registered and used")
    p.add_argument("--batch-size", type=int, default=100, help="events per batched request")
    p.add_argument(
        "--batch-connections",
        type=int,
        default=16,
        help="generator connections in the batched phase (default 16, as issue 12 sets it)",
    )
    p.add_argument(
        "--catchup-events",
        type=int,
        default=100_000,
        help="events filled for the catch-up phase (loadtests/catchup.py; 0: none)",
    )
    p.add_argument("--serve-processes", type=int, default=1, metavar="N")
    p.add_argument("--project-processes", type=int, default=1, metavar="N")
    p.add_argument(
        "--serve-workers",
        type=int,
        default=1,
        metavar="N",
        help="`omniledger up/serve --workers N`: API processes sharing each port (default 1)",
    )
    p.add_argument(
        "--split",
        action="store_true",
        help="serve/relay/project as separate processes even with N=1",
    )
    p.add_argument("--es-threads", type=int, default=8, help="eventsourcing baseline threads")
    p.add_argument("--lag-timeout", type=float, default=60.0, help="max wait for zero lag (s)")
    p.add_argument(
        "--pg-admin-dsn",
        help=f"a PostgreSQL where the bench may create databases (default {DEFAULT_PG_ADMIN_DSN}"
        " if it listens, else embedded)",
    )
    p.add_argument(
        "--nats-url",
        help=f"NATS with JetStream (default {DEFAULT_NATS_URL} if it listens, else embedded)",
    )
    p.add_argument("--embedded", action="store_true", help="embedded PostgreSQL and NATS")
    p.add_argument("--smoke", action="store_true", help="2-second phases, small everything")
    p.add_argument("--write", action="store_true", help="replace this run's BENCHMARKS.md section")
    p.add_argument("--label", help="BENCHMARKS.md section name (default from the topology)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def parse_options(argv: list[str]) -> tuple[Options, bool]:
    parser = _parser()
    a = parser.parse_args(argv)
    if a.smoke:
        if a.write:
            parser.error("--smoke figures are not benchmarks: no --write")
        a.duration, a.warmup, a.sellers, a.connections = 2, 0, 10, 16
        a.batch_connections, a.catchup_events = 8, min(a.catchup_events, 2_000)
        a.lag_timeout = min(a.lag_timeout, 15.0)
    limits = {
        "--duration": (a.duration, 1, 3600),
        "--warmup": (a.warmup, 0, 600),
        "--connections": (a.connections, 1, 4096),
        "--sellers": (a.sellers, 1, 100_000),
        "--batch-size": (a.batch_size, 1, 1000),
        "--batch-connections": (a.batch_connections, 1, 4096),
        "--catchup-events": (a.catchup_events, 0, 10_000_000),
        "--serve-processes": (a.serve_processes, 1, 32),
        "--project-processes": (a.project_processes, 1, 32),
        "--serve-workers": (a.serve_workers, 1, 32),
        "--es-threads": (a.es_threads, 1, 256),
    }
    for name, (value, low, high) in limits.items():
        if not low <= value <= high:
            parser.error(f"{name} must be between {low} and {high}")
    if a.connections < a.serve_processes:
        parser.error("--connections must be at least --serve-processes")
    options = Options(
        duration_s=a.duration,
        warmup_s=a.warmup,
        connections=a.connections,
        sellers=a.sellers,
        batch_size=a.batch_size,
        serve_processes=a.serve_processes,
        project_processes=a.project_processes,
        split=a.split,
        es_threads=a.es_threads,
        lag_timeout_s=a.lag_timeout,
        pg_admin_dsn=a.pg_admin_dsn,
        nats_url=a.nats_url,
        embedded=a.embedded,
        smoke=a.smoke,
        write=a.write,
        label=a.label,
        keep=a.keep,
        argv=list(argv),
        serve_workers=a.serve_workers,
        batch_connections=a.batch_connections,
        catchup_events=a.catchup_events,
    )
    return options, a.verbose


# -- the service under test ---------------------------------------------------------------


@dataclass
class Service:
    ports: list[int]
    processes: list[Child]
    #: API processes sharing each port (``--serve-workers``)
    workers: int = 1

    def url(self, index: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[index]}"


def _service_env(world: World, database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    ours = {
        "OMNILEDGER_DATABASE_URL": database_url,
        "OMNILEDGER_NATS_URL": world.nats_url,
        "OMNILEDGER_ADMIN_KEY": world.admin_key,
        "OMNILEDGER_STREAM": world.stream,
        "OMNILEDGER_SUBJECT_PREFIX": world.subject_prefix,
        "OMNILEDGER_DATA_DIR": str(world.workdir / "data"),
        "OMNILEDGER_LOG_LEVEL": os.environ.get("OMNILEDGER_LOG_LEVEL") or "WARNING",
    }
    inherited = sorted(k for k in env if k.startswith("OMNILEDGER_") and k not in ours)
    if inherited:
        world.notes.append(f"service inherited from the environment: {', '.join(inherited)}")
    env.update(ours)
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def start_service(world: World, http: aiohttp.ClientSession, database_url: str) -> Service:
    o = world.options
    env = _service_env(world, database_url)
    cli = [sys.executable, "-m", "ledger.ops.cli"]
    workers = ["--workers", str(o.serve_workers)] if o.serve_workers > 1 else []
    if o.topology == "up":
        port = free_loopback_port()
        child = world.children.add(
            Child(
                "omniledger up",
                [*cli, "up", "--port", str(port), *workers],
                log_path=world.log_path("omniledger-up"),
                env=env,
                cwd=REPO,
            )
        )
        child.start()
        await wait_healthy(http, f"http://127.0.0.1:{port}", child, o.serve_workers)
        return Service([port], [child], o.serve_workers)
    ports: list[int] = []
    processes: list[Child] = []
    for i in range(o.serve_processes):
        port = free_loopback_port()
        child = world.children.add(
            Child(
                f"omniledger serve #{i + 1}",
                [*cli, "serve", "--port", str(port), *workers],
                log_path=world.log_path(f"omniledger-serve-{i + 1}"),
                env=env,
                cwd=REPO,
            )
        )
        child.start()
        # the first one migrates the schema alone; the others start on a ready database
        await wait_healthy(http, f"http://127.0.0.1:{port}", child, o.serve_workers)
        ports.append(port)
        processes.append(child)
    # Each read model is one durable consumer whose batches must be applied in
    # order, so projections scale out by giving each process its own models.
    models = list(PROJECTION_NAMES)
    shares = [models[i :: o.project_processes] for i in range(o.project_processes)]
    parts = [("relay", "omniledger relay", "omniledger-relay", [])] + [
        (
            "project",
            f"omniledger project #{i + 1}",
            f"omniledger-project-{i + 1}",
            ["--models", ",".join(share)] if o.project_processes > 1 else [],
        )
        for i, share in enumerate(shares)
        if share
    ]
    for command, name, log_name, extra in parts:
        child = world.children.add(
            Child(
                name, [*cli, command, *extra], log_path=world.log_path(log_name), env=env, cwd=REPO
            )
        )
        child.start()
        processes.append(child)
    await asyncio.sleep(1.0)
    for child in processes:
        if not child.running():
            raise child.failed("exited during start-up")
    return Service(ports, processes, o.serve_workers)


async def register_sellers(world: World, http: aiohttp.ClientSession, base_url: str) -> None:
    headers = {"Authorization": f"Bearer {world.admin_key}"}
    gate = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        body = {
            "seller_id": f"bench-{world.tag}-{i}",
            "name": f"Bench seller {i}",
            "district": ("Tamalate", "Panakkukang", "Rappocini", "Mariso")[i % 4],
        }
        async with gate, http.post(f"{base_url}/v1/sellers", json=body, headers=headers) as r:
            if r.status not in (200, 201):
                raise RuntimeError(f"POST /v1/sellers: {r.status} {await r.text()}")

    await asyncio.gather(*(one(i) for i in range(world.options.sellers)))


async def head_position(http: aiohttp.ClientSession, base_url: str) -> int:
    async with http.get(f"{base_url}/healthz") as r:
        body = await r.json()
        return int(body["head_position"])


_WRITER_LINE: Final = re.compile(r"^omniledger_writer_(\w+) ([0-9.e+]+)$", re.M)


#: ``--serve-workers``: /metrics asked this many times at most per port to reach every worker
_WORKER_TRIES: Final = 64


async def writer_stats(http: aiohttp.ClientSession, service: Service) -> list[dict[str, float]]:
    """The ``omniledger_writer_*`` gauges of /metrics, one dict per serve process
    (per worker with ``--serve-workers``: the kernel picks the worker per
    connection, so /metrics is asked on new connections until each has answered)."""
    stats: list[dict[str, float]] = []
    for i in range(len(service.ports)):
        per_worker: dict[str, dict[str, float]] = {}
        for _ in range(_WORKER_TRIES if service.workers > 1 else 1):
            try:
                async with http.get(
                    f"{service.url(i)}/metrics", headers={"Connection": "close"}
                ) as r:
                    text = await r.text()
                    worker = r.headers.get("X-Omniledger-Worker", "1")
            except (TimeoutError, aiohttp.ClientError):
                continue
            per_worker[worker] = {name: float(v) for name, v in _WRITER_LINE.findall(text)}
            if len(per_worker) >= service.workers:
                break
        stats.extend(per_worker[w] for w in sorted(per_worker))
        stats.extend({} for _ in range(service.workers - len(per_worker)))  # not reached
    return stats


def group_commit(before: list[dict[str, float]], after: list[dict[str, float]]) -> dict[str, Any]:
    """Transactions and events the writers committed between two ``writer_stats``."""

    def delta(name: str) -> list[int]:
        return [int(a.get(name, 0) - b.get(name, 0)) for b, a in zip(before, after, strict=True)]

    batches, events = delta("batches"), delta("events")
    return {
        "transactions": sum(batches),
        "events": sum(events),
        "events_per_transaction_mean": round(sum(events) / sum(batches), 1)
        if sum(batches)
        else None,
        "events_per_serve_process": events,
    }


# -- phases -------------------------------------------------------------------------------


async def ledger_phase(
    world: World,
    http: aiohttp.ClientSession,
    service: Service,
    watch: LagWatch,
    *,
    mode: str,
    dbname: str,
    downstream_paused: bool = False,
) -> dict[str, Any]:
    """One phase of ``--duration`` seconds; with ``downstream_paused`` the relay and
    projection processes are stopped (SIGSTOP) for its length, so that it measures the
    write path alone on the box's cores, and resumed (SIGCONT) before the lag is timed:
    its lag figures are then those of catching up the backlog."""
    o = world.options
    per_request = o.batch_size if mode == "batch" else 1
    connections = o.batch_connections if mode == "batch" else o.connections
    head_before = await head_position(http, service.url())
    stats_before = await writer_stats(http, service)
    parts = await _cpu_parts(world, service, dbname)
    paused = [*parts["relay"], *parts["project"]] if downstream_paused else []
    cpu_before = cpu.snapshot(parts)
    stop = asyncio.Event()
    sampler = asyncio.create_task(watch.during(stop))
    try:
        _signal_all(paused, signal.SIGSTOP)
        run = await run_wrk(
            world,
            mode=mode,
            # the phase's letter keeps its idempotency keys apart from the other phases'
            phase="p" if downstream_paused else mode[0],
            ports=service.ports,
            duration_s=o.duration_s,
            connections=connections,
        )
    finally:
        _signal_all(paused, signal.SIGCONT)
        stop.set()
        samples = await sampler
    load_ended = time.monotonic()
    cpu_after = cpu.snapshot(parts)
    head_after = await head_position(http, service.url())
    stats_after = await writer_stats(http, service)
    backends = await postgres_backends(world, dbname)
    after = await watch.after_load(load_ended, o.lag_timeout_s, o.quiet_s)
    committed = head_after - head_before
    if run.errors.get("status"):
        world.notes.append(
            f"{mode}: {run.errors['status']} of {run.requests} requests answered non-2xx"
        )
    expected = run.ok_requests * per_request
    if committed < 0.99 * expected:
        world.notes.append(
            f"{mode}: {committed} events committed for {expected} sent in 2xx requests"
            " (rejected batch items?)"
        )
    return {
        "events_per_request": per_request,
        "downstream_paused": downstream_paused,
        "connections": connections_for(connections, len(service.ports)),
        "duration_s": round(run.duration_s, 3),
        "events_committed": committed,
        "events_per_s": round(committed / run.duration_s, 1),
        "events_per_s_client": round(run.ok_requests * per_request / run.duration_s, 1),
        "requests": run.requests,
        "requests_per_s": round(run.requests / run.duration_s, 1),
        "errors": run.errors,
        "latency_ms": run.latency_ms(),
        "group_commit": group_commit(stats_before, stats_after),
        # during the load only: the read side's catching up afterwards is not in it
        "cpu_us_per_event": cpu_before.per_event_us(cpu_after, committed),
        "lag": summarize_lag(samples, after, watch, o.lag_timeout_s),
        "generator_peak_rss_kb": run.peak_rss_kb,
        "postgres_backends": backends,
    }


def _signal_all(pids: list[int], signum: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


async def _cpu_parts(world: World, service: Service, dbname: str) -> dict[str, list[int]]:
    """The processes whose CPU a phase reports, by part: the service's (serve, relay,
    project, told apart by their command line), its database's PostgreSQL backends,
    the NATS server(s) on this box."""
    parts: dict[str, list[int]] = {"serve": [], "relay": [], "project": []}
    for child in service.processes:
        for pid in (child.pid, *sorted(descendants(child.pid))):
            argv = cpu.argv_of(pid)
            if argv is None:
                continue
            part = next((p for p in ("relay", "project") if p in argv), "serve")
            parts[part].append(pid)
    parts["postgres"] = await backend_pids(world, dbname)
    parts["nats"] = cpu.pids_named("nats-server")
    return parts


# -- the run ------------------------------------------------------------------------------


async def _step(name: str, action: Callable[[], Awaitable[Any]]) -> None:
    """One cleanup step: bounded in time, its failure logged, never hiding the first error."""
    try:
        await asyncio.wait_for(action(), CLEANUP_STEP_TIMEOUT_S)
    except Exception as e:
        log.warning("cleanup: %s failed: %r", name, e)


async def run(options: Options) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    tag = uuid.uuid4().hex[:8]
    started_at = datetime.now(UTC)
    workdir = Path(tempfile.mkdtemp(prefix=f"omniledger-bench-{tag}-"))
    children = Children()
    atexit.register(children.kill_all)  # last resort if the loop itself dies
    world = World(options, tag, workdir, children, admin_key=f"olk_bench_{uuid.uuid4().hex}")
    log.info("bench %s: work folder %s", tag, workdir)
    failed = True
    async with contextlib.AsyncExitStack() as stack:

        def remove_workdir() -> None:
            if options.keep:
                return
            # after a failure the logs stay for a look; server data never does
            for part in (
                (workdir,) if not failed else (workdir / "pg", workdir / "nats", workdir / "data")
            ):
                shutil.rmtree(part, ignore_errors=True)

        stack.callback(remove_workdir)
        await stack.enter_async_context(postgres_server(world))
        await stack.enter_async_context(nats_server(world))
        stack.push_async_callback(_step, "drop databases", world.drop_databases)
        stream = Stream(world)
        await stream.connect()
        stack.push_async_callback(_step, "delete stream", stream.delete_and_close)
        # last pushed, first run: processes stop before their databases are dropped
        stack.push_async_callback(_step, "stop processes", children.stop_all)
        http = await stack.enter_async_context(
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S))
        )
        try:
            report = await _measure(world, http, stream)
        except (asyncio.CancelledError, KeyboardInterrupt):
            failed = False  # interrupted, not broken: nothing to look at afterwards
            raise
        except BaseException:
            for child in children._all:
                if child.name.startswith(("omniledger", "baseline")):
                    log.error("--- %s, last output ---\n%s", child.name, child.log_tail(2000))
            log.error("logs kept in %s", workdir / "logs")
            raise
        report["started_at"] = started_at.isoformat(timespec="seconds")
        report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        failed = False
    return report


async def _measure(world: World, http: aiohttp.ClientSession, stream: Stream) -> dict[str, Any]:
    o = world.options
    machine = await machine_info(world, stream)
    dbname = f"omniledger_bench_{world.tag}"
    database_url = await world.create_database(dbname)
    log.info("starting the service (%s) on %s", o.topology, dbname)
    service = await start_service(world, http, database_url)
    await register_sellers(world, http, service.url())
    log.info("registered %d sellers; service on ports %s", o.sellers, service.ports)
    watch = LagWatch(world, http, service.url(), stream)
    if o.warmup_s:
        log.info("warm-up %d s", o.warmup_s)
        await run_wrk(world, mode="single", phase="w", ports=service.ports, duration_s=o.warmup_s)
        await watch.after_load(time.monotonic(), o.lag_timeout_s, o.quiet_s)
    log.info("phase single events, %d s", o.duration_s)
    single = await ledger_phase(world, http, service, watch, mode="single", dbname=dbname)
    log.info("single: %s events/s", single["events_per_s"])
    log.info("phase batched events, %d s", o.duration_s)
    batched = await ledger_phase(world, http, service, watch, mode="batch", dbname=dbname)
    log.info("batched: %s events/s", batched["events_per_s"])
    log.info("phase single events, relay and projections paused, %d s", o.duration_s)
    write_only = await ledger_phase(
        world, http, service, watch, mode="single", dbname=dbname, downstream_paused=True
    )
    log.info("single, downstream paused: %s events/s", write_only["events_per_s"])
    for child in service.processes:
        await child.stop(SERVICE_STOP_TIMEOUT_S)
        if child.returncode not in (0, -signal.SIGTERM):
            world.notes.append(f"{child.name} exited {child.returncode} on SIGTERM")
    catch_up = await catch_up_phase(world)
    baselines = await run_baselines(world, http)
    report = _report(world, machine, service, (single, batched, write_only), baselines)
    report["catch_up"] = catch_up
    return report


async def catch_up_phase(world: World) -> dict[str, Any] | None:
    """The read models from zero, from the stream and from the log, on a database of
    their own filled with orders placed and captured (``loadtests/catchup.py``): the
    service is stopped by then, so nothing else runs. Twice: the three models issue
    12's goals are set on, then all of them."""
    o = world.options
    if not o.catchup_events:
        return None
    dsn = await world.create_database(f"omniledger_catchup_{world.tag}")
    log.info("phase catch-up: filling %d events", o.catchup_events)
    head, fill_s = await fill(dsn, o.catchup_events)
    runs = []
    for models in (catchup.GOAL_MODELS, catchup.MODELS):
        figures = await catchup.measure(
            dsn, world.nats_url, world.tag, o.lag_timeout_s * 5, models=models
        )
        for line in catchup.describe(figures["stream"], figures["log"], models):
            log.info("catch-up: %s", line)
        runs.append(figures)
    return {"fill": {"events": head, "seconds": round(fill_s, 1)}, "runs": runs}


def _report(
    world: World,
    machine: dict[str, Any],
    service: Service,
    phases: tuple[dict[str, Any], dict[str, Any], dict[str, Any]],
    baselines: dict[str, Any],
) -> dict[str, Any]:
    """The run's JSON report (``BENCHMARKS.md`` is written from it); ``phases`` are
    single, batched, single with the downstream paused."""
    o = world.options
    single, batched, write_only = phases
    es, one_insert, raw = (baselines[k] for k in ("eventsourcing", "one_insert", "batched_insert"))
    service_rss: dict[str, int | None] = {}
    for child in service.processes:
        service_rss[child.name] = child.peak_rss_kb
        for pid, kb in sorted(child.descendant_peaks_kb.items()):
            service_rss[f"{child.name} child {pid}"] = kb
    generator = [
        x
        for x in (
            single["generator_peak_rss_kb"],
            batched["generator_peak_rss_kb"],
            one_insert["generator_peak_rss_kb"],
        )
        if x
    ]
    report: dict[str, Any] = {
        "bench": "omniledger",
        "tag": world.tag,
        "command": exact_command(o),
        "smoke": o.smoke,
        "config": {
            "topology": o.topology,
            "serve_processes": o.serve_processes if o.topology == "split" else 1,
            "project_processes": o.project_processes if o.topology == "split" else 1,
            "serve_workers": o.serve_workers,
            "duration_s_per_phase": o.duration_s,
            "warmup_s": o.warmup_s,
            "connections": o.connections,
            "batch_connections": o.batch_connections,
            "catchup_events": o.catchup_events,
            "sellers": o.sellers,
            "batch_size": o.batch_size,
            "generator": "wrk + loadtests/post_events.lua, own process",
            "lag_poll_interval_s": LAG_POLL_INTERVAL_S,
            "eventsourcing_threads": o.es_threads,
        },
        "machine": machine,
        "single_event": single,
        "batched": batched,
        "single_event_downstream_paused": write_only,
        "baselines": baselines,
        "peak_rss_kb": {
            **service_rss,
            "generator (wrk, max over runs)": max(generator) if generator else None,
            "baseline_insert": one_insert["peak_rss_kb"],
            "baseline_eventsourcing": es["peak_rss_kb"],
            "baseline_batched_insert": raw["peak_rss_kb"],
            "postgres backend (max, single phase)": single["postgres_backends"].get(
                "peak_rss_kb_max"
            ),
        },
        "notes": world.notes,
    }
    report["ratios"] = ratios(report)
    return report


def main(argv: list[str] | None = None) -> int:
    options, verbose = parse_options(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s bench %(levelname)s %(message)s",
        stream=sys.stderr,
    )

    async def guarded() -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)  # cleaned up like Ctrl-C
        try:
            return await run(options)
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    try:
        report = asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench: interrupted; everything it started was stopped", file=sys.stderr)
        return 130
    except ChildFailed as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        log.exception("bench failed: %r", e)
        return 1
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    sys.stdout.flush()
    if options.write:
        write_benchmarks(BENCHMARKS_MD, options.section_label, report)
        print(f"bench: wrote section {options.section_label!r} of {BENCHMARKS_MD}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
