"""Page plumbing shared by the handlers: the caller, roles, CSRF, language, errors.

The API's middlewares run first (its bearer-key check passes these routes by:
they carry no ``@require``); then ``guard`` here: the session cookie gives the
caller, every handler marked ``@page(roles)`` is refused to anyone else, and
every POST must carry the form's CSRF token. Roles are checked here, on the
server, for every page and form, never only by hiding a menu entry.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import quote

import aiohttp_jinja2
import asyncpg
from aiohttp import web

from dasbor.i18n import STATUS_WORDS, choose_language, local_time, translate
from dasbor.sessions import LOGIN_CSRF_COOKIE, SESSION_COOKIE, SessionStore, same_token
from ledger.api.http import SETTINGS, STORE, Principal
from ledger.api.responses import status_for
from ledger.domain.errors import LedgerError

__all__ = [
    "LANG",
    "POOL",
    "SESSIONS",
    "USER",
    "User",
    "error_page",
    "guard",
    "page",
    "page_context",
    "render",
    "user_of",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Callable[..., Awaitable[web.StreamResponse]])

#: the read models' pool (the projections' database)
POOL: Final = web.AppKey("dasbor_pool", asyncpg.Pool)
SESSIONS: Final = web.AppKey("dasbor_sessions", SessionStore)


@dataclass(frozen=True, slots=True)
class User:
    """Who is signed in: the API key's principal, and the CSRF token of the session's forms."""

    principal: Principal
    csrf: str
    token: str


USER: Final = web.RequestKey("dasbor_user", object)
LANG: Final = web.RequestKey("dasbor_lang", str)
#: part of every static file's URL: bump it when a file under static/ changes, so
#: browsers holding the old one fetch the new (the library's version is in its path)
_ASSET_VERSION: Final = "4"

#: no inline script or style, nothing from another origin: the chart library is ours
_CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def page(*roles: str) -> Callable[[H], H]:
    """Marks a handler with the roles that may open it (checked by ``guard``)."""

    def mark(handler: H) -> H:
        handler.dasbor_roles = frozenset(roles)  # type: ignore[attr-defined]
        return handler

    return mark


def user_of(request: web.Request) -> User:
    found = request.get(USER)
    assert isinstance(found, User), "a @page handler runs only for a signed-in user"
    return found


def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    # the shared context is merged here, not by aiohttp_jinja2's context-processor
    # middleware: that one keeps its state under a plain string key on the
    # request, which aiohttp warns about on every request
    return aiohttp_jinja2.render_template(
        template, request, {**page_context(request), **context}, status=status
    )


def error_page(request: web.Request, status: int, message: str) -> web.Response:
    return render(request, "error.html", {"status": status, "message": message}, status)


async def _current_user(request: web.Request) -> User | None:
    token = request.cookies.get(SESSION_COOKIE)
    session = await request.app[SESSIONS].find(token)
    if session is None or token is None:
        return None
    row = await request.config_dict[STORE].find_key(session.key_sha256)
    if row is None:  # the key was replaced: its sessions end with it
        return None
    return User(Principal(*row), session.csrf, token)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/dasbor/static/"):
        return await handler(request)  # the CSS and the chart library: no session needed
    if request.path == "/dasbor":
        raise web.HTTPMovedPermanently("/dasbor/")  # the address as typed in the README
    started = time.perf_counter()
    lang = choose_language(request.cookies.get("lang"), request.headers.get("Accept-Language"))
    request[LANG] = lang
    user = await _current_user(request)
    request[USER] = user
    roles = getattr(request.match_info.handler, "dasbor_roles", None)
    if roles is not None:
        if user is None:
            if request.method == "GET":
                raise web.HTTPSeeOther(f"/dasbor/masuk?next={quote(request.path_qs, safe='/')}")
            return error_page(
                request,
                403,
                translate(lang, "Sesi habis atau formulir kedaluwarsa; muat ulang halaman."),
            )
        if user.principal.role not in roles:
            return error_page(
                request, 403, translate(lang, "Anda tidak boleh membuka halaman ini.")
            )
    if request.method == "POST":
        form = await request.post()
        sent = form.get("csrf")
        expected = user.csrf if user is not None else request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not isinstance(sent, str) or not expected or not same_token(sent, expected):
            return error_page(
                request,
                403,
                translate(lang, "Sesi habis atau formulir kedaluwarsa; muat ulang halaman."),
            )
    try:
        response = await handler(request)
    except web.HTTPNotFound:
        response = error_page(request, 404, translate(lang, "Halaman tidak ditemukan."))
    except LedgerError as e:
        response = error_page(request, status_for(e), e.message)
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"  # balances are not for a shared cache
    # the page's time on the server, session look-up to rendered HTML (what
    # loadtests/dasbor_pages.py measures; browsers show it in their developer tools)
    response.headers["Server-Timing"] = f"page;dur={(time.perf_counter() - started) * 1000:.1f}"
    return response


def page_context(request: web.Request) -> dict[str, Any]:
    lang = request.get(LANG, "id")
    user = request.get(USER)
    return {
        "lang": lang,
        "t": lambda text: translate(str(lang), text),
        # a status as words: "paid" -> "Lunas" (or "Paid")
        "status": lambda code: translate(str(lang), STATUS_WORDS.get(str(code), str(code))),
        "when": lambda value: local_time(value, request.config_dict[SETTINGS].zone),
        # counts and positions grouped the Indonesian way: 1.000.000
        "number": lambda n: f"{int(n):,}".replace(",", "."),
        "user": user,
        "csrf": user.csrf if isinstance(user, User) else None,
        "path": request.path_qs,
        "quote": lambda s: quote(str(s), safe=""),
        "asset": lambda name: str(
            request.app.router["static"].url_for(filename=name).with_query(v=_ASSET_VERSION)
        ),
    }
