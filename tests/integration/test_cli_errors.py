"""Operator mistakes on the command line: one line on stderr and exit 2, never a traceback.

Exit 1 is what ``verify`` answers for a broken chain (and ``reconcile`` for
differences), so nothing else may use it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


async def omniledger(*args: str, env: dict[str, str], timeout_s: float = 60) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMNILEDGER_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ledger.ops.cli", *args,
        env=clean | env, cwd=ROOT, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    return proc.returncode or 0, err.decode()


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["migrate"], {"OMNILEDGER_DATABASE_URL": "postgresql://p@127.0.0.1:notaport/x"},
         "OMNILEDGER_DATABASE_URL"),
        (["migrate"], {"OMNILEDGER_DATABASE_URL": "postgresql://p@127.0.0.1/x",
                       "OMNILEDGER_LOG_LEVEL": "verbose"}, "OMNILEDGER_LOG_LEVEL"),
        (["relay"], {"OMNILEDGER_DATABASE_URL": "postgresql://p@127.0.0.1/x",
                     "OMNILEDGER_NATS_URL": "not a url:xx"}, "OMNILEDGER_NATS_URL"),
        (["serve", "--port", "70000"], {}, "--port"),
    ],
)  # fmt: skip
async def test_bad_settings_are_one_line_and_exit_2(
    args: list[str], env: dict[str, str], says: str
) -> None:
    rc, err = await omniledger(*args, env=env)
    assert rc == 2, err
    assert says in err and "Traceback" not in err, err


async def test_an_embedded_server_that_cannot_start_is_one_line_and_exit_2(
    tmp_path: Path, pg_dsn: str
) -> None:
    """NATS's remembered port is taken by another process: ``up`` says so and exits 2."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        (tmp_path / "nats").mkdir()
        (tmp_path / "nats" / "nats.port").write_text(str(taken.getsockname()[1]))
        rc, err = await omniledger(
            "up", "--port", "0",
            env={"OMNILEDGER_DATA_DIR": str(tmp_path), "OMNILEDGER_DATABASE_URL": pg_dsn},
        )  # fmt: skip
    assert rc == 2, err
    assert "EmbeddedServerError" in err and "is in use by another process" in err, err
    assert "Traceback" not in err, err


@pytest.mark.parametrize("command", ["relay", "project"])
async def test_an_unreachable_nats_is_a_line_per_try_not_a_traceback(
    command: str, pg_dsn: str
) -> None:
    """NATS away (or starting after us): the relay and the projections wait for
    it with a growing pause, saying so in one line each time."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMNILEDGER_")}
    env = clean | {"OMNILEDGER_DATABASE_URL": pg_dsn, "OMNILEDGER_NATS_URL": "nats://127.0.0.1:1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ledger.ops.cli", command, env=env, cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await asyncio.sleep(4)
    assert proc.returncode is None, "it gave up instead of waiting for NATS"
    proc.terminate()
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    text = err.decode()
    assert "NATS" in text and ("refused" in text or "unreachable" in text), text
    assert "Traceback" not in text, text


async def test_version_and_no_port_where_nothing_is_served() -> None:
    """Issue 13, point 6: there was no ``--version``, and ``relay --help`` and
    ``project --help`` offered a ``--port`` that served nothing."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ledger.ops.cli", "--version", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0 and out.decode().startswith("omniledger 0."), out
    for command in ("relay", "project"):
        rc, err = await omniledger(command, "--port", "9000", env={})
        assert rc == 2 and "unrecognized arguments: --port" in err, err
    for command in ("up", "serve"):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ledger.ops.cli", command, "--help", cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert "--port PORT" in out.decode()
