"""The parts of a scaled-out deployment as separate real processes, as deploy/ runs them.

Each ``Part`` is one ``omniledger <command>`` (``serve``, ``relay``, ``project``)
in a session of its own, pointed at one test's database and stream through the
``Deployment``'s environment (tests/integration/system/conftest.py), its output
in a log file. A test may SIGKILL any of them: nothing else restarts it, as
with two machines of which one dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import nats.js.errors

from tests.integration.system.conftest import OMNILEDGER, Deployment, free_loopback_port

__all__ = ["Part", "head", "stream_last_seq"]

START_TIMEOUT_S = 30.0


class Part:
    """One ``omniledger <command> <args>`` process; ``url`` for a ``serve``."""

    def __init__(self, deployment: Deployment, name: str, *args: str, log_dir: Path) -> None:
        self.deployment = deployment
        self.name = name
        self.args = list(args)
        self.port: int | None = None
        if args and args[0] == "serve":
            self.port = free_loopback_port()
            self.args += ["--port", str(self.port)]
        self.log_path = log_dir / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        assert self.port is not None, f"{self.name} serves no HTTP"
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                str(OMNILEDGER), *self.args,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                env=self.deployment.env(), cwd=str(self.deployment.data_dir),
                start_new_session=True,  # its own group: a SIGKILL reaches all of it
            )  # fmt: skip
        if self.port is not None:
            await self._healthy()

    async def _healthy(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
            while True:
                self.assert_running()
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with s.get(f"{self.url}/healthz") as r:
                        if r.status == 200:
                            return
                assert loop.time() < deadline, f"{self.name} not healthy\n{self.log()}"
                await asyncio.sleep(0.05)

    def assert_running(self) -> None:
        assert self.proc is not None and self.proc.returncode is None, (
            f"{self.name} exited {self.proc and self.proc.returncode}\n{self.log()}"
        )

    async def wait_log(self, text: str, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until ``text`` appears in the part's log."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while text not in self.log(tail=None):
            self.assert_running()
            assert loop.time() < deadline, f"{self.name}: no {text!r}\n{self.log()}"
            await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL to its process group: no clean-up of any kind runs."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()

    async def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM and wait (SIGKILL past ``timeout_s``); returns the exit code."""
        if self.proc is None:
            return None
        code = self.proc.returncode
        if code is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.wait_for(self.proc.wait(), timeout_s)
            except TimeoutError:
                await self.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return code

    def log(self, tail: int | None = 3000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return text if tail is None else text[-tail:]


async def head(dsn: str) -> int:
    """The log's last position, read from PostgreSQL itself."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT position FROM ledger_head"))
    finally:
        await conn.close()


async def stream_last_seq(nc: Any, stream: str) -> int:
    """The stream's last sequence (0 while it does not exist)."""
    try:
        info = await nc.jetstream().stream_info(stream)
    except nats.js.errors.NotFoundError:
        return 0
    return int(info.state.last_seq or 0)
