"""The middlewares every request passes: errors to answers, and the body's deadline.

Bad input is a 4xx, never a 500; an unreachable database is a 503 with
``Retry-After``; anything else is a 500 that logs the traceback and leaks
nothing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import asyncpg
from aiohttp import web

from ledger.api.context import METRICS as _METRICS
from ledger.api.context import SETTINGS, Metrics
from ledger.api.responses import error_response, json_response
from ledger.app.ledger import DB_ERRORS
from ledger.domain.errors import LedgerError, PayloadTooLarge, Unavailable

__all__ = ["CLIENT_CLOSED", "answer_errors", "read_body_in_time"]

log = logging.getLogger("omniledger.http")

#: The status a client that hung up mid-request is counted under (nginx's 499):
#: not a 5xx, which would page someone about the database.
CLIENT_CLOSED: Final = 499
#: (route, status) series kept looked up; routes are the app's, statuses few
_SERIES_CACHED_MAX: Final = 1024


@web.middleware
async def answer_errors(
    request: web.Request, handler: Callable[..., Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    metrics: Metrics = request.app[_METRICS]
    started = time.perf_counter()
    route = (
        request.match_info.route.resource.canonical
        if request.match_info.route.resource
        else "unmatched"
    )
    try:
        response = await handler(request)
    except LedgerError as e:
        response = error_response(e)
    except _BodyOverdue as e:
        response = _slow_body(request, e.timeout_s)
    except _ClientClosed:
        # not the database, and no one to answer: counted as 499, not a 503
        log.debug("client closed the connection during %s %s", request.method, request.path)
        response = web.Response(status=CLIENT_CLOSED)
    except web.HTTPRequestEntityTooLarge:
        response = error_response(PayloadTooLarge("the body is larger than 1 MiB"))
    except web.HTTPException as e:
        if e.status >= 400:
            code = {404: "not_found", 405: "method_not_allowed"}.get(e.status, "http_error")
            allow = {"Allow": e.headers["Allow"]} if "Allow" in e.headers else None
            response = json_response(
                {"error": {"code": code, "message": e.reason}}, e.status, allow
            )
        else:
            raise
    except (*DB_ERRORS, asyncpg.PostgresError) as e:
        if isinstance(e, asyncpg.PostgresError) and not isinstance(
            e, asyncpg.PostgresConnectionError | asyncpg.CannotConnectNowError
        ):
            log.exception("database error on %s %s", request.method, request.path)
        else:
            log.warning("database unavailable on %s %s: %s", request.method, request.path, e)
        response = error_response(Unavailable("the database is unavailable; retry later"))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        response = json_response(
            {"error": {"code": "internal_error", "message": "internal error"}}, 500
        )
    count, latency = _series(metrics, route, response.status)
    count.inc()
    latency.observe(time.perf_counter() - started)
    return response


@functools.lru_cache(maxsize=_SERIES_CACHED_MAX)
def _series(metrics: Metrics, route: str, status: int) -> tuple[Any, Any]:
    """The request counter and latency histogram of one route and status: looked
    up by label once, not on every request (the client's labels() takes a lock
    and validates its arguments each time)."""
    return metrics.requests.labels(route, str(status)), metrics.latency.labels(route)


class _BodyOverdue(Exception):
    def __init__(self, timeout_s: float) -> None:
        super().__init__(timeout_s)
        self.timeout_s = timeout_s


class _ClientClosed(Exception):
    """The client hung up while its request body was being read."""


@web.middleware
async def read_body_in_time(
    request: web.Request, handler: Callable[..., Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Reads every body whole within ``http_body_timeout_s`` of its head, once
    the caller is authenticated; the handlers' ``request.read()`` then returns
    these bytes at once. A client that hangs up meanwhile (aiohttp hands the
    reader a ``ConnectionResetError``, an ``OSError`` like the database's) is
    told apart here, where nothing else can raise it."""
    if request.body_exists:
        timeout_s = request.app[SETTINGS].http_body_timeout_s
        try:
            if request.content.is_eof():
                # The body came whole with its head (most do): nothing to wait
                # for, so no deadline to arm and cancel.
                await request.read()
            else:
                async with asyncio.timeout(timeout_s):
                    await request.read()
        except TimeoutError:
            raise _BodyOverdue(timeout_s) from None
        except ConnectionError:
            raise _ClientClosed from None
    return await handler(request)


def _slow_body(request: web.Request, body_timeout_s: float) -> web.Response:
    log.info(
        "408 to %s: the body of %s %s did not arrive within %s s",
        request.remote,
        request.method,
        request.path[:100],
        body_timeout_s,
    )
    response = json_response(
        {
            "error": {
                "code": "request_timeout",
                "message": f"the body did not arrive within {body_timeout_s} s",
            }
        },
        408,
    )
    response.force_close()  # the rest of the body is not waited for
    return response
