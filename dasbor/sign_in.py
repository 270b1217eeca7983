"""Sign-in with an API key, and sign-out.

The key is checked as the API checks a bearer key (its SHA-256 looked up in
the key table); only seller, admin and auditor keys have pages. The key
itself is never kept: the session row holds its hash.
"""

from __future__ import annotations

import secrets
from typing import Final
from urllib.parse import quote

from aiohttp import web

from dasbor.i18n import translate
from dasbor.pages import LANG, SESSIONS, USER, User, render
from dasbor.sessions import LOGIN_CSRF_COOKIE, SESSION_COOKIE, set_cookie
from ledger.api.auth import hash_key
from ledger.api.http import STORE

__all__ = ["PAGE_ROLES", "form", "sign_out", "submit"]

#: the roles that have pages; gateway and payouts keys are for machines
PAGE_ROLES: Final = frozenset({"seller", "admin", "auditor"})
_KEY_CHARS_MAX: Final = 200
#: the sign-in form's own CSRF cookie lives as long as a form is left open
_LOGIN_CSRF_S: Final = 3600


def _next(request: web.Request, value: object) -> str:
    back = value if isinstance(value, str) else ""
    # only a path of ours: a sign-in link must not send the user to another site
    if back.startswith("/dasbor/") and not back.startswith("//") and "\\" not in back:
        return back
    return "/dasbor/"


async def form(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = render(
        request,
        "sign_in.html",
        {
            "login_csrf": token,
            "next": _next(request, request.query.get("next")),
            "error": error,
        },
        status,
    )
    set_cookie(request, response, LOGIN_CSRF_COOKIE, token, _LOGIN_CSRF_S)
    return response


async def submit(request: web.Request) -> web.StreamResponse:
    lang = request[LANG]
    data = await request.post()
    key = data.get("key")
    if not isinstance(key, str) or not 0 < len(key.strip()) <= _KEY_CHARS_MAX:
        return await form(request, translate(lang, "Kunci tidak dikenal."), 401)
    digest = hash_key(key.strip())
    row = await request.config_dict[STORE].find_key(digest)
    if row is None:
        return await form(request, translate(lang, "Kunci tidak dikenal."), 401)
    if row[0] not in PAGE_ROLES:
        return await form(request, translate(lang, "Kunci ini tidak punya halaman dasbor."), 403)
    sessions = request.app[SESSIONS]
    old = request.get(USER)
    if isinstance(old, User):
        await sessions.close(old.token)  # a new sign-in replaces the session (no fixation)
    token, _ = await sessions.open(digest)
    back = _next(request, data.get("next"))
    if back == "/dasbor/" and row[0] == "seller" and row[1]:
        back = f"/dasbor/penjual/{quote(row[1])}"
    response = web.HTTPSeeOther(back)
    set_cookie(request, response, SESSION_COOKIE, token, sessions.ttl_s)
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/dasbor/")
    raise response


async def sign_out(request: web.Request) -> web.StreamResponse:
    user = request.get(USER)
    if isinstance(user, User):
        await request.app[SESSIONS].close(user.token)
    response = web.HTTPSeeOther("/dasbor/masuk")
    response.del_cookie(SESSION_COOKIE, path="/dasbor/")
    raise response
