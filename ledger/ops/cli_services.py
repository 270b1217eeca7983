"""The long-running commands of ``omniledger``: ``up``, ``serve``, ``relay``,
``project`` (and ``migrate``, which prepares them).

Long-running commands stop cleanly on SIGINT/SIGTERM: the HTTP server first,
then the writer, relay and projections, then the embedded servers, so no
process is left behind. The parser and ``main`` are in :mod:`ledger.ops.cli`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ledger.ops.bootstrap import (
    admin_key_for,
    connect,
    embedded_servers,
    migrated_store,
)
from ledger.ops.settings import Settings

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("omniledger")

__all__ = [
    "cmd_migrate",
    "cmd_project",
    "cmd_relay",
    "cmd_serve",
    "cmd_up",
    "freeze_startup",
]


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _run_service(
    settings: Settings,
    *,
    http: bool,
    relay: bool,
    projections: bool,
    announce_key: bool,
    extra: Sequence[Any] = (),
) -> None:
    """Runs the chosen parts in this process until SIGINT/SIGTERM; ``extra``: more
    extensions of the HTTP app (``up`` adds its supervisor's health)."""

    from ledger.api.http import create_app, install_admin_key, serve
    from ledger.app.ledger import Ledger
    from ledger.ops import bootstrap as wiring

    pool = await connect(settings)
    tasks: list[asyncio.Task[Any]] = []
    runner: web.AppRunner | None = None
    ledger: Ledger | None = None
    try:
        store = await migrated_store(pool)
        await wiring.prepare(settings, pool)
        if http:
            key_path = settings.data_dir / "admin.key"
            new_key = not settings.admin_key and not key_path.exists()
            admin_key = admin_key_for(settings)
            await install_admin_key(store, admin_key)
            ledger = Ledger(store, batch_size_max=settings.batch_size_max)
            ledger.start()
            app = create_app(
                settings, ledger, store, extensions=[*wiring.extensions(settings, pool), *extra]
            )
            # with the header/body deadlines and the connection cap of settings
            runner = await serve(app, settings, settings.host, settings.port)
            log.info("serving the API on http://%s:%s", settings.host, settings.port)
            if announce_key and new_key:
                # once, when it is made: a secret does not belong in every start's log
                log.info("admin key (kept in %s): %s", key_path, admin_key)
            elif announce_key and not settings.admin_key:
                log.info("admin key: in %s", key_path)
        if relay:
            tasks.append(asyncio.create_task(wiring.run_relay(settings, pool), name="relay"))
        if projections:
            tasks.append(
                asyncio.create_task(wiring.run_projections(settings, pool), name="projections")
            )
        await _until_stopped(tasks)
    finally:
        if runner is not None:
            await runner.cleanup()
        await _cancel(tasks)
        if ledger is not None:
            await ledger.stop()
        await pool.close()
        log.info("stopped")


async def _until_stopped(tasks: list[asyncio.Task[Any]]) -> None:
    """Until SIGINT/SIGTERM or the end of one of ``tasks`` (logged if it failed)."""
    waiter = asyncio.create_task(_until_signalled())
    await asyncio.sleep(0)  # the parts' first steps: what they import is imported now
    freeze_startup()
    done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not waiter and task.exception() is not None:
            log.error("%s stopped: %r", task.get_name(), task.exception())
    log.info("stopping")
    waiter.cancel()


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancels the parts' tasks and waits a little for them."""
    for task in tasks:
        task.cancel()
    if tasks:
        # bounded: a task cancelled inside nats-py's connect may swallow the
        # cancellation and go on; the process is ending anyway
        ended, stuck = await asyncio.wait(tasks, timeout=5)
        for task in ended:
            if not task.cancelled():
                task.exception()  # retrieved: it was logged above if it mattered
        for task in stuck:
            log.warning("%s did not stop within 5 s; leaving it", task.get_name())


async def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    async with embedded_servers(settings) as live:
        if args.single_process:
            await _run_service(live, http=True, relay=True, projections=True, announce_key=True)
            return 0
        # The relay and the projections run as child processes of their own so
        # that the API's event loop (and its core) serves requests only; they
        # die with this process (PR_SET_PDEATHSIG), even if it is killed, and
        # are started again when they die without it (ledger.ops.supervisor).
        pool = await connect(live, pool_size_max=2)
        try:
            await migrated_store(pool)  # before the children, which need the schema
        finally:
            await pool.close()
        from ledger.ops.bootstrap import supervisor_health
        from ledger.ops.supervisor import Supervisor

        supervisor = Supervisor([_part("relay", live), _part("project", live)])
        await supervisor.start()
        try:
            await _run_service(
                live, http=True, relay=False, projections=False, announce_key=True,
                extra=[supervisor_health(supervisor)],
            )  # fmt: skip
        finally:
            await supervisor.stop()
    return 0


def _part(command: str, settings: Settings) -> Any:
    """How ``up`` runs ``omniledger <command>`` as a child (``ledger.ops.supervisor.ChildSpec``)."""
    from ledger.ops.supervisor import ChildSpec

    env = dict(os.environ)
    env["OMNILEDGER_DATABASE_URL"] = settings.database_url or ""
    env["OMNILEDGER_NATS_URL"] = settings.nats_url or ""
    return ChildSpec(
        command, [sys.executable, "-m", "ledger.ops.cli", command], env, _die_with_parent
    )


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the parent dies."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: children are still stopped on a clean shutdown
        pass


async def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    await _run_service(settings, http=True, relay=False, projections=False, announce_key=False)
    return 0


async def cmd_relay(settings: Settings, args: argparse.Namespace) -> int:
    await _run_service(settings, http=False, relay=True, projections=False, announce_key=False)
    return 0


async def cmd_project(settings: Settings, args: argparse.Namespace) -> int:
    await _run_service(settings, http=False, relay=False, projections=True, announce_key=False)
    return 0


async def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    pool = await connect(settings)
    try:
        store = await migrated_store(pool)
        head, _ = await store.head()
        print(f"schema up to date; log head at position {head}")
    finally:
        await pool.close()
    return 0


def freeze_startup() -> None:
    """What start-up allocated (modules, app, routes) is never collected: keep it
    out of every GC pass. Called again once a service has imported and started
    its parts, which the command line only imports when it runs them."""
    import gc

    gc.collect()
    gc.freeze()
