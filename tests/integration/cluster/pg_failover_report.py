"""``python -m tests.integration.cluster.pg_failover_report``: run the PostgreSQL failover
test once and write its figures into RELIABILITY.md, in the section
"Issue 15: PostgreSQL primary failover" (replaced if there, appended if not).

The figures come from the very test ``make test`` runs (``test_pg_failover.py``,
through pytest), which appends them to the file named by
``OMNILEDGER_FAULT_FIGURES``, as the fault suite's scenarios do. Exit code: pytest's.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from tests.integration.cluster.postgres_pair import bin_dir
from tests.integration.cluster.test_pg_failover import DETECT_S
from tests.integration.faults import scenario
from tests.integration.faults.load import LoadConfig

ROOT = Path(__file__).resolve().parents[3]
COMMAND = "python -m tests.integration.cluster.pg_failover_report"
HEADING = "## Issue 15: PostgreSQL primary failover"


def main() -> int:
    with tempfile.NamedTemporaryFile(prefix="pg-failover-", suffix=".jsonl") as f:
        env = os.environ | {scenario.FIGURES_ENV: f.name}
        started = datetime.datetime.now(datetime.UTC)
        rc = subprocess.call(
            [sys.executable, "-m", "pytest", "tests/integration/cluster/test_pg_failover.py",
             "-p", "no:cacheprovider", "-q", "-s"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        rows = [orjson.loads(x) for x in Path(f.name).read_bytes().splitlines() if x]
    path = ROOT / "RELIABILITY.md"
    text = path.read_text() if path.exists() else ""
    head, found, rest = text.partition(HEADING)
    tail = rest[rest.find("\n## ") + 1 :] if found and "\n## " in rest else ""
    path.write_text(head.rstrip("\n") + "\n\n" + section(rows, started, rc) + tail)
    print(f"wrote {path} ({len(rows)} rows, pytest exit code {rc})")
    return rc


def section(rows: list[dict[str, Any]], started: datetime.datetime, rc: int) -> str:
    run = next((r for r in rows if r.get("scenario") == "postgres-failover"), {})
    times = next((r for r in rows if r.get("scenario") == "postgres-failover-times"), {})
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    load = LoadConfig()

    def fig(row: dict[str, Any], key: str) -> str:
        value = row.get(key)
        return "n/a" if value is None else str(value)

    result = "pass" if rc == 0 and not run.get("error") else f"FAIL: {run.get('error')}"
    return f"""{HEADING}

Written by `{COMMAND}` from one run of
`tests/integration/cluster/test_pg_failover.py` (which `make test` runs too).
A PostgreSQL primary and a streaming standby made by `pg_basebackup -R`, both
{_binaries()} on loopback ports, configured by the files `deploy/`
ships (`deploy/postgres/primary.conf`, `standby.conf`, `pg_hba.conf`):
`synchronous_standby_names = 'ANY 1 (*)'`, `synchronous_commit = on`, so a
commit returns only once the standby has flushed it. `omniledger up` gets one
multi-host URL, `postgresql://…@127.0.0.1:A,127.0.0.1:B/omniledger?target_session_attrs=read-write`.
Under the fault suite's load ({load.writers} writers, at most {load.rate_per_s_max:g}
writes/s, retried with their idempotency key on a 503 or a dropped connection)
plus one probe client writing every 50 ms, the primary's postmaster and every
backend get SIGKILL; {DETECT_S:g} s later (a failover manager's decision time)
`pg_ctl promote` turns the standby into the primary. Nothing restarts `up`.
The checks of the fault suite then run against the new primary: every
acknowledged write in the log exactly once at the position its answer gave,
the JetStream stream equal to the log (sequence = position = `Nats-Msg-Id`,
no gap, no double), `omniledger verify` and `check-projections` exit 0,
every balance equal to `omniledger replay` and the clients' own fold.

- date: {started:%Y-%m-%d %H:%M} UTC; commit `{commit}`; pytest exit code {rc}; {result}
- machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()},
  load average {os.getloadavg()[0]:.2f} at the end (other work shares the machine)

| figure | value |
|---|--:|
| writes acknowledged over the scenario | {fig(run, "acknowledged")} |
| writes acknowledged while no primary ran (kill to promotion) | {fig(times, "acked_while_down")} |
| 503 answers seen by the load's clients | {fig(run, "answers_503")} |
| other failures seen (refused or dropped connections, timeouts) | {fig(run, "other_failures")} |
| clients' failure window, first to last failed attempt (s) | {fig(run, "failure_window_s")} |
| slowest acknowledgement, retries included (s) | {fig(run, "slowest_ack_s")} |
| `pg_ctl promote -w` (s) | {fig(times, "promote_s")} |
| kill to the probe's first acknowledged write (s) | {fig(times, "writes_back_s")} |
| promotion to the probe's first acknowledged write (s) | {fig(times, "back_after_promote_s")} |
| promotion to relay and read models keeping up again (s) | {fig(run, "recovery_s")} |
| acknowledged writes lost / facts doubled | {fig(run, "lost")} / {fig(run, "doubled")} |

Time to recover is the decision time ({DETECT_S:g} s here, chosen by the test)
plus well under a second: the service's pools find the promoted standby on
their next connection attempt, as the URL lists it and asks for a read-write
session. What this does not cover: the old primary is not brought back (with
`wal_log_hints = on`, `pg_rewind` can make it the new standby); until a new
standby streams from the promoted one, commits are on one machine only
(`standby.conf` names no synchronous standby, or every commit would wait for
one that does not exist); fencing the old primary is the failover manager's
job (Patroni, CloudNativePG), as is the decision to promote.
"""


def _binaries() -> str:
    """Whose PostgreSQL ran, and which version."""
    where = bin_dir()
    version = subprocess.run(
        [str(where / "postgres"), "--version"], capture_output=True, text=True
    ).stdout.strip()
    whose = "the `pgserver` wheel's" if "pgserver" in str(where) else f"`{where}`"
    return f"{whose} ({version}),"


if __name__ == "__main__":
    sys.exit(main())
