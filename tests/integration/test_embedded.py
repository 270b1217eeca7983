"""The embedded PostgreSQL and NATS: start, use, stop with nothing left, restart with data kept.

Real servers from the wheels in ``tmp_path``; no fakes. Process checks read
``/proc`` (Linux), as CI and this machine are.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import asyncpg
import nats
import pytest

from ledger.ops.embedded import EmbeddedServerError
from ledger.ops.embedded_nats import EmbeddedNats
from ledger.ops.embedded_postgres import EmbeddedPostgres
from tests.support import servers


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) from /proc/<pid>/stat, None once the pid is gone."""
    try:
        line = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    state, ppid = line.rsplit(")", 1)[1].split()[:2]
    return state, int(ppid)


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[1] == pid:
                found.add(int(entry))
    return found


def _alive(pid: int) -> bool:
    """Running; a zombie killed and not yet reaped by init counts as gone."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


async def test_postgres_round_trip_stop_leaves_nothing_restart_keeps_data(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
    dsn = pg.start()
    try:
        assert dsn.startswith("postgresql://postgres@/postgres?host=")
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SHOW listen_addresses") == ""
            await conn.execute("CREATE TABLE kept (id int PRIMARY KEY, note text NOT NULL)")
            await conn.execute("INSERT INTO kept VALUES (1, 'first run')")
            assert await conn.fetchval("SELECT note FROM kept WHERE id = 1") == "first run"
        finally:
            await conn.close()
        assert pg.pid is not None
        postmaster = pg.pid
        workers = _children(postmaster)
        assert workers  # checkpointer, walwriter, ...
    finally:
        pg.stop()

    assert pg.pid is None
    assert not _alive(postmaster)
    assert not any(_alive(pid) for pid in workers)
    assert not pg.socket_path.exists()
    pg.stop()  # idempotent

    again = EmbeddedPostgres(tmp_path / "pg")
    assert again.start() == dsn
    try:
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SELECT note FROM kept WHERE id = 1") == "first run"
        finally:
            await conn.close()
    finally:
        again.stop()


async def test_nats_round_trip_stop_leaves_nothing_restart_keeps_port_and_stream(
    tmp_path: Path,
) -> None:
    server = EmbeddedNats(tmp_path / "nats")
    url = server.start()
    try:
        port = int(url.rsplit(":", 1)[1])
        assert url == f"nats://127.0.0.1:{port}"
        assert port != 4222
        assert (tmp_path / "nats" / "nats.port").read_text().strip() == str(port)

        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="EMBEDDED", subjects=["embedded.>"])
            ack = await js.publish("embedded.one", b"kept")
            assert ack.seq == 1
            sub = await js.pull_subscribe("embedded.>", durable="reader", stream="EMBEDDED")
            [msg] = await sub.fetch(1, timeout=5)
            assert msg.data == b"kept"
            await msg.ack_sync()
        finally:
            await nc.close()
        assert server.pid is not None
        pid = server.pid
    finally:
        server.stop()

    assert server.pid is None
    assert not _alive(pid)
    server.stop()  # idempotent

    again = EmbeddedNats(tmp_path / "nats")
    assert again.start() == url
    try:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            assert (await js.stream_info("EMBEDDED")).state.messages == 1
            assert (await js.consumer_info("EMBEDDED", "reader")).num_pending == 0
            sub = await js.pull_subscribe("embedded.>", durable="late", stream="EMBEDDED")
            [msg] = await sub.fetch(1, timeout=5)
            assert msg.data == b"kept"
            await msg.ack_sync()
        finally:
            await nc.close()
    finally:
        again.stop()


async def test_postgres_that_ignores_shutdown_is_killed_with_its_workers(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", stop_timeout_s=0.5)
    dsn = pg.start()
    conn = await asyncpg.connect(dsn)
    try:
        assert pg.pid is not None
        postmaster = pg.pid
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        workers = _children(postmaster)
        assert backend in workers
        os.kill(postmaster, signal.SIGSTOP)  # deaf to SIGINT and SIGQUIT, not to SIGKILL
        pg.stop()
    finally:
        conn.terminate()
    assert not _alive(postmaster)
    assert not any(_alive(pid) for pid in workers)


def test_second_postgres_on_same_folder_fails_with_log_tail(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path / "pg") as first:
        with pytest.raises(
            EmbeddedServerError, match=r'lock file "postmaster\.pid" already exists'
        ):
            EmbeddedPostgres(tmp_path / "pg").start()
        assert first.pid is not None and _alive(first.pid)


def test_nats_refuses_a_remembered_port_now_taken(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        (tmp_path / "nats").mkdir()
        (tmp_path / "nats" / "nats.port").write_text(f"{squatter.getsockname()[1]}\n")
        server = EmbeddedNats(tmp_path / "nats")
        with pytest.raises(EmbeddedServerError, match="in use"):
            server.start()
        assert server.pid is None


async def test_support_context_managers_serve_the_session_fixtures(tmp_path: Path) -> None:
    with (
        servers.embedded_postgres(tmp_path / "pg") as admin_dsn,
        servers.embedded_nats(tmp_path / "nats") as url,
    ):
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute('CREATE DATABASE "other_db"')
        finally:
            await admin.close()
        conn = await asyncpg.connect(servers.with_database(admin_dsn, "other_db"))
        try:
            assert await conn.fetchval("SELECT current_database()") == "other_db"
        finally:
            await conn.close()
        nc = await nats.connect(url)
        try:
            assert nc.is_connected
        finally:
            await nc.close()


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        (
            "postgresql://postgres@127.0.0.1:5432/postgres",
            "postgresql://postgres@127.0.0.1:5432/omniledger_test_1",
        ),
        (
            "postgresql://postgres@/postgres?host=/tmp/x%20y/pg&port=5432",
            "postgresql://postgres@/omniledger_test_1?host=/tmp/x%20y/pg&port=5432",
        ),
        ("postgres://u:p@db", "postgres://u:p@db/omniledger_test_1"),
    ],
)
def test_with_database_keeps_everything_but_the_name(dsn: str, expected: str) -> None:
    assert servers.with_database(dsn, "omniledger_test_1") == expected


async def test_servers_die_with_the_process_that_started_them(tmp_path: Path) -> None:
    """``omniledger up`` killed with SIGKILL (the OOM killer, ``kill -9``) runs no
    clean-up: its embedded PostgreSQL and NATS must not run on without it (they
    did, and the next ``up`` on the folder failed on PostgreSQL's lock file)."""
    import asyncio
    import sys

    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from ledger.ops.embedded_nats import EmbeddedNats\n"
        "from ledger.ops.embedded_postgres import EmbeddedPostgres\n"
        "root = Path(sys.argv[1])\n"
        "nats, pg = EmbeddedNats(root / 'nats'), EmbeddedPostgres(root / 'pg')\n"
        "nats.start(); pg.start()\n"
        "print(nats.pid, pg.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    nats_pid, pg_pid = (int(p) for p in line.split())
    assert _alive(nats_pid) and _alive(pg_pid)
    proc.kill()
    await proc.wait()
    try:
        for _ in range(300):  # 30 s: PostgreSQL's fast shutdown writes a checkpoint
            if not _alive(nats_pid) and not _alive(pg_pid):
                break
            await asyncio.sleep(0.1)
        assert not _alive(nats_pid), "NATS outlived the process that started it"
        assert not _alive(pg_pid), "PostgreSQL outlived the process that started it"
    finally:  # whatever the outcome, leave no server behind
        for pid, sig in ((nats_pid, signal.SIGKILL), (pg_pid, signal.SIGQUIT)):
            if _alive(pid):
                os.kill(pid, sig)
    # and the folder can be used again at once
    pg = EmbeddedPostgres(tmp_path / "pg")
    pg.start()
    pg.stop()
