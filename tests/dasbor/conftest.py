"""The dasbor's pages on the app as ``up`` builds it, against this session's real database.

``Browser`` (plain HTTP) signs in the way a browser does: it reads the sign-in
form's CSRF token, keeps its own cookies (one jar per user, so two users do
not share a session), and follows nothing by itself, so the tests see every
redirect and status.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ledger.api.http import create_app
from ledger.app.ledger import Ledger
from ledger.ops import bootstrap
from ledger.ops.settings import Settings
from ledger.store import LedgerStore
from tests.api import conftest as api_fixtures
from tests.api.conftest import Api

# the session's database, store, ledger and admin key, shared with tests/api
pool = api_fixtures.pool
store = api_fixtures.store
settings = api_fixtures.settings
ledger = api_fixtures.ledger
admin = api_fixtures.admin
uid = api_fixtures.uid
ADMIN_KEY = api_fixtures.ADMIN_KEY

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


class Browser:
    """One user's cookie jar against the app; answers are ``(status, headers, text)``."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def get(self, path: str, **kw: Any) -> tuple[int, Any, str]:
        async with self.session.get(self.base + path, allow_redirects=False, **kw) as r:
            return r.status, r.headers, await r.text()

    async def post(self, path: str, form: dict[str, str]) -> tuple[int, Any, str]:
        async with self.session.post(self.base + path, data=form, allow_redirects=False) as r:
            return r.status, r.headers, await r.text()

    async def sign_in(self, key: str) -> tuple[int, Any, str]:
        status, _, html = await self.get("/dasbor/masuk")
        assert status == 200, html
        return await self.post("/dasbor/masuk", {"csrf": csrf_of(html), "key": key})

    async def close(self) -> None:
        await self.session.close()


@pytest.fixture(scope="session")
async def pages(
    settings: Settings, ledger: Ledger, store: LedgerStore, pool: asyncpg.Pool
) -> AsyncIterator[TestClient]:
    """The app with every extension ``up`` adds (the pages among them)."""
    await bootstrap.prepare(settings, pool)
    app = create_app(settings, ledger, store, extensions=bootstrap.extensions(settings, pool))
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
async def browsers(pages: TestClient) -> AsyncIterator[Any]:
    made: list[Browser] = []

    def new() -> Browser:
        b = Browser(str(pages.make_url("")).rstrip("/"))
        made.append(b)
        return b

    yield new
    for b in made:
        await b.close()


@pytest.fixture
def api(pages: TestClient, admin: dict[str, str]) -> Api:
    return Api(pages, admin)
