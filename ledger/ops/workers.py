"""``--workers N``: N API processes on one port, so HTTP parsing and JSON spread over cores.

Each worker is a whole ``omniledger serve`` process (its own event loop, writer
and database pool) listening with SO_REUSEPORT on the same address; the kernel
spreads new connections over the listening sockets. Nothing of the contract
depends on there being one process: every writer's commit takes the one
``ledger_head`` row lock (docs/adr/0001), so positions stay gap-free and the
hash chain one chain, and idempotency keys are unique in the database, not in
a process's memory (tests/api/test_concurrency.py runs two writers on one
database).

The workers are children of the command (``ledger.ops.supervisor``): one that
dies is started again with backoff, all get SIGTERM when the command stops,
and they get SIGTERM from Linux if the command dies (PR_SET_PDEATHSIG). The
command prepares what must happen once (schema, projection tables, the admin
key file) before it starts them, so they never race each other at start-up.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Callable, Iterable
from typing import Any, Final

from ledger.ops.settings import Settings

__all__ = [
    "WORKERS_MAX",
    "WORKER_HEADER",
    "pool_share",
    "reserve_port",
    "worker_health",
    "worker_specs",
]

log = logging.getLogger("omniledger")

#: More API processes than this is a mistake (a pool of 2 connections each
#: already needs 128 of PostgreSQL's connections).
WORKERS_MAX: Final = 64
#: The smallest pool a worker can run on: one connection for the writer's
#: commit, one for reads.
POOL_SIZE_MIN: Final = 2


def pool_share(pool_size_max: int, processes: int) -> int:
    """Each of ``processes`` gets an equal part of ``OMNILEDGER_DB_POOL_SIZE_MAX``,
    so that together they open no more connections than one process would; never
    fewer than ``POOL_SIZE_MIN`` (then together they exceed it, and say so)."""
    share = max(pool_size_max // processes, POOL_SIZE_MIN)
    if share * processes > pool_size_max:
        log.warning(
            "OMNILEDGER_DB_POOL_SIZE_MAX=%d is less than %d connections for %d API processes: "
            "each opens up to %d, %d in all",
            pool_size_max, POOL_SIZE_MIN * processes, processes, share, share * processes,
        )  # fmt: skip
    return share


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` with SO_REUSEPORT and never listening: it
    fails at once (``OSError``) if something else holds the port, picks the port
    when ``port`` is 0, and keeps it ours while every worker is down. A socket
    that does not listen is given no connections. The caller closes it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def worker_specs(
    settings: Settings,
    port: int,
    indexes: Iterable[int],
    pool_size_max: int,
    preexec_fn: Callable[[], None] | None,
) -> list[Any]:
    """``ledger.ops.supervisor.ChildSpec``s of ``omniledger serve`` workers
    ``indexes`` on ``port``, each with a pool of ``pool_size_max`` connections."""
    from ledger.ops.supervisor import ChildSpec

    env = dict(os.environ)
    env["OMNILEDGER_DATABASE_URL"] = settings.database_url or ""
    if settings.nats_url:
        env["OMNILEDGER_NATS_URL"] = settings.nats_url
    env["OMNILEDGER_DB_POOL_SIZE_MAX"] = str(pool_size_max)
    cli = [sys.executable, "-m", "ledger.ops.cli", "serve"]
    return [
        ChildSpec(
            f"serve-{index}",
            [*cli, "--host", settings.host, "--port", str(port), "--worker-index", str(index)],
            env,
            preexec_fn,
        )
        for index in indexes
    ]


#: On every answer of a worker: which of the processes sharing the port answered.
WORKER_HEADER: Final = "X-Omniledger-Worker"


def worker_health(index: int) -> Any:
    """The extension that names the worker that answered: ``worker`` (index and
    pid) on ``/healthz``, its index in the ``X-Omniledger-Worker`` header of
    every answer (what a client, or a test, needs to see where a write went)."""
    from ledger.api.http import HealthPart, add_health_check

    fields = {"worker": {"index": index, "pid": os.getpid()}}
    name = str(index)

    async def check(_head: int) -> HealthPart:
        return HealthPart(fields)

    async def mark(_request: Any, response: Any) -> None:
        response.headers[WORKER_HEADER] = name

    class _Health:
        def setup(self, app: Any) -> None:
            add_health_check(app, check)
            app.on_response_prepare.append(mark)

    return _Health()
