"""Issue 10, finding 1: ``ledger.ops.supervisor`` restarts a dead child with backoff, reaps it
and logs it. Real child processes (a sleeping Python), killed with real signals."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ledger.ops.supervisor import Backoff, ChildSpec, Supervisor, describe_exit

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
FAST = Backoff(first_s=0.05, factor=2.0, max_s=0.4, stable_s=5.0)


def _state(pid: int) -> str | None:
    """The process's state letter from /proc (``Z``: a zombie), ``None`` once reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


async def _until(predicate: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.01)


def test_backoff_doubles_to_its_cap_and_resets_after_a_stable_run() -> None:
    b = Backoff()  # the defaults `up` uses
    delays, previous = [], None
    for _ in range(7):
        previous = b.next_delay_s(previous, uptime_s=1.0)
        delays.append(previous)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert b.next_delay_s(10.0, uptime_s=29.9) == 10.0
    assert b.next_delay_s(10.0, uptime_s=30.0) == 0.5


def test_exits_are_described_by_signal_name_or_code() -> None:
    assert describe_exit(-9) == "signal 9 (SIGKILL)"
    assert describe_exit(-15) == "signal 15 (SIGTERM)"
    assert describe_exit(1) == "exit code 1"
    assert describe_exit(0) == "exit code 0"


async def test_a_killed_child_is_reaped_logged_and_started_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="omniledger")
    sup = Supervisor([ChildSpec("relay", SLEEPER), ChildSpec("project", SLEEPER)], backoff=FAST)
    await sup.start()
    try:
        first = sup.snapshot()
        assert {n: c["state"] for n, c in first.items()} == {
            "relay": "running",
            "project": "running",
        }
        old = first["relay"]["pid"]
        os.kill(old, signal.SIGKILL)
        await _until(lambda: sup.snapshot()["relay"]["restarts"] == 1)
        now = sup.snapshot()
        assert now["relay"]["state"] == "running"
        assert now["relay"]["pid"] not in (None, old)
        assert now["relay"]["last_exit"] == "signal 9 (SIGKILL)"
        assert _state(old) is None, "the killed child was left a zombie"
        assert now["project"] == first["project"] | {"up_s": now["project"]["up_s"]}
        lines = [r.getMessage() for r in caplog.records]
        assert any(
            line.startswith("relay exited with signal 9 (SIGKILL) after ")
            and line.endswith("; restarting in 0.05 s, restart 1")
            for line in lines
        ), lines
        assert f"relay started again, pid {now['relay']['pid']} (restart 1)" in lines
    finally:
        await sup.stop()
    pids = [now["relay"]["pid"], now["project"]["pid"]]
    assert [_state(p) for p in pids] == [None, None], "stop left a child running or unreaped"
    assert {c["state"] for c in sup.snapshot().values()} == {"stopped"}


async def test_a_crash_looping_child_backs_off_and_stop_ends_the_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="omniledger")
    crash = [sys.executable, "-c", "raise SystemExit(3)"]
    sup = Supervisor([ChildSpec("project", crash)], backoff=FAST)
    await sup.start()
    try:
        await _until(lambda: sup.snapshot()["project"]["restarts"] >= 4)
        seen = sup.snapshot()["project"]
        assert seen["last_exit"] == "exit code 3"
        delays = [
            r.getMessage().split("restarting in ")[1].split(" s,")[0]
            for r in caplog.records
            if "restarting in" in r.getMessage()
        ]
        assert delays[:5] == ["0.05", "0.1", "0.2", "0.4", "0.4"][: len(delays[:5])]
        assert len(delays) >= 4
        await _until(lambda: sup.snapshot()["project"]["state"] == "restarting")
    finally:
        started = time.monotonic()
        await sup.stop()
    assert time.monotonic() - started < 2.0, "stop waited out a restart delay"
    assert sup.snapshot()["project"]["state"] == "stopped"


async def test_a_child_that_ignores_sigterm_is_killed_on_stop() -> None:
    stubborn = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
    ]
    sup = Supervisor([ChildSpec("relay", stubborn)], backoff=FAST)
    await sup.start()
    pid = sup.snapshot()["relay"]["pid"]
    await asyncio.sleep(0.3)  # the child has installed its handler
    started = time.monotonic()
    await sup.stop(timeout_s=0.5)
    assert time.monotonic() - started < 3.0
    assert _state(pid) is None
    assert sup.snapshot()["relay"]["restarts"] == 0
