"""``python -m loadtests.medians``: issue 12's table of medians over bench runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loadtests import medians


def _report(single_vs_insert: float, log_3: int, *, commit: str = "abc") -> dict[str, Any]:
    return {
        "command": "python -m loadtests.bench --duration 10",
        "started_at": "2026-12-05T08:00:00+00:00",
        "finished_at": "2026-12-05T08:02:00+00:00",
        "machine": {"cpu_model": "AMD EPYC", "cores": 2, "git_commit": commit,
                    "git_worktree_dirty": False},
        "ratios": {"single_event_vs_one_insert": single_vs_insert},
        "single_event": {"events_per_s": 4000, "cpu_us_per_event": {"box": 450.0}},
        "catch_up": {"runs": [{"log": {"events_per_s": log_3}}]},
    }  # fmt: skip


def _row(text: str, figure: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {figure} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_every_run_and_the_median_with_the_goal() -> None:
    text = medians.table([_report(0.7, 47_000), _report(0.5, 52_000), _report(0.9, 40_000)])

    assert _row(text, "ratio single event / one INSERT") == [
        "ratio single event / one INSERT", "0.7", "0.5", "0.9", "**0.7**", ">= 1.0",
    ]  # fmt: skip
    assert _row(text, "catch-up from the log, 3 read models, events/s")[4:] == [
        "**47,000**", ">= 50,000",
    ]  # fmt: skip
    # a figure no run has stays visible as n/a, never a made-up zero
    assert _row(text, "batched, events/s")[1:5] == ["n/a", "n/a", "n/a", "**n/a**"]


def test_runs_of_another_commit_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = []
    for i, report in enumerate((_report(0.7, 1), _report(0.8, 1, commit="def"))):
        paths.append(tmp_path / f"run{i}.json")
        paths[-1].write_text(json.dumps(report))

    assert medians.main([str(p) for p in paths]) == 2
    assert "another commit or command" in capsys.readouterr().err
