"""``serve()``: the app on a socket, with the connection limits aiohttp lacks."""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import time
from dataclasses import dataclass
from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server
from prometheus_client import Counter

from ledger.api.context import METRICS as _METRICS
from ledger.api.responses import json_response
from ledger.ops.settings import Settings

__all__ = ["serve", "tune_collector"]

log = logging.getLogger("omniledger.http")

# -- connection limits -----------------------------------------------------------------------
#
# aiohttp limits how long an idle keep-alive connection lives, but not how long
# a client may take to send a request head, and it accepts connections without
# bound. A few thousand sockets that open and trickle bytes would hold the
# process's file descriptors forever. Three limits, all from Settings:
# - the head (request line and headers) is due within http_header_timeout_s of
#   the connection opening or of the head's first byte, else the connection is
#   closed (a timer per connection, armed in data_received);
# - a body is due within http_body_timeout_s of its head, else 408 (the
#   _read_body middleware reads every body under that deadline);
# - past http_connections_max open connections, the oldest one waiting for a
#   request (idle or still sending its head) is closed to admit the new one;
#   with none waiting, the new one is answered 503 and closed.
# Idle keep-alive connections close after http_keepalive_timeout_s (aiohttp's).

#: After a 408 or 413, how long the unread rest of a body is drained before
#: the socket closes (so the client can read the answer rather than get a reset).
_LINGER_S: Final = 2.0
#: File descriptors kept for the database pool, NATS, logs and the listening socket.
_DESCRIPTORS_SPARE: Final = 100
#: The cyclic collector's thresholds once serving (CPython's are 700, 10, 10).
#: A batch in flight keeps tens of thousands of young objects alive (units,
#: rows, answers); with the default, the collector traversed them again and
#: again: 25-40 us of CPU per event, a third of the write path's (issue 12,
#: loadtests/writepath.py). Garbage without cycles is freed at once whatever
#: these are; cyclic garbage waits for 50,000 allocations instead of 700.
_COLLECTOR_THRESHOLDS: Final = (50_000, 20, 20)
_REFUSAL_BODY: Final = orjson.dumps(
    {"error": {"code": "unavailable", "message": "too many open connections; retry later"}}
)
#: Written raw to a connection refused at the cap: no request was read to answer.
_REFUSAL: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_REFUSAL_BODY), _REFUSAL_BODY)
)


class _LogBudget:
    """At most ``lines_max`` lines per ``window_s`` about clients' misbehaviour
    (timeouts, shed connections, malformed HTTP): anyone can cause those, and
    the log must not become theirs. What is held back is counted in the next line."""

    def __init__(self, lines_max: int = 10, window_s: float = 10.0) -> None:
        self._lines_max = lines_max
        self._window_s = window_s
        self._window_started = -window_s
        self._lines = 0
        self._held = 0

    def info(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._window_started >= self._window_s:
            if self._held:
                log.info("%d more such lines were held back in %.0f s", self._held, self._window_s)
            self._window_started, self._lines, self._held = now, 0, 0
        if self._lines < self._lines_max:
            self._lines += 1
            log.info(message, *args)
        else:
            self._held += 1


@dataclass(frozen=True, slots=True)
class _Limits:
    header_timeout_s: float
    connections_max: int
    budget: _LogBudget
    closed: Counter


class _GuardedHandler(RequestHandler):
    """aiohttp's connection protocol plus the head deadline, the cap and quiet
    answers to malformed HTTP."""

    def __init__(self, manager: Server, *, limits: _Limits, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._head_timer: asyncio.TimerHandle | None = None
        self._body: Any = None  # the payload of the last request head read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        manager = self._manager
        if isinstance(manager, _GuardedServer) and not manager.admit(self):
            return
        self._arm_head_timer()  # the first request's head is due from the start

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        heads = self._request_count
        in_body = self._body is not None and not self._body.is_eof()
        super().data_received(data)
        if self._request_count != heads:  # a head was read (or refused)
            self._disarm_head_timer()
            self._body = self._messages[-1][1] if self._messages else None
        elif data and not in_body and self._head_timer is None:
            self._arm_head_timer()  # the first bytes of a head

    @property
    def waiting_for_request(self) -> bool:
        """Idle, or still receiving a head: nothing of ours would be lost by closing."""
        waiter = self._waiter
        return (
            self.transport is not None
            and waiter is not None
            and not waiter.done()
            and not self._messages
        )

    def shed(self, reason: str) -> None:
        self._limits.closed.labels(reason).inc()
        self.force_close()

    def refuse(self) -> None:
        self._limits.closed.labels("refused").inc()
        if self.transport is not None:
            self.transport.write(_REFUSAL)  # close() sends what is buffered first
        self.force_close()

    def _arm_head_timer(self) -> None:
        if self.transport is not None and not self._force_close:
            self._head_timer = self._loop.call_later(
                self._limits.header_timeout_s, self._head_overdue
            )

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_overdue(self) -> None:
        self._head_timer = None
        if self._request_in_progress:
            # a pipelined head behind a request still being answered: judged after it
            self._arm_head_timer()
            return
        self._limits.budget.info(
            "closed a connection from %s: no complete request head within %s s",
            self.peername,
            self._limits.header_timeout_s,
        )
        self.shed("header_timeout")

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        # a request aiohttp's parser refused: the client's fault, one line, no traceback
        what = (message or "").strip().splitlines()
        self._limits.budget.info(
            "%d to %s: malformed HTTP (%s: %.80r)",
            status,
            self.peername,
            type(exc).__name__,
            what[0] if what else "",
        )
        self._limits.closed.labels("malformed").inc()
        response = json_response(
            {"error": {"code": "bad_request", "message": "malformed HTTP request"}}, status
        )
        response.force_close()
        return response


class _GuardedServer(Server):
    """aiohttp's ``Server`` making ``_GuardedHandler``s and holding the cap."""

    def __init__(self, *args: Any, limits: _Limits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits

    def __call__(self) -> RequestHandler:
        return _GuardedHandler(self, loop=self._loop, limits=self.limits, **self._kwargs)

    def admit(self, new: _GuardedHandler) -> bool:
        """Whether ``new`` stays open; past the cap an older waiting one makes room."""
        limits = self.limits
        if len(self._connections) <= limits.connections_max:
            return True
        # closed ones stay listed until their task ends: count the open ones
        open_now = sum(1 for handler in self._connections if handler.transport is not None)
        if open_now <= limits.connections_max:
            return True
        for handler in self._connections:  # oldest first (insertion order)
            if handler is not new and isinstance(handler, _GuardedHandler):
                if handler.waiting_for_request:
                    limits.budget.info(
                        "%d connections open (the cap): closed a waiting one from %s",
                        limits.connections_max,
                        handler.peername,
                    )
                    handler.shed("cap")
                    return True
        limits.budget.info(
            "%d connections open (the cap), none waiting: refused %s",
            limits.connections_max,
            new.peername,
        )
        new.refuse()
        return False


class _GuardedRunner(web.AppRunner):
    def __init__(self, app: web.Application, limits: _Limits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits

    async def _make_server(self) -> Server:
        made = await super()._make_server()
        # the same server aiohttp made, of the class that makes guarded handlers
        return _GuardedServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            limits=self._limits,
            **made._kwargs,
        )


def _connections_possible(wanted: int) -> int:
    """The cap must bite before the process runs out of file descriptors (then
    accept() fails and the database pool cannot open a socket either): the soft
    open-file limit is raised toward the hard one as far as the cap needs, and
    the cap lowered, with a warning, if that is not enough."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + _DESCRIPTORS_SPARE
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted
    possible = max(soft - _DESCRIPTORS_SPARE, 1)
    log.warning(
        "OMNILEDGER_HTTP_CONNECTIONS_MAX=%d does not fit the open-file limit (%d): "
        "serving at most %d connections; raise `ulimit -n` for more",
        wanted,
        soft,
        possible,
    )
    return possible


def tune_collector() -> None:
    """Once started: what exists now (modules, the app) is moved out of the
    collector's sight (``gc.freeze``), and it runs less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_COLLECTOR_THRESHOLDS)


async def serve(
    app: web.Application,
    settings: Settings,
    host: str,
    port: int,
    *,
    backlog: int = 1024,
    reuse_port: bool = False,
) -> web.AppRunner:
    """Starts ``app`` on ``host:port`` with the connection limits of ``settings``;
    the caller cleans the returned runner up (``runner.addresses`` has the port).
    ``reuse_port``: SO_REUSEPORT, so that ``--workers`` processes share the port
    and the kernel spreads new connections over them."""
    limits = _Limits(
        header_timeout_s=settings.http_header_timeout_s,
        connections_max=_connections_possible(settings.http_connections_max),
        budget=_LogBudget(),
        closed=app[_METRICS].connections_closed,
    )
    runner = _GuardedRunner(
        app,
        limits,
        access_log=None,
        handle_signals=False,
        keepalive_timeout=settings.http_keepalive_timeout_s,
        lingering_time=_LINGER_S,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=backlog, reuse_port=reuse_port)
    await site.start()
    tune_collector()
    return runner
