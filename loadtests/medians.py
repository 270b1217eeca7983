"""Medians over several bench runs: ``python -m loadtests.medians run1.json run2.json ...``.

Issue 12 asks for ``python -m loadtests.bench --duration 10`` three times in
one sitting and the medians of every ratio; this reads the JSON reports those
runs printed (``> runN.json``) and prints one Markdown table: each figure,
its value in every run, the median, and issue 12's goal where it sets one.
The machine, the commit and the command come from the first report; a
report of another commit or command is refused, since its figures would not
be of the same sitting.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

__all__ = ["FIGURES", "table"]

Report = dict[str, Any]


def _get(*path: str | int) -> Callable[[Report], float | None]:
    def read(report: Report) -> float | None:
        value: Any = report
        for key in path:
            if isinstance(key, int):
                value = value[key] if isinstance(value, list) and key < len(value) else None
            else:
                value = value.get(key) if isinstance(value, dict) else None
        return None if value is None else float(value)

    return read


def _catch_up(run: int, path: str, key: str = "events_per_s") -> Callable[[Report], float | None]:
    return _get("catch_up", "runs", run, path, key)


def _cpu(phase: str, part: str) -> Callable[[Report], float | None]:
    return _get(phase, "cpu_us_per_event", part)


#: (figure, how to read it from a report, issue 12's goal or "")
FIGURES: Final[list[tuple[str, Callable[[Report], float | None], str]]] = [
    ("ratio single event / one INSERT", _get("ratios", "single_event_vs_one_insert"), ">= 1.0"),
    (
        "ratio single event, relay and projections paused / one INSERT",
        _get("ratios", "single_event_downstream_paused_vs_one_insert"),
        "",
    ),
    ("ratio single event / eventsourcing", _get("ratios", "single_event_vs_eventsourcing"), ">= 5"),
    (
        "ratio batched / raw batched INSERT",
        _get("ratios", "batched_vs_raw_batched_insert"),
        ">= 0.35",
    ),
    ("single event, events/s", _get("single_event", "events_per_s"), ""),
    ("single event latency p99, ms", _get("single_event", "latency_ms", "p99"), "<= 50"),
    (
        "single event, relay and projections paused, events/s",
        _get("single_event_downstream_paused", "events_per_s"),
        "",
    ),
    ("batched, events/s", _get("batched", "events_per_s"), ""),
    ("batched latency p99, ms", _get("batched", "latency_ms", "p99"), ""),
    (
        "batched: projection lag p99 during load, s",
        _get("batched", "lag", "projections", "lag_seconds_p99"),
        "<= 1",
    ),
    (
        "batched: time to zero projection lag, s",
        _get("batched", "lag", "projections", "time_to_zero_lag_s"),
        "<= 2",
    ),
    ("baseline one INSERT, requests/s", _get("baselines", "one_insert", "requests_per_s"), ""),
    ("baseline eventsourcing, events/s", _get("baselines", "eventsourcing", "events_per_s"), ""),
    (
        "baseline raw batched INSERT, events/s",
        _get("baselines", "batched_insert", "events_per_s"),
        "",
    ),
    ("catch-up from the log, 3 read models, events/s", _catch_up(0, "log"), ">= 50,000"),
    ("catch-up from the stream, 3 read models, events/s", _catch_up(0, "stream"), ">= 25,000"),
    (
        "relay alone (3-model stream catch-up), events/s",
        _catch_up(0, "stream", "relay_events_per_s"),
        "",
    ),
    ("catch-up from the log, 5 read models, events/s", _catch_up(1, "log"), ""),
    ("catch-up from the stream, 5 read models, events/s", _catch_up(1, "stream"), ""),
    *(
        (f"CPU per event, us, {name}: {part}", _cpu(phase, part), "")
        for phase, name in (
            ("single_event", "single"),
            ("batched", "batched"),
            ("single_event_downstream_paused", "single, downstream paused"),
        )
        for part in ("box", "serve", "relay", "project", "postgres", "nats")
    ),
    ("CPU per request, us, one INSERT: box", _cpu("baselines", "one_insert_box"), ""),
]


def _baseline_cpu(report: Report) -> Report:
    """The baselines' box CPU under a name ``FIGURES`` can read."""
    b = report.get("baselines", {})
    cpu = {"one_insert_box": b.get("one_insert", {}).get("cpu_us_per_event", {}).get("box")}
    return report | {"baselines": b | {"cpu_us_per_event": cpu}}


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:g}" if value == round(value, 2) else f"{value:.2f}"


def table(reports: list[Report]) -> str:
    """The Markdown table of every figure in each report, with its median."""
    reports = [_baseline_cpu(r) for r in reports]
    runs = " | ".join(f"run {i + 1}" for i in range(len(reports)))
    lines = [f"| figure | {runs} | median | goal |", "|---" * (len(reports) + 3) + "|"]
    for name, read, goal in FIGURES:
        values = [read(r) for r in reports]
        known = [v for v in values if v is not None]
        median = statistics.median(known) if known else None
        cells = " | ".join(_fmt(v) for v in values)
        lines.append(f"| {name} | {cells} | **{_fmt(median)}** | {goal} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.medians", description=__doc__)
    parser.add_argument("reports", nargs="+", type=Path, help="JSON printed by loadtests.bench")
    args = parser.parse_args(argv)
    reports = [json.loads(p.read_text()) for p in args.reports]
    first = reports[0]
    for path, r in zip(args.reports, reports, strict=True):
        if (r["machine"]["git_commit"], r["command"]) != (
            first["machine"]["git_commit"],
            first["command"],
        ):
            print(f"{path}: another commit or command than {args.reports[0]}", file=sys.stderr)
            return 2
    m = first["machine"]
    print(
        f"{len(reports)} runs, {reports[0]['started_at']} to {reports[-1]['finished_at']},"
        f" on {m['cpu_model']}, {m['cores']} cores; commit {m['git_commit']}"
        f"{' (dirty worktree)' if m['git_worktree_dirty'] else ''}\n\n"
        f"```sh\n{first['command']}\n```\n"
    )
    print(table(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
