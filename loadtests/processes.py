"""Child processes of the benchmark: started, watched for peak memory, and always stopped.

Here: ``Child`` (one process in a session of its own, output to a log file,
its peak resident set size), ``Children`` (everything the bench started, so
one call stops it all, also from ``atexit`` and on Ctrl-C).

Peak RSS comes from two places, the larger wins: the kernel's high-water mark
``VmHWM`` in ``/proc/<pid>/status``, sampled while the process runs (also for
its descendants), and ``ru_maxrss`` from ``wait4`` when we reap it. Linux
only, as is the rest of the bench.

Each child gets ``PR_SET_PDEATHSIG`` = SIGTERM, so even a bench killed with
SIGKILL takes its children with it (databases and streams then stay behind;
their names start with ``omniledger_bench_`` / ``BENCH_``). Not here: what
the children are.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["Child", "ChildFailed", "Children", "descendants", "peak_rss_kb"]

log = logging.getLogger("loadtests")

_PR_SET_PDEATHSIG = 1
_LOG_TAIL_CHARS = 4000


class ChildFailed(RuntimeError):
    """A child exited when it should not have; the message ends with its log's tail."""


def _status_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_rss_kb(pid: int) -> int | None:
    """The kernel's peak resident set size of ``pid`` (VmHWM), in KiB, or None."""
    return _status_kb(pid, "VmHWM")


def descendants(pid: int) -> set[int]:
    """All live descendants of ``pid`` (children, their children, ...), from /proc."""
    parent_of: dict[int, int] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                    line = f.read()
                ppid = int(line.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            parent_of[int(entry.name)] = ppid
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, pp in parent_of.items() if pp in frontier and p not in found}
        found |= frontier
    return found


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Child:
    """One child process in its own session; stdout and stderr go to ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        # set once the group got its final SIGKILL after the leader was reaped:
        # from then on the group id may be reused by an unrelated process
        self._group_done = False
        self.peak_rss_kb: int | None = None
        #: peak RSS of each descendant seen while sampling (pid -> KiB)
        self.descendant_peaks_kb: dict[int, int] = {}

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was not started"
        return self.proc.pid

    def start(self) -> Child:
        # PR_SET_PDEATHSIG fires when the *thread* that forked exits: start
        # children from the event loop's thread only, never from to_thread().
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        log.debug("started %s pid %d: %s", self.name, self.proc.pid, " ".join(self.argv))
        return self

    def running(self) -> bool:
        return self.proc is not None and self.returncode is None and self._reap(block=False)

    def sample(self) -> None:
        """Updates the peak RSS of this process and of its descendants."""
        if self.proc is None or self.returncode is not None:
            return
        self._note(peak_rss_kb(self.proc.pid))
        for pid in descendants(self.proc.pid):
            kb = peak_rss_kb(pid)
            if kb is not None:
                self.descendant_peaks_kb[pid] = max(kb, self.descendant_peaks_kb.get(pid, 0))

    def _note(self, kb: int | None) -> None:
        if kb is not None:
            self.peak_rss_kb = max(kb, self.peak_rss_kb or 0)

    def _reap(self, *, block: bool) -> bool:
        """Reaps the process if it has exited; True while it still runs."""
        assert self.proc is not None
        if self.returncode is not None:
            return False
        try:
            pid, status, usage = os.wait4(self.proc.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            self.returncode = self.proc.returncode if self.proc.returncode is not None else -1
            return False
        if pid == 0:
            return True
        self.returncode = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.returncode  # Popen must not wait for it again
        self._note(usage.ru_maxrss)  # KiB on Linux
        return False

    async def wait(self, timeout_s: float) -> int:
        """Waits for the process to exit by itself; stops it after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self._reap(block=False):
            if time.monotonic() >= deadline:
                log.warning("%s still running after %.0f s: stopping it", self.name, timeout_s)
                return await self.stop()
            self.sample()
            await asyncio.sleep(0.05)
        self._finish_group()
        assert self.returncode is not None
        return self.returncode

    async def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM to the process group, SIGKILL after ``timeout_s``; reaps; idempotent."""
        if self.proc is None:
            return 0
        if self.returncode is not None:
            self._finish_group()  # leftovers of a leader that exited by itself
            return self.returncode
        self.sample()
        self._kill_group(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while self._reap(block=False):
            if time.monotonic() >= deadline:
                log.warning("%s ignored SIGTERM for %.0f s: SIGKILL", self.name, timeout_s)
                self._kill_group(signal.SIGKILL)
                self._reap(block=True)
                break
            await asyncio.sleep(0.05)
        self._finish_group()
        assert self.returncode is not None
        return self.returncode

    def kill_now(self) -> None:
        """Last resort (atexit, second Ctrl-C): SIGKILL the group and reap, no waiting."""
        if self.proc is None:
            return
        if self.returncode is None:
            self._kill_group(signal.SIGKILL)
            with contextlib.suppress(Exception):
                self._reap(block=True)
        self._finish_group()

    def _finish_group(self) -> None:
        """SIGKILL whatever is left in the group, once, right after the leader is reaped."""
        if not self._group_done:
            self._kill_group(signal.SIGKILL)
            self._group_done = True

    def _kill_group(self, sig: int) -> None:
        assert self.proc is not None
        if self._group_done:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)  # start_new_session: pgid == pid

    def log_tail(self, chars: int = _LOG_TAIL_CHARS) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError as e:
            return f"(no log: {e})"
        return data[-chars:].decode("utf-8", errors="replace")

    def failed(self, what: str) -> ChildFailed:
        return ChildFailed(
            f"{self.name} {what} (exit {self.returncode});"
            f" last output of {self.log_path}:\n{self.log_tail()}"
        )


class Children:
    """Every child the bench started; ``stop_all`` (async) or ``kill_all`` (sync) ends them."""

    def __init__(self) -> None:
        self._all: list[Child] = []

    def add(self, child: Child) -> Child:
        self._all.append(child)
        return child

    def sample(self) -> None:
        for child in self._all:
            child.sample()

    async def stop_all(self) -> None:
        try:
            for child in reversed(self._all):
                await child.stop()
        finally:
            self.kill_all()  # no-op for those stopped; the rest if we were interrupted

    def kill_all(self) -> None:
        for child in reversed(self._all):
            child.kill_now()
