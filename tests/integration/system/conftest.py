"""The whole service as real processes: ``omniledger up`` and the operator commands.

Each test gets a PostgreSQL database of its own, a JetStream stream name and
subject prefix of its own (deleted afterwards) and an ``omniledger up``
subprocess on a free port, pointed at the real servers on 127.0.0.1 through
``OMNILEDGER_DATABASE_URL`` / ``OMNILEDGER_NATS_URL``. Nothing is mocked:
the tests talk HTTP to the process, run the CLI as further subprocesses and
read the stream with a NATS client.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import signal
import struct
import termios
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import nats
import nats.js.errors
import orjson
import pytest

from ledger.contract.servers import nats_servers
from ledger.ops.embedded import free_loopback_port
from projections.catalog import PROJECTION_NAMES
from tests.support.servers import fresh_database

ROOT = Path(__file__).resolve().parents[3]
OMNILEDGER = ROOT / ".venv" / "bin" / "omniledger"
ADMIN_KEY = "system-test-admin-key"
PROJECTIONS = tuple(sorted(PROJECTION_NAMES))


@dataclass
class Deployment:
    """Where one test's service keeps its state: database, stream, prefix, data folder."""

    dsn: str
    nats_url: str
    stream: str
    prefix: str
    data_dir: Path
    admin_key: str = ADMIN_KEY
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OMNILEDGER_")}
        env.update(
            OMNILEDGER_DATABASE_URL=self.dsn,
            OMNILEDGER_NATS_URL=self.nats_url,
            OMNILEDGER_STREAM=self.stream,
            OMNILEDGER_SUBJECT_PREFIX=self.prefix,
            OMNILEDGER_ADMIN_KEY=self.admin_key,
            OMNILEDGER_DATA_DIR=str(self.data_dir),
            OMNILEDGER_LOG_LEVEL="INFO",
        )
        env.update(self.extra_env)
        return env


@dataclass(frozen=True)
class Run:
    rc: int
    out: str
    err: str

    def json(self) -> Any:
        return orjson.loads(self.out)

    def __str__(self) -> str:
        return f"rc={self.rc}\n--- stdout\n{self.out[-4000:]}\n--- stderr\n{self.err[-4000:]}"


def _processes() -> list[tuple[int, str, int]]:
    """(pid, state, process group) of every process, from /proc (Linux)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out.append((int(entry), fields[0], int(fields[2])))
    return out


def command_lines(pids: set[int]) -> dict[int, str]:
    out = {}
    for pid in pids:
        try:
            out[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            out[pid] = "?"
    return out


class Service:
    """One ``omniledger up`` process; its stdout/stderr go to a log file."""

    def __init__(self, deployment: Deployment, port: int, log_path: Path) -> None:
        self.deployment = deployment
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout_s: float = 30.0) -> None:
        assert self.proc is None or self.proc.returncode is not None
        with self.log_path.open("ab") as log:
            log.write(f"==== omniledger up --port {self.port}\n".encode())
            log.flush()
            self.proc = await asyncio.create_subprocess_exec(
                str(OMNILEDGER), "up", "--port", str(self.port),
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                env=self.deployment.env(), cwd=str(self.deployment.data_dir),
                start_new_session=True,  # its own process group: SIGKILL reaches all of it
            )  # fmt: skip
        deadline = asyncio.get_running_loop().time() + timeout_s
        async with aiohttp.ClientSession() as s:
            while True:
                if self.proc.returncode is not None:
                    raise AssertionError(
                        f"omniledger up exited {self.proc.returncode}\n{self.log()}"
                    )
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with s.get(f"{self.url}/healthz") as r:
                        if r.status == 200:
                            return
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(
                        f"omniledger up not healthy in {timeout_s} s\n{self.log()}"
                    )
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL to the process group: no clean-up of any kind runs."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()

    async def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout_s``); returns the exit code.

        Whatever is left of the process group afterwards (a child that outlived
        its parent) gets SIGKILL too.
        """
        if self.proc is None:
            return None
        code: int | None = self.proc.returncode
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

    def group(self) -> set[int]:
        """Live (not zombie) processes of this service's process group, the parent included."""
        assert self.proc is not None
        return {pid for pid, state, pgid in _processes() if pgid == self.proc.pid and state != "Z"}

    def zombies(self) -> set[int]:
        """Processes of this service's group that ended and were never reaped."""
        assert self.proc is not None
        return {pid for pid, state, pgid in _processes() if pgid == self.proc.pid and state == "Z"}

    def log(self, tail: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""


class Http:
    """JSON over HTTP to a running service, with the admin key unless told otherwise."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base: str,
        key: str,
        server_log: Callable[[], str] = lambda: "",
    ) -> None:
        self.session = session
        self.base = base
        self.headers = {"Authorization": f"Bearer {key}"}
        #: the tail of the server's log, for failure messages
        self.server_log = server_log

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with self.session.get(self.base + path, headers=headers or self.headers) as r:
            return r.status, orjson.loads(await r.read())

    async def post(
        self, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with self.session.post(
            self.base + path,
            data=orjson.dumps(body),
            headers={"Content-Type": "application/json", **(headers or self.headers)},
        ) as r:
            return r.status, orjson.loads(await r.read())

    async def seller(self, seller_id: str, district: str | None = "Tamalate") -> dict[str, Any]:
        body: dict[str, Any] = {"seller_id": seller_id, "name": f"Toko {seller_id}"}
        if district is not None:
            body["district"] = district
        status, out = await self.post("/v1/sellers", body)
        assert status == 201, out
        return out  # type: ignore[no-any-return]

    async def key(self, role: str, seller_id: str | None = None) -> dict[str, str]:
        body: dict[str, Any] = {"role": role}
        if seller_id is not None:
            body["seller_id"] = seller_id
        status, out = await self.post("/v1/keys", body)
        assert status == 201, out
        return {"Authorization": f"Bearer {out['key']}"}

    async def events(self, after: int = 0) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            status, page = await self.get(f"/v1/events?after={after}&limit=1000")
            assert status == 200, page
            out.extend(page["events"])
            if page["next_after"] is None:
                return out
            after = page["next_after"]

    async def head(self) -> int:
        status, body = await self.get("/healthz")
        assert status == 200, body
        return int(body["head_position"])

    async def caught_up(self, timeout_s: float = 30.0) -> int:
        """Waits until every read model is at the log head (lag 0); returns that head."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        last: Any = None
        while True:
            status, body = await self.get("/v1/projections")
            assert status == 200, body
            last = body
            rows = {p["name"]: p for p in body["projections"]}
            if set(PROJECTIONS) <= set(rows) and all(
                rows[n]["lag_events"] == 0 and rows[n]["position"] == body["head_position"]
                for n in PROJECTIONS
            ):
                return int(body["head_position"])
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"read models not caught up in {timeout_s} s: {last}\n"
                    f"--- server log (tail)\n{self.server_log()}"
                )
            await asyncio.sleep(0.05)


@pytest.fixture
async def fresh_db(pg_admin_dsn: str) -> AsyncIterator[str]:
    """A database of its own per test, dropped afterwards."""
    async with fresh_database(pg_admin_dsn, "omniledger_system") as dsn:
        yield dsn


@pytest.fixture
async def deployment(fresh_db: str, nats_url: str, tmp_path: Path) -> AsyncIterator[Deployment]:
    tag = uuid.uuid4().hex[:8]
    data_dir = tmp_path / "omniledger"
    data_dir.mkdir()
    d = Deployment(
        dsn=fresh_db,
        nats_url=nats_url,
        stream=f"LEDGER_SYS{tag}",
        prefix=f"sys{tag}",
        data_dir=data_dir,
    )
    yield d
    nc = await nats.connect(nats_url)
    try:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_stream(d.stream)  # its consumers go with it
    finally:
        await nc.close()


@pytest.fixture
async def service(deployment: Deployment, tmp_path: Path) -> AsyncIterator[Service]:
    """``omniledger up`` started and healthy; stopped (SIGTERM) after the test."""
    svc = Service(deployment, free_loopback_port(), tmp_path / "up.log")
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


@pytest.fixture
async def http(service: Service) -> AsyncIterator[Http]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield Http(session, service.url, service.deployment.admin_key, service.log)


CliRunner = Callable[..., Awaitable[Run]]


async def run_cli(deployment: Deployment, *args: str, timeout_s: float = 60.0) -> Run:
    """``omniledger <args>`` as a subprocess with the deployment's environment."""
    env = deployment.env() | {"OMNILEDGER_LOG_LEVEL": "WARNING"}
    proc = await asyncio.create_subprocess_exec(
        str(OMNILEDGER), *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=str(deployment.data_dir),
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return Run(proc.returncode or 0, out.decode(), err.decode())


async def run_cli_on_a_terminal(deployment: Deployment, *args: str, timeout_s: float = 60.0) -> Run:
    """Like ``run_cli`` but with stderr on a pseudo-terminal (progress bars draw only there)."""
    env = deployment.env() | {"OMNILEDGER_LOG_LEVEL": "WARNING", "TERM": "xterm"}
    master, slave = pty.openpty()
    # A real terminal has a size; tqdm cuts its bar to the width (0 on a bare pty).
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        proc = await asyncio.create_subprocess_exec(
            str(OMNILEDGER), *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=slave, env=env, cwd=str(deployment.data_dir),
        )  # fmt: skip
    finally:
        os.close(slave)
    chunks: list[bytes] = []

    def read_terminal() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = asyncio.create_task(asyncio.to_thread(read_terminal))
    try:
        assert proc.stdout is not None
        out = await asyncio.wait_for(proc.stdout.read(), timeout_s)
        await asyncio.wait_for(proc.wait(), timeout_s)
        await asyncio.wait_for(reader, timeout_s)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        os.close(master)
    return Run(proc.returncode or 0, out.decode(), b"".join(chunks).decode(errors="replace"))


@pytest.fixture
def cli(deployment: Deployment) -> CliRunner:
    async def run(*args: str, timeout_s: float = 60.0) -> Run:
        return await run_cli(deployment, *args, timeout_s=timeout_s)

    return run


async def stream_messages(nats_url: str, stream: str) -> tuple[Any, list[Any]]:
    """The stream's info and every message in it, by sequence (``nats_url`` may list
    a cluster's servers, comma-separated)."""
    nc = await nats.connect(servers=nats_servers(nats_url))
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        first, last = info.state.first_seq or 1, info.state.last_seq or 0
        msgs: list[Any] = []
        for start in range(first, last + 1, 200):
            msgs.extend(
                await asyncio.gather(
                    *(js.get_msg(stream, seq=s) for s in range(start, min(start + 200, last + 1)))
                )
            )
        return info, msgs
    finally:
        await nc.close()


BALANCE_FIELDS = (
    "pending", "available", "captured_total", "refunded_total", "fees_total", "paid_out_total",
)  # fmt: skip


def money(balance: dict[str, Any]) -> dict[str, str]:
    return {k: balance[k] for k in BALANCE_FIELDS}
