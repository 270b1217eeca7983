"""Baseline for the benchmark: a bare aiohttp endpoint doing one INSERT per request.

``POST /insert`` reads the JSON body, takes ``idempotency_key`` from it and
inserts one row (key + raw body) through an asyncpg pool, then answers
``201``. No domain, no idempotency check, no hash chain, no group commit:
the floor of what "HTTP in, one durable row out" costs on this machine, for
``loadtests/bench.py`` to compare the ledger's write path with. ``GET
/healthz`` answers once the table exists.

Run alone (the bench starts it as a separate process):

    python -m loadtests.baseline_insert --dsn postgresql://postgres@127.0.0.1:5432/db --port 8099

Not here: anything of the ledger. Only loopback addresses.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Final

import asyncpg
import orjson
from aiohttp import web

__all__ = ["main"]

POOL: Final = web.AppKey("pool", asyncpg.Pool)
_DDL: Final = """
    CREATE TABLE IF NOT EXISTS bench_insert (
        id bigserial PRIMARY KEY,
        key text NOT NULL,
        body bytea NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now()
    )"""


async def insert(request: web.Request) -> web.Response:
    raw = await request.read()
    try:
        body = orjson.loads(raw)
        key = body["idempotency_key"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return web.json_response({"error": {"code": "bad_request"}}, status=400)
    position = await request.app[POOL].fetchval(
        "INSERT INTO bench_insert (key, body) VALUES ($1, $2) RETURNING id", key, raw
    )
    return web.Response(
        body=orjson.dumps({"status": "recorded", "position": position}),
        status=201,
        content_type="application/json",
    )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(dsn: str, pool_size_max: int) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)

    async def pool_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=pool_size_max)
        assert pool is not None
        await pool.execute(_DDL)
        app[POOL] = pool
        yield
        await pool.close()

    app.cleanup_ctx.append(pool_ctx)
    app.router.add_post("/insert", insert)
    app.router.add_get("/healthz", healthz)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pool-size", type=int, default=10, help="as OMNILEDGER_DB_POOL_SIZE_MAX")
    args = parser.parse_args(argv)
    try:
        import uvloop  # the service runs on uvloop too: same event loop, fair comparison

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    web.run_app(
        create_app(args.dsn, args.pool_size),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        backlog=1024,
        loop=loop,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
