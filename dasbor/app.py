"""The pages' sub-application, mounted under ``/dasbor/`` on the API's app.

``DasborPages`` is an extension like the projections' routes
(``ledger/ops/bootstrap.py`` adds it), so the pages run in the same process,
on the same port, with the same settings, ledger and store. Templates and
static assets (the CSS, the vendored chart library) ship inside this package:
nothing is loaded from another site.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import aiohttp_jinja2
import asyncpg
import jinja2
from aiohttp import web

from dasbor import city_pages, incubator_pages, seller_pages, sign_in
from dasbor.i18n import money
from dasbor.pages import POOL, SESSIONS, USER, User, guard
from dasbor.sessions import SessionStore
from ledger.api.http import SETTINGS

__all__ = ["DasborPages"]

_STATIC: Final = Path(__file__).parent / "static"


async def index(request: web.Request) -> web.StreamResponse:
    user = request.get(USER)
    if not isinstance(user, User):
        raise web.HTTPSeeOther("/dasbor/masuk")
    if user.principal.role == "seller" and user.principal.seller_id:
        raise web.HTTPSeeOther(f"/dasbor/penjual/{quote(user.principal.seller_id)}")
    raise web.HTTPSeeOther("/dasbor/kota")


async def switch_language(request: web.Request) -> web.StreamResponse:
    lang = request.match_info["lang"]
    if lang not in ("id", "en"):
        raise web.HTTPNotFound()
    back = request.query.get("next", "/dasbor/")
    if not back.startswith("/dasbor/") or back.startswith("//"):
        back = "/dasbor/"  # never a redirect off the site
    response = web.HTTPSeeOther(back)
    response.set_cookie(
        "lang", lang, max_age=365 * 86400, path="/dasbor/", samesite="Strict", secure=request.secure
    )
    raise response


def build(pool: asyncpg.Pool, ttl_s: int) -> web.Application:
    sub = web.Application(middlewares=[guard])
    sub[POOL] = pool
    sub[SESSIONS] = SessionStore(pool, ttl_s)
    aiohttp_jinja2.setup(
        sub,
        loader=jinja2.PackageLoader("dasbor", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        filters={"money": money},
        undefined=jinja2.StrictUndefined,
    )

    async def schema(_: web.Application) -> Any:
        await sub[SESSIONS].ensure_schema()
        yield

    sub.cleanup_ctx.append(schema)
    r = sub.router
    r.add_get("/", index)
    r.add_get("/bahasa/{lang}", switch_language)
    r.add_get("/masuk", sign_in.form)
    r.add_post("/masuk", sign_in.submit)
    r.add_post("/keluar", sign_in.sign_out)
    seller_pages.add_routes(r)
    city_pages.add_routes(r)
    incubator_pages.add_routes(r)
    r.add_static("/static/", _STATIC, name="static")
    return sub


class DasborPages:
    """The extension that mounts the pages on the API's app (``ledger/ops/bootstrap.py``)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    def setup(self, app: web.Application) -> None:
        app.add_subapp("/dasbor/", build(self._pool, app[SETTINGS].dasbor_session_ttl_s))
