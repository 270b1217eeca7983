"""How fast the read models catch up: ``python -m loadtests.catchup [--events 100000]``.

Fills a fresh database with ``--events`` events through the real write path
(``tests/integration/audit/bench_audit.py``'s ``fill``: ``Ledger.record``,
orders placed then captured over 100 sellers), then times, as the real
command-line processes:

(a) ``stream``: ``omniledger relay`` and ``omniledger project`` started
    together on a stream of its own (``CATCHUP_<tag>``, subjects
    ``catchup_<tag>.>``) from zero: the relay publishes the whole log, the
    read models (``--models``, default all; issue 12's goals are set on three:
    ``balances,recaps,city``) consume it. Timed until the relay's checkpoint,
    then every model's position, reaches the head;
(b) ``log``: ``omniledger projections rebuild`` of the same models (one pass
    over the log, each model swapped in), one process.

Prints events/s for each (head / wall seconds, start-up included; the
start-up of an idle ``omniledger`` is printed too). Stops by itself: every
wait is bounded (``--timeout-s``); the database is dropped and the stream
deleted at the end, also on failure (unless ``--keep``). ``--database NAME``
reuses a database a ``--keep`` run left (its read models are reset first).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import asyncpg
import nats
from nats.js.errors import NotFoundError

from projections.catalog import PROJECTION_NAMES
from tests.integration.audit.bench_audit import create, drop, fill
from tests.support.servers import with_database

ROOT: Final = Path(__file__).resolve().parents[1]
OMNILEDGER: Final = str(ROOT / ".venv" / "bin" / "omniledger")
#: every read model (five since issue 14; figures before it are of three)
MODELS: Final = PROJECTION_NAMES
#: the three read models issue 12's catch-up goals are set on
GOAL_MODELS: Final = ("balances", "recaps", "city")
POLL_S: Final = 0.05
#: ``--profile DIR``: each timed process runs under ``py-spy record`` into DIR
PROFILE_DIR: Path | None = None


def _command(*args: str) -> list[str]:
    if PROFILE_DIR is None:
        return [OMNILEDGER, *args]
    out = PROFILE_DIR / f"{'-'.join(args)}.txt"
    py_spy = str(ROOT / ".venv" / "bin" / "py-spy")
    return [py_spy, "record", "--format", "raw", "-o", str(out), "--", OMNILEDGER, *args]


PROJECTION_TABLES: Final = (
    "proj_balances",
    "proj_balance_orders",
    "proj_seller_daily",
    "proj_city_sellers",
    "proj_city_daily",
    "proj_city_district_daily",
    "proj_city_active_sellers",
    "proj_city_active_counts",
)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process so far (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _env(dsn: str, nats_url: str, tag: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNILEDGER_")}
    return env | {
        "OMNILEDGER_DATABASE_URL": dsn,
        "OMNILEDGER_NATS_URL": nats_url,
        "OMNILEDGER_STREAM": f"CATCHUP_{tag}",
        "OMNILEDGER_SUBJECT_PREFIX": f"catchup_{tag}",
        "OMNILEDGER_LOG_LEVEL": "WARNING",
    }


async def _reset(dsn: str, stream: str) -> int:
    """Read models and relay checkpoint back to zero; returns the log's head."""
    conn = await asyncpg.connect(dsn)
    try:
        for table in PROJECTION_TABLES:
            await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.execute("DROP TABLE IF EXISTS projection_positions, projection_poison")
        await conn.execute("DELETE FROM relay_checkpoints WHERE stream = $1", stream)
        return int(await conn.fetchval("SELECT position FROM ledger_head"))
    finally:
        await conn.close()


async def _delete_stream(nats_url: str, stream: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        try:
            await nc.jetstream().delete_stream(stream)
        except NotFoundError:
            pass
    finally:
        await nc.close()


async def _positions(conn: asyncpg.Connection, stream: str) -> tuple[int, dict[str, int]]:
    relay = await conn.fetchval("SELECT position FROM relay_checkpoints WHERE stream = $1", stream)
    rows = []
    if await conn.fetchval("SELECT to_regclass('projection_positions') IS NOT NULL"):
        rows = await conn.fetch("SELECT name, position FROM projection_positions")
    return int(relay or 0), {r["name"]: int(r["position"]) for r in rows}


def _spawn(args: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(_command(*args), env=env, cwd=ROOT, start_new_session=True)


async def time_stream(
    dsn: str, env: dict[str, str], head: int, timeout_s: float, models: Sequence[str] = MODELS
) -> dict[str, float]:
    """Relay and project ``models`` from zero to ``head``: seconds, events/s and CPU of each."""
    stream = env["OMNILEDGER_STREAM"]
    conn = await asyncpg.connect(dsn)
    children: list[subprocess.Popen[bytes]] = []
    try:
        start = time.perf_counter()
        children += [_spawn(["relay"], env), _spawn(["project", "--models", ",".join(models)], env)]
        relay_s: float | None = None
        relay_head_cpu_s = 0.0
        deadline = start + timeout_s
        while time.perf_counter() < deadline:
            relay, positions = await _positions(conn, stream)
            now = time.perf_counter() - start
            if relay_s is None and relay >= head:
                relay_s = now
                if PROFILE_DIR is None:
                    relay_head_cpu_s = _cpu_s(children[0].pid)
            if relay_s is not None and all(positions.get(m, 0) >= head for m in models):
                cpu = [_cpu_s(c.pid) for c in children] if PROFILE_DIR is None else [0.0, 0.0]
                return {
                    "events": head,
                    "relay_s": round(relay_s, 3),
                    "relay_events_per_s": round(head / relay_s),
                    "relay_cpu_s": round(cpu[0], 2),
                    "relay_head_cpu_s": round(relay_head_cpu_s, 2),
                    "caught_up_s": round(now, 3),
                    "events_per_s": round(head / now),
                    "project_cpu_s": round(cpu[1], 2),
                }
            for child in children:
                if child.poll() is not None:
                    raise RuntimeError(f"{child.args} exited with {child.returncode}")
            await asyncio.sleep(POLL_S)
        raise TimeoutError(f"not caught up within {timeout_s} s: {await _positions(conn, stream)}")
    finally:
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGINT if PROFILE_DIR else signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        await conn.close()


def time_rebuild(
    env: dict[str, str], head: int, timeout_s: float, models: Sequence[str] = MODELS
) -> dict[str, float]:
    """``omniledger projections rebuild`` of ``models``: seconds, events/s, its CPU."""
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        _command("projections", "rebuild", *models),
        env=env, cwd=ROOT, capture_output=True, check=False, timeout=timeout_s,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if proc.returncode != 0:
        raise RuntimeError(f"rebuild failed: {proc.stderr.decode()[-2000:]}")
    return {
        "events": head,
        "seconds": round(elapsed, 3),
        "events_per_s": round(head / elapsed),
        "cpu_s": round(cpu_s, 2),
    }


def describe(
    stream: dict[str, float] | None, log_: dict[str, float] | None, models: Sequence[str] = MODELS
) -> list[str]:
    lines = []
    n = len(models)
    if stream is not None:
        lines += [
            f"relay published {stream['events']} events in {stream['relay_s']:6.2f} s = "
            f"{stream['relay_events_per_s']:9,.0f} events/s; CPU {stream['relay_cpu_s']:5.2f} s"
            f" ({stream['relay_head_cpu_s']:.2f} s when at the head)",
            f"stream catch-up (relay + {n} models) {stream['caught_up_s']:6.2f} s = "
            f"{stream['events_per_s']:9,.0f} events/s; projections' CPU "
            f"{stream['project_cpu_s']:5.2f} s",
        ]
    if log_ is not None:
        lines.append(
            f"log catch-up (rebuild, {n} models)   {log_['seconds']:6.2f} s = "
            f"{log_['events_per_s']:9,.0f} events/s; CPU {log_['cpu_s']:5.2f} s"
        )
    return lines


async def measure(
    dsn: str,
    nats_url: str,
    tag: str,
    timeout_s: float,
    only: str | None = None,
    models: Sequence[str] = MODELS,
) -> dict[str, Any]:
    """Both catch-ups of ``models`` on a filled database, each from zero read models;
    the stream ``CATCHUP_<tag>`` it makes is deleted at the end."""
    env = _env(dsn, nats_url, tag)
    figures: dict[str, Any] = {"models": list(models)}
    try:
        if only != "log":
            head = await _reset(dsn, env["OMNILEDGER_STREAM"])
            figures["stream"] = await time_stream(dsn, env, head, timeout_s, models)
        if only != "stream":
            head = await _reset(dsn, env["OMNILEDGER_STREAM"])
            figures["log"] = await asyncio.to_thread(time_rebuild, env, head, timeout_s, models)
    finally:
        await _delete_stream(nats_url, env["OMNILEDGER_STREAM"])
    return figures


def _models(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in PROJECTION_NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown read model {unknown[0] if unknown else text!r}; "
            f"known: {', '.join(PROJECTION_NAMES)}"
        )
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--database", help="reuse this database (left by --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the filled database")
    parser.add_argument("--only", choices=("stream", "log"), help="time one path only")
    parser.add_argument(
        "--models",
        type=_models,
        default=MODELS,
        help="comma-separated read models (default: all; issue 12's goals: "
        f"{','.join(GOAL_MODELS)})",
    )
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument("--profile", type=Path, help="py-spy raw profiles into this directory")
    args = parser.parse_args()
    global PROFILE_DIR
    PROFILE_DIR = args.profile
    admin_dsn = os.environ.get(
        "OMNILEDGER_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    nats_url = os.environ.get("OMNILEDGER_TEST_NATS_URL", "nats://127.0.0.1:4222")
    tag = uuid.uuid4().hex[:8]
    name = args.database or f"omniledger_catchup_{tag}"
    try:
        if args.database:
            dsn = with_database(admin_dsn, name)
        else:
            dsn = asyncio.run(create(admin_dsn, name))
            print(f"filling {name} with {args.events} events ...", file=sys.stderr)
            head, fill_s = asyncio.run(fill(dsn, args.events))
            print(f"fill: {head} events in {fill_s:.1f} s", file=sys.stderr)
        figures = asyncio.run(measure(dsn, nats_url, tag, args.timeout_s, args.only, args.models))
        print("\n".join(describe(figures.get("stream"), figures.get("log"), args.models)))
    finally:
        if args.keep:
            print(f"kept: database {name}", file=sys.stderr)
        else:
            asyncio.run(drop(admin_dsn, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
