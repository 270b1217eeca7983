"""``up`` checks what would make it fail before it starts anything, and tells
the other commands where its database is (issue 13, finding 3 and point 2)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

from ledger.ops.data_dir import hold_lock

ROOT = Path(__file__).resolve().parents[2]


async def omniledger(*args: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMNILEDGER_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ledger.ops.cli", *args, cwd=cwd, env=clean | env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_a_taken_port_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        rc, _, err = await omniledger("up", "--port", str(port), cwd=tmp_path, env={})
    assert rc == 2, err
    assert err.strip() == (
        f"omniledger up: port {port} on 127.0.0.1 is taken; choose another with --port"
        " (or OMNILEDGER_PORT)"
    )
    assert not (tmp_path / ".omniledger" / "postgres").exists(), "nothing was started"


async def test_a_port_out_of_range_is_one_short_line(tmp_path: Path) -> None:
    rc, _, err = await omniledger("up", "--port", "99999", cwd=tmp_path, env={})
    assert rc == 2 and len(err) < 400, len(err)  # it was 447,789 bytes
    assert "'99999' is not a port: give 0-65535" in err


async def test_a_second_up_in_the_same_folder_is_refused_naming_the_first(tmp_path: Path) -> None:
    lock = hold_lock(tmp_path / ".omniledger")
    try:
        rc, _, err = await omniledger("up", "--port", "0", cwd=tmp_path, env={})
    finally:
        lock.close()
    assert rc == 2, err
    assert f"another omniledger up (pid {os.getpid()}) is running" in err
    assert "Traceback" not in err and "EmbeddedServerError" not in err


async def test_commands_find_the_database_up_wrote_down(tmp_path: Path, pg_dsn: str) -> None:
    """After ``up``, ``omniledger verify`` said OMNILEDGER_DATABASE_URL is not set."""
    data = tmp_path / ".omniledger"
    data.mkdir()
    (data / "env").write_text(f"OMNILEDGER_DATABASE_URL={pg_dsn}\nOMNILEDGER_NATS_URL=nats://x\n")
    rc, _, err = await omniledger("migrate", cwd=tmp_path, env={})
    assert rc == 0, err
    rc, out, err = await omniledger("verify", cwd=tmp_path, env={})
    assert rc == 0, err
    assert f"omniledger: using the database of `up` in .omniledger ({pg_dsn})" in err
    assert "chain intact" in out
    # a URL in the environment wins, and nothing is said
    rc, _, err = await omniledger("verify", cwd=tmp_path, env={"OMNILEDGER_DATABASE_URL": pg_dsn})
    assert rc == 0 and "using the database of `up`" not in err
