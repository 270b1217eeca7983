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
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ledger.ops.bootstrap import (
    admin_key_for,
    close_pool,
    connect,
    embedded_servers,
    migrated_store,
)
from ledger.ops.settings import Settings

if TYPE_CHECKING:
    from aiohttp import web

    from ledger.app.ledger import Ledger

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
    worker_index: int | None = None,
) -> None:
    """Runs the chosen parts in this process until SIGINT/SIGTERM; ``extra``: more
    extensions of the HTTP app (``up`` adds its supervisor's health);
    ``worker_index``: one of ``--workers`` API processes sharing the port."""

    from ledger.ops import bootstrap as wiring

    pool = await connect(settings)
    tasks: list[asyncio.Task[Any]] = []
    runner: web.AppRunner | None = None
    ledger: Ledger | None = None
    read_pool = None
    try:
        store = await migrated_store(pool)
        await wiring.prepare(settings, pool)
        if http:
            # here, not above: `relay` and `project` need neither (0.2 s of CPU at start-up)
            from ledger.api.http import create_app, install_admin_key, serve
            from ledger.app.ledger import Ledger

            key_path = settings.data_dir / "admin.key"
            admin_key = admin_key_for(settings)
            await install_admin_key(store, admin_key)
            ledger = Ledger(store, batch_size_max=settings.batch_size_max)
            ledger.start()
            if worker_index is not None:
                from ledger.ops.workers import worker_health

                extra = [*extra, worker_health(worker_index)]
            read_store = None
            if settings.read_database_url:
                # the read endpoints on a standby (issue 15); the writes stay on the primary
                from ledger.store import LedgerStore

                read_pool = await wiring.connect_reads(settings)
                read_store = LedgerStore(read_pool)
            app = create_app(
                settings,
                ledger,
                store,
                extensions=[*wiring.extensions(settings, pool, read_pool), *extra],
                read_store=read_store,
            )
            # with the header/body deadlines and the connection cap of settings
            runner = await serve(
                app, settings, settings.host, settings.port, reuse_port=worker_index is not None
            )
            log.info(
                "serving the API on http://%s:%s%s", settings.host, settings.port,
                "" if worker_index is None else f" (worker {worker_index}, pid {os.getpid()})",
            )  # fmt: skip
            shown = settings.data_dir / "admin.key.shown"
            if announce_key and not settings.admin_key and not shown.exists():
                # once, on the first start that serves: a secret does not belong in
                # every start's log, and a start that failed before serving never
                # showed the key it made (issue 13)
                log.info("admin key (kept in %s): %s", key_path, admin_key)
                shown.touch()
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
        if read_pool is not None:
            await close_pool(read_pool)
        await close_pool(pool)
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


def _preflight(settings: Settings) -> str | None:
    """What would make ``up`` fail after starting servers, checked before any:
    the port, the data folder's lock (held from here on), the embedded servers'
    binaries. ``None`` when all is well; else one line with the fix."""
    import errno
    import socket

    from ledger.ops.data_dir import DataDirBusy, hold_lock

    if settings.port:
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # as the server binds (aiohttp sets it): connections of an earlier
            # `up` still in TIME_WAIT do not make the port taken, a listener does
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((settings.host, settings.port))
            except OSError as e:
                why = (
                    "is taken" if e.errno == errno.EADDRINUSE else f"cannot be used ({e.strerror})"
                )
                return (f"port {settings.port} on {settings.host} {why}; choose another with"
                        " --port (or OMNILEDGER_PORT)")  # fmt: skip
    try:
        _UP_LOCKS.append(hold_lock(settings.data_dir))
    except DataDirBusy as e:
        return str(e)
    from ledger.ops.embedded import EmbeddedServerError
    from ledger.ops.embedded_nats import _nats_server_binary
    from ledger.ops.embedded_postgres import _pg_bin_dir

    for wanted, find, url in (
        (settings.database_url is None, _pg_bin_dir, "OMNILEDGER_DATABASE_URL"),
        (settings.nats_url is None, _nats_server_binary, "OMNILEDGER_NATS_URL"),
    ):
        if wanted:
            try:
                find()
            except (EmbeddedServerError, OSError) as e:
                return f"{e}; reinstall the package (pip install -e .) or set {url}"
    return None


#: The data folder locks this process holds (released when it exits).
_UP_LOCKS: list[Any] = []


async def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    workers = args.workers or 1
    problem = _preflight(settings)
    if problem is not None:
        print(f"omniledger up: {problem}", file=sys.stderr)
        return 2
    async with embedded_servers(settings) as live:
        if args.single_process:
            if workers > 1:
                log.error("--single-process runs one process: no --workers")
                return 2
            await _run_service(live, http=True, relay=True, projections=True, announce_key=True)
            return 0
        # The relay and the projections run as child processes of their own so
        # that the API's event loop (and its core) serves requests only; they
        # die with this process (PR_SET_PDEATHSIG), even if it is killed, and
        # are started again when they die without it (ledger.ops.supervisor).
        # With --workers N, N-1 more API processes (ledger.ops.workers) share
        # this one's port; this one is worker 1 and shows them all on /healthz.
        await _prepare_once(live, workers)  # before the children, which need the schema
        from ledger.ops.bootstrap import supervisor_health
        from ledger.ops.supervisor import Supervisor
        from ledger.ops.workers import pool_share, reserve_port, worker_specs

        children = [_part("relay", live), _part("project", live)]
        reservation = None
        if workers > 1:
            reservation = reserve_port(live.host, live.port)
            share = pool_share(live.db_pool_size_max, workers)
            live = replace(live, port=reservation.getsockname()[1], db_pool_size_max=share)
            children += worker_specs(live, live.port, range(2, workers + 1), share,
                                     _die_with_parent)  # fmt: skip
        supervisor = Supervisor(children)
        await supervisor.start()
        try:
            await _run_service(
                live, http=True, relay=False, projections=False, announce_key=workers == 1,
                extra=[supervisor_health(supervisor)], worker_index=1 if workers > 1 else None,
            )  # fmt: skip
        finally:
            await supervisor.stop()
            if reservation is not None:
                reservation.close()
    return 0


async def _prepare_once(settings: Settings, workers: int) -> None:
    """What the processes of a service would race to do at start-up, done once
    before they start: the schema; with more than one API process, also the
    projection tables and the admin key file (announced here, once)."""
    pool = await connect(settings, pool_size_max=2)
    try:
        await migrated_store(pool)
        if workers > 1:
            from ledger.ops import bootstrap as wiring

            await wiring.prepare(settings, pool)
            key_path = settings.data_dir / "admin.key"
            admin_key = admin_key_for(settings)
            shown = settings.data_dir / "admin.key.shown"
            if not settings.admin_key and not shown.exists():
                log.info("admin key (kept in %s): %s", key_path, admin_key)
                shown.touch()
    finally:
        await pool.close()


async def _serve_workers(settings: Settings, workers: int) -> int:
    """``serve --workers N``: N ``serve`` processes on one port, supervised; this
    process serves nothing itself and stops them all on SIGINT/SIGTERM."""
    from ledger.ops.supervisor import Supervisor
    from ledger.ops.workers import pool_share, reserve_port, worker_specs

    await _prepare_once(settings, workers)
    reservation = reserve_port(settings.host, settings.port)
    try:
        port = reservation.getsockname()[1]
        share = pool_share(settings.db_pool_size_max, workers)
        supervisor = Supervisor(
            worker_specs(settings, port, range(1, workers + 1), share, _die_with_parent)
        )
        await supervisor.start()
        log.info(
            "serving the API on http://%s:%s with %d worker processes (pool of %d each)",
            settings.host, port, workers, share,
        )  # fmt: skip
        try:
            await _until_signalled()
            log.info("stopping")
        finally:
            await supervisor.stop()
    finally:
        reservation.close()
    log.info("stopped")
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
    if (args.workers or 1) > 1:
        return await _serve_workers(settings, args.workers)
    await _run_service(
        settings, http=True, relay=False, projections=False, announce_key=False,
        worker_index=args.worker_index,
    )  # fmt: skip
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
