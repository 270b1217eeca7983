"""Bytes per event, for the capacity plan: ``python -m loadtests.sizes [--events 100000]``.

Fills a fresh database through the real write path (the same ``fill`` as
``loadtests.catchup``: orders placed then captured over 100 sellers), runs
the real ``omniledger relay`` into a stream of its own and ``omniledger
projections rebuild`` once, then prints, per event in the log:

- each write-side table (events, idempotency keys, claims, indexes and TOAST
  included: ``pg_total_relation_size``), and their sum, "the log";
- the stream's bytes (JetStream's own count: subject, headers, body);
- each read model's tables, summed per model.

Sizes do not depend on how busy the machine is, unlike rates; ``VACUUM
ANALYZE`` runs first so that the figures are of settled tables. The database
and the stream are dropped at the end, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Final

import asyncpg
import nats
from nats.js.errors import NotFoundError

from tests.integration.audit.bench_audit import create, drop, fill

ROOT: Final = Path(__file__).resolve().parents[1]
OMNILEDGER: Final = str(ROOT / ".venv" / "bin" / "omniledger")

#: read-model tables by the model that owns them (prefixes of their names)
MODEL_TABLES: Final = {
    "balances": ("proj_balances", "proj_balance_orders"),
    "recaps": ("proj_seller_daily",),
    "city": ("proj_city_",),
}
RUNTIME_TABLES: Final = ("projection_positions", "projection_poison", "relay_checkpoints")


def _owner(table: str) -> str:
    for model, prefixes in MODEL_TABLES.items():
        if table.startswith(prefixes):
            return f"read model {model}"
    if table.startswith("proj_") or table in RUNTIME_TABLES:
        return "read-side bookkeeping"
    return "log"


async def table_bytes(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM ANALYZE")
        rows = await conn.fetch(
            "SELECT c.relname AS name, pg_total_relation_size(c.oid) AS bytes"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind = 'r' AND n.nspname = 'public'"
        )
        return {r["name"]: int(r["bytes"]) for r in rows}
    finally:
        await conn.close()


def _env(dsn: str, nats_url: str, stream: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNILEDGER_")}
    return env | {
        "OMNILEDGER_DATABASE_URL": dsn,
        "OMNILEDGER_NATS_URL": nats_url,
        "OMNILEDGER_STREAM": stream,
        "OMNILEDGER_SUBJECT_PREFIX": stream.lower(),
        "OMNILEDGER_LOG_LEVEL": "WARNING",
    }


async def wait_for_stream(
    relay: subprocess.Popen[bytes], env: dict[str, str], head: int, timeout_s: float
) -> tuple[int, int]:
    """Waits until the relay has put ``head`` messages on the stream: (messages, bytes)."""
    nc = await nats.connect(env["OMNILEDGER_NATS_URL"])
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if relay.poll() is not None:
                raise RuntimeError(f"relay exited with {relay.returncode}")
            try:
                state = (await nc.jetstream().stream_info(env["OMNILEDGER_STREAM"])).state
            except NotFoundError:
                state = None
            if state is not None and state.messages >= head:
                return state.messages, state.bytes
            await asyncio.sleep(0.2)
        raise TimeoutError(f"the relay did not publish {head} events within {timeout_s} s")
    finally:
        await nc.close()


async def delete_stream(nats_url: str, stream: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().delete_stream(stream)
    except NotFoundError:
        pass
    finally:
        await nc.close()


def report(tables: dict[str, int], head: int, stream_bytes: int) -> None:
    groups: dict[str, int] = defaultdict(int)
    print(f"{head} events; bytes per event:")
    for name, size in sorted(tables.items(), key=lambda kv: -kv[1]):
        groups[_owner(name)] += size
        if size >= 65536:  # a table of a few pages says nothing per event
            print(f"  {name:32} {size / head:8.1f}")
    print(f"  {'stream (JetStream)':32} {stream_bytes / head:8.1f}")
    for group, size in sorted(groups.items()):
        print(f"= {group:32} {size / head:8.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--timeout-s", type=float, default=600.0)
    args = parser.parse_args()
    admin_dsn = os.environ.get(
        "OMNILEDGER_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    nats_url = os.environ.get("OMNILEDGER_TEST_NATS_URL", "nats://127.0.0.1:4222")
    tag = uuid.uuid4().hex[:8]
    name, stream = f"omniledger_sizes_{tag}", f"SIZES_{tag}"
    try:
        dsn = asyncio.run(create(admin_dsn, name))
        print(f"filling {name} with {args.events} events ...", file=sys.stderr)
        head, _ = asyncio.run(fill(dsn, args.events))
        env = _env(dsn, nats_url, stream)
        relay = subprocess.Popen([OMNILEDGER, "relay"], env=env, cwd=ROOT, start_new_session=True)
        try:
            _, stream_bytes = asyncio.run(wait_for_stream(relay, env, head, args.timeout_s))
        finally:
            relay.terminate()
            relay.wait(timeout=10)
        subprocess.run(
            [OMNILEDGER, "projections", "rebuild"],
            env=env, cwd=ROOT, check=True, capture_output=True, timeout=args.timeout_s,
        )  # fmt: skip
        report(asyncio.run(table_bytes(dsn)), head, stream_bytes)
    finally:
        asyncio.run(delete_stream(nats_url, stream))
        asyncio.run(drop(admin_dsn, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
