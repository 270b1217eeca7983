"""A PostgreSQL primary and its synchronous streaming standby, each a process of ours.

Both run the ``pgserver`` wheel's binaries (the system's, /usr/lib/postgresql/*/bin,
when the wheel is missing) on free loopback ports under one temporary folder,
with the configuration files ``deploy/`` ships (``deploy/postgres/``): each
data folder gets ``primary.conf`` or ``standby.conf`` and ``pg_hba.conf``
copied in, and its ``postgresql.conf`` includes the former. The standby is
made by ``pg_basebackup -R`` from the running primary, as an operator would.

The machine's PostgreSQL (127.0.0.1:5432) is never touched. As root, the
servers run as the unprivileged ``pgserver`` account, like the embedded one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg

from ledger.ops.embedded import _children, _dies_with_us, _running
from ledger.ops.embedded_postgres import _ensure_system_user, _ensure_traversable, _pg_bin_dir
from tests.integration.system.conftest import free_loopback_port

__all__ = ["DEPLOY_POSTGRES", "PgNode", "PostgresPair"]

ROOT = Path(__file__).resolve().parents[3]
#: the configuration files the test and deploy/ share
DEPLOY_POSTGRES = ROOT / "deploy" / "postgres"
#: the service's database, made on the primary (the standby gets it by replication)
DATABASE = "omniledger"
SUPERUSER = "postgres"
REPLICATOR = "replicator"
START_TIMEOUT_S = 60.0
SYNC_TIMEOUT_S = 30.0


def bin_dir() -> Path:
    """The ``pgserver`` wheel's binaries, else the newest system PostgreSQL's."""
    with contextlib.suppress(Exception):
        return _pg_bin_dir()
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_basebackup"))
    if not found:
        raise RuntimeError("no PostgreSQL binaries: neither the pgserver wheel nor the system's")
    return found[-1].parent


class PgNode:
    """One server: its data folder, port and postmaster process."""

    def __init__(self, pair: PostgresPair, name: str) -> None:
        self.pair = pair
        self.name = name
        self.dir = pair.root / name
        self.pgdata = self.dir / "pgdata"
        self.log_path = self.dir / "postgres.log"
        self.port = free_loopback_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def dsn(self, db: str = DATABASE) -> str:
        return f"postgresql://{SUPERUSER}:{self.pair.password}@127.0.0.1:{self.port}/{db}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def spawn(self) -> None:
        args = [
            str(self.pair.bin / "postgres"), "-D", str(self.pgdata), "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            # started on the test's main thread, which outlives the pair: the
            # death signal fires only if the whole test process dies
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.dir, process_group=0, preexec_fn=_dies_with_us(signal.SIGQUIT),
                **self.pair.as_server(),
            )  # fmt: skip

    async def ready(self) -> None:
        """Accepting connections (a standby: read-only ones)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}\n{self.log()}")
            try:
                conn = await asyncpg.connect(self.dsn("postgres"), timeout=2)
            except (OSError, asyncpg.PostgresError, TimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} not ready\n{self.log()}") from None
                await asyncio.sleep(0.1)
            else:
                await conn.close()
                return

    def kill(self) -> list[int]:
        """SIGKILL to the postmaster and every backend at once: the machine is gone,
        no shutdown checkpoint, no last WAL sent."""
        assert self.proc is not None and self.proc.poll() is None, f"{self.name} is not running"
        pids = [self.proc.pid, *sorted(_children(self.proc.pid))]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        return pids

    async def gone(self, pids: list[int], timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while any(_running(p) for p in pids):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} still running after SIGKILL: {pids}")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        pids = [proc.pid, *_children(proc.pid)]
        for sig, wait_s in ((signal.SIGINT, 20.0), (signal.SIGQUIT, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=wait_s)
                break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def log(self, tail: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""


class PostgresPair:
    """``primary`` and ``standby``; ``url()`` the service's multi-host URL over both."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = bin_dir()
        self.password = secrets.token_hex(12)
        self.replicator_password = secrets.token_hex(12)
        self._account: pwd.struct_passwd | None = None
        self.primary = PgNode(self, "a")
        self.standby = PgNode(self, "b")

    def url(self, *, read_write: bool = True) -> str:
        """``postgresql://postgres:…@127.0.0.1:A,127.0.0.1:B/omniledger?target_session_attrs=…``:
        asyncpg tries the hosts in order and keeps the first that is a primary."""
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in (self.primary, self.standby))
        attrs = "read-write" if read_write else "any"
        return (
            f"postgresql://{SUPERUSER}:{self.password}@{hosts}/{DATABASE}"
            f"?target_session_attrs={attrs}"
        )

    # -- running the binaries as the server's account ------------------------------------------

    def as_server(self) -> dict[str, Any]:
        if self._account is None:
            return {}
        # extra_groups=[] drops root's supplementary groups as well
        return {"user": self._account.pw_uid, "group": self._account.pw_gid, "extra_groups": []}

    def _own(self, path: Path) -> None:
        if self._account is not None:
            os.chown(path, self._account.pw_uid, self._account.pw_gid)

    async def _run(self, *args: str, timeout_s: float = 120.0) -> None:
        proc = await asyncio.create_subprocess_exec(
            str(self.bin / args[0]), *args[1:],
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, cwd=self.root, **self.as_server(),
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {out.decode()[-2000:]}")

    def _configure(self, node: PgNode, role: str) -> None:
        """``role``.conf and pg_hba.conf from deploy/postgres into the data folder;
        postgresql.conf includes the role's file (once: a base backup copies the line)."""
        for name in (f"{role}.conf", "pg_hba.conf"):
            shutil.copyfile(DEPLOY_POSTGRES / name, node.pgdata / name)
            self._own(node.pgdata / name)
        conf = node.pgdata / "postgresql.conf"
        lines = [line for line in conf.read_text().splitlines() if not line.startswith("include '")]
        conf.write_text("\n".join([*lines, f"include '{role}.conf'", ""]))

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._account = _ensure_system_user("pgserver")
            _ensure_traversable(self.root.parent)
            _ensure_traversable(self.bin)
        self._own(self.root)
        for node in (self.primary, self.standby):
            node.dir.mkdir(mode=0o700)
            self._own(node.dir)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        self._own(pwfile)
        p = self.primary
        await self._run(
            "initdb", "-D", str(p.pgdata), "-U", SUPERUSER, f"--pwfile={pwfile}",
            "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale", "--no-instructions",
        )  # fmt: skip
        pwfile.unlink()
        self._configure(p, "primary")
        p.spawn()
        await p.ready()
        conn = await asyncpg.connect(p.dsn("postgres"))
        try:
            # no standby yet: with synchronous_standby_names set, these commits would wait
            # for one; a local commit is enough for what the base backup copies anyway
            await conn.execute("SET synchronous_commit = local")
            await conn.execute(
                f"CREATE ROLE {REPLICATOR} REPLICATION LOGIN PASSWORD '{self.replicator_password}'"
            )
            await conn.execute(f'CREATE DATABASE "{DATABASE}"')
        finally:
            await conn.close()
        s = self.standby
        await self._run(
            "pg_basebackup", "-D", str(s.pgdata), "-R", "-X", "stream", "-c", "fast",
            "-d", f"host=127.0.0.1 port={p.port} user={REPLICATOR} "
            f"password={self.replicator_password} application_name=standby",
        )  # fmt: skip
        self._configure(s, "standby")
        s.spawn()
        await s.ready()
        await self.synchronous()

    async def synchronous(self) -> None:
        """Waits until the primary counts the standby as synchronous (``quorum``: ANY 1)."""
        deadline = time.monotonic() + SYNC_TIMEOUT_S
        conn = await asyncpg.connect(self.primary.dsn("postgres"))
        try:
            while True:
                rows = await conn.fetch("SELECT state, sync_state FROM pg_stat_replication")
                if any(r["state"] == "streaming" and r["sync_state"] in ("sync", "quorum")
                       for r in rows):  # fmt: skip
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no synchronous standby: {rows}\n{self.standby.log()}")
                await asyncio.sleep(0.1)
        finally:
            await conn.close()

    async def promote(self) -> None:
        """``pg_ctl promote -w``: the standby ends recovery and takes writes."""
        await self._run("pg_ctl", "promote", "-w", "-t", "60", "-D", str(self.standby.pgdata))

    def stop(self) -> None:
        for node in (self.standby, self.primary):
            node.stop()
