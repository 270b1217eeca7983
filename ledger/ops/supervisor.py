"""Keeps ``omniledger up``'s child processes (the relay, the projections) running.

A child that dies (``kill -9``, the OOM killer, a crash, an exit of any kind
while ``up`` runs) is reaped at once, so no zombie is left, logged in one
line, and started again after a backoff: 0.5 s, doubling to at most 10 s,
back to 0.5 s once a child has stayed up for 30 s. ``snapshot()`` is what
``/healthz`` shows of each child.

No HTTP here and no knowledge of what the children do: a child is a name and
a command line. Exits are noticed through a pidfd (Linux 5.3+) on the event
loop, or a thread blocked in ``wait`` elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

log = logging.getLogger("omniledger")

__all__ = ["Backoff", "ChildSpec", "Supervisor", "describe_exit"]

#: How long ``stop`` waits for the children after SIGTERM before SIGKILL.
STOP_TIMEOUT_S: Final = 15.0


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before restarting a child that died after ``uptime_s`` seconds up."""

    first_s: float = 0.5
    factor: float = 2.0
    max_s: float = 10.0
    #: a child that stayed up this long was healthy: its next restart waits ``first_s``
    stable_s: float = 30.0

    def next_delay_s(self, previous_s: float | None, uptime_s: float) -> float:
        if previous_s is None or uptime_s >= self.stable_s:
            return self.first_s
        return min(previous_s * self.factor, self.max_s)


def describe_exit(returncode: int) -> str:
    """``signal 9 (SIGKILL)`` or ``exit code 1``, from ``Popen.returncode``."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"signal {-returncode} ({name})"
    return f"exit code {returncode}"


@dataclass(frozen=True, slots=True)
class ChildSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    #: run in the child before exec (``up`` asks Linux for SIGTERM when it dies)
    preexec_fn: Callable[[], None] | None = None


@dataclass
class _Child:
    spec: ChildSpec
    proc: subprocess.Popen[bytes] | None = None
    state: str = "stopped"  # running | restarting | stopped
    restarts: int = 0
    last_exit: str | None = None
    started_at: float = 0.0  # time.monotonic()
    delay_s: float | None = None
    watcher: asyncio.Task[None] | None = None

    def view(self) -> dict[str, Any]:
        running = self.state == "running" and self.proc is not None
        return {
            "state": self.state,
            "pid": self.proc.pid if running and self.proc else None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "up_s": round(time.monotonic() - self.started_at, 1) if running else None,
        }


@dataclass
class Supervisor:
    specs: Sequence[ChildSpec]
    backoff: Backoff = field(default_factory=Backoff)
    _children: list[_Child] = field(init=False, default_factory=list)
    _stopping: asyncio.Event = field(init=False, default_factory=asyncio.Event)

    async def start(self) -> None:
        """Starts every child; raises (after stopping the ones started) if one cannot start."""
        try:
            for spec in self.specs:
                child = _Child(spec)
                self._children.append(child)
                self._spawn(child)
                child.watcher = asyncio.create_task(self._watch(child), name=f"watch-{spec.name}")
        except BaseException:
            await self.stop()
            raise

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """``{name: {state, pid, restarts, last_exit, up_s}}`` for every child."""
        return {c.spec.name: c.view() for c in self._children}

    async def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM to every child, SIGKILL to those still there after ``timeout_s``; all reaped."""
        self._stopping.set()
        for child in self._children:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.terminate()
        watchers = [c.watcher for c in self._children if c.watcher is not None]
        if watchers:
            _, stuck = await asyncio.wait(watchers, timeout=timeout_s)
            for child in self._children:
                if child.proc is not None and child.proc.poll() is None:
                    log.warning("%s did not stop within %g s; killing it", child.spec.name,
                                timeout_s)  # fmt: skip
                    child.proc.kill()
            if stuck:
                await asyncio.wait(stuck, timeout=5)
            for task in watchers:
                task.cancel()
        for child in self._children:
            if child.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(0)  # reaped even if its watcher was cancelled
            child.state = "stopped"

    def _spawn(self, child: _Child) -> None:
        # In the event loop's thread, never a worker's: Linux's parent-death
        # signal fires when the *thread* that forked the child ends.
        spec = child.spec
        child.proc = subprocess.Popen(
            list(spec.argv), env=dict(spec.env) if spec.env is not None else None,
            preexec_fn=spec.preexec_fn,
        )  # fmt: skip
        child.state = "running"
        child.started_at = time.monotonic()

    async def _watch(self, child: _Child) -> None:
        name = child.spec.name
        while True:
            assert child.proc is not None
            code = await _exited(child.proc)
            if self._stopping.is_set():
                child.state = "stopped"
                return
            uptime_s = time.monotonic() - child.started_at
            child.delay_s = self.backoff.next_delay_s(child.delay_s, uptime_s)
            child.state, child.last_exit = "restarting", describe_exit(code)
            log.warning("%s exited with %s after %.1f s; restarting in %g s, restart %d",
                        name, child.last_exit, uptime_s, child.delay_s,
                        child.restarts + 1)  # fmt: skip
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), child.delay_s)
                if self._stopping.is_set():
                    child.state = "stopped"
                    return
                try:
                    self._spawn(child)
                except OSError as e:  # out of processes or memory: try again later
                    child.delay_s = self.backoff.next_delay_s(child.delay_s, 0.0)
                    log.error("%s could not be started (%s); trying again in %g s",
                              name, e, child.delay_s)  # fmt: skip
                    continue
                child.restarts += 1
                assert child.proc is not None
                log.info("%s started again, pid %d (restart %d)", name, child.proc.pid,
                         child.restarts)  # fmt: skip
                break


async def _exited(proc: subprocess.Popen[bytes]) -> int:
    """Waits for ``proc`` to end and reaps it; returns its ``returncode``."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ended.done():
            ended.set_result(None)

    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # not Linux 5.3+: a thread waits instead
        return await asyncio.to_thread(proc.wait)
    try:
        loop.add_reader(fd, readable)
    except (OSError, NotImplementedError):  # a loop that cannot watch it: a thread waits
        os.close(fd)
        return await asyncio.to_thread(proc.wait)
    try:
        await ended
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    # the pidfd is readable once the child has ended: this reaps it without blocking
    return proc.wait()
