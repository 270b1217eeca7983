"""PostgreSQL from the ``pgserver`` wheel as a child process of ours (see
:mod:`ledger.ops.embedded` for why we drive its binaries ourselves).

It listens only on a Unix socket inside its folder (no TCP at all), so it
cannot collide with a server already on the machine. POSIX only: the socket
and the privilege drop have no Windows equivalent.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
import urllib.parse
from pathlib import Path

from ledger.ops.embedded import (
    _POLL_INTERVAL_S,
    EmbeddedServerError,
    _dies_with_us,
    _open_log,
    _Server,
    _stop,
)

__all__ = ["EmbeddedPostgres"]

# one logger for both servers and their process handling, as before the split
_log = logging.getLogger("ledger.ops.embedded")

# The port only names the socket file (.s.PGSQL.<port>) in our own folder;
# with listen_addresses='' PostgreSQL opens no TCP port, so 5432 cannot
# collide with a machine-wide server.
_PG_SOCKET_PORT = 5432
_PG_SUPERUSER = "postgres"
# Linux sun_path is 108 bytes including the terminating NUL.
_UNIX_PATH_LENGTH_MAX = 107


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
