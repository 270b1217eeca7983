"""How long each dasbor page takes on the server with real volume (issue 14, point 7).

    python -m loadtests.dasbor_pages --database-url postgresql://postgres@127.0.0.1:5432/NAME \
        [--seed] [--requests 20] [--write]

``--seed`` first fills the database with ``loadtests.dasbor_seed`` (2,000
sellers, read-model rows of 1,000,000 events). The app is built as ``up``
builds it (every extension, the pages among them) and served on a free port
in this process; each page is signed in to as a browser would (a seller key
for the seller's pages, the admin key for the city's) and requested
``--requests`` times one after another, after two warm-up requests. The
figure is the server's own time, from the ``Server-Timing`` header the pages
send (session look-up to rendered HTML), so the client's share is not in it;
the client's wall time is reported beside it. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import re
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aiohttp
import asyncpg
from aiohttp import web

from ledger.api.auth import hash_key
from ledger.api.http import create_app
from ledger.app.ledger import Ledger
from ledger.ops import bootstrap
from ledger.ops.settings import Settings

__all__ = ["main"]

#: what the issue asks of every page
BUDGET_MS: Final = 300.0
_TIMING: Final = re.compile(r"page;dur=([0-9.]+)")
_CSRF: Final = re.compile(r'name="csrf" value="([^"]+)"')
_SECTION: Final = "## issue 14: dasbor page render times"


def _pages(seller_id: str, district: str) -> list[tuple[str, str, str]]:
    """``(who, name, path)`` of every page measured."""
    s = f"/dasbor/penjual/{seller_id}"
    return [
        ("seller", "seller: balance + 30-day recap", s),
        ("seller", "seller: orders + form", f"{s}/pesanan"),
        ("seller", "seller: payouts", f"{s}/pencairan"),
        ("seller", "seller: recap CSV", f"{s}/rekap.csv"),
        ("admin", "city recap, 30 days", "/dasbor/kota"),
        ("admin", "city recap, 92 days", "/dasbor/kota?from=2026-09-01&to=2026-12-01"),
        ("admin", "city recap CSV, 30 days", "/dasbor/kota.csv"),
        ("admin", "registry, all", "/dasbor/registri"),
        ("admin", "registry, district + lacks halal",
         f"/dasbor/registri?district={district}&lacking=halal"),
        ("admin", "curation form", f"/dasbor/registri/{seller_id}/kurasi"),
        ("admin", "suspense queue", "/dasbor/suspense"),
        ("admin", "ledger state", "/dasbor/ledger"),
    ]  # fmt: skip


async def _sign_in(base: str, key: str) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.get(f"{base}/dasbor/masuk") as r:
        found = _CSRF.search(await r.text())
    assert found, "no sign-in form"
    form = {"csrf": found.group(1), "key": key}
    async with session.post(f"{base}/dasbor/masuk", data=form, allow_redirects=False) as r:
        assert r.status == 303, await r.text()
    return session


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _measure(
    session: aiohttp.ClientSession, url: str, requests: int
) -> dict[str, float | int]:
    server: list[float] = []
    wall: list[float] = []
    size = 0
    for i in range(requests + 2):
        started = time.perf_counter()
        async with session.get(url, allow_redirects=False) as r:
            body = await r.read()
            assert r.status == 200, (url, r.status, body[:300])
            timing = _TIMING.search(r.headers.get("Server-Timing", ""))
        if i < 2:
            continue  # warm-up: templates compiled, statements prepared
        assert timing, f"{url}: no Server-Timing header"
        server.append(float(timing.group(1)))
        wall.append((time.perf_counter() - started) * 1000)
        size = len(body)
    return {
        "median_ms": statistics.median(server),
        "p95_ms": _percentile(server, 0.95),
        "max_ms": max(server),
        "wall_median_ms": statistics.median(wall),
        "bytes": size,
    }


async def _volume(pool: asyncpg.Pool) -> dict[str, Any]:
    head = await pool.fetchval("SELECT position FROM ledger_head")
    sellers = await pool.fetchval("SELECT count(*) FROM proj_balances")
    busiest = await pool.fetchrow(
        "SELECT seller_id, count(*) AS n FROM proj_seller_daily"
        " GROUP BY seller_id ORDER BY n DESC LIMIT 1"
    )
    district = await pool.fetchval(
        "SELECT district FROM proj_city_district_daily WHERE district <> ''"
        " GROUP BY district ORDER BY count(*) DESC LIMIT 1"
    )
    positions = await pool.fetch("SELECT name, position FROM projection_positions ORDER BY name")
    return {
        "head": head,
        "sellers": sellers,
        "seller_id": busiest["seller_id"] if busiest else None,
        "seller_recap_rows": busiest["n"] if busiest else 0,
        "district": district or "Tamalate",
        "models": {r["name"]: r["position"] for r in positions},
    }


async def run(database_url: str, requests: int, seed: bool) -> dict[str, Any]:
    settings = Settings(database_url=database_url, port=0)
    pool = await bootstrap.connect(settings)
    try:
        store = await bootstrap.migrated_store(pool)
        await bootstrap.prepare(settings, pool)
        if seed:
            from loadtests import dasbor_seed

            await dasbor_seed.seed(pool)
        volume = await _volume(pool)
        if volume["seller_id"] is None:
            raise SystemExit("no seller with recaps in this database: run with --seed")
        admin_key, seller_key = (
            "olk_" + secrets.token_urlsafe(24),
            "olk_" + secrets.token_urlsafe(24),
        )
        await store.add_key(hash_key(admin_key), "admin", None)
        await store.add_key(hash_key(seller_key), "seller", volume["seller_id"])
        ledger = Ledger(store)
        ledger.start()
        # the seed writes read models only: the measured seller is registered in
        # the log too, so that the curation form (which reads the seller's own
        # events) has one to show; the same fingerprint makes a re-run a duplicate
        await ledger.register_seller(
            seller_id=volume["seller_id"], name=f"Toko {volume['seller_id']}",
            district=volume["district"], nib=None, channels={},
            occurred_at=datetime.now(UTC).isoformat(), fingerprint=b"dasbor_pages",
        )  # fmt: skip
        app = create_app(settings, ledger, store, extensions=bootstrap.extensions(settings, pool))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        base = f"http://127.0.0.1:{port}"
        sessions = {"seller": await _sign_in(base, seller_key),
                    "admin": await _sign_in(base, admin_key)}  # fmt: skip
        results = []
        try:
            for who, name, path in _pages(volume["seller_id"], volume["district"]):
                figures = await _measure(sessions[who], base + path, requests)
                results.append({"page": name, "path": path, **figures})
                print(f"{name:<36} median {figures['median_ms']:7.1f} ms"
                      f"  p95 {figures['p95_ms']:7.1f} ms", file=sys.stderr)  # fmt: skip
        finally:
            for s in sessions.values():
                await s.close()
            await runner.cleanup()
            await ledger.stop()
        return {"volume": volume, "requests": requests, "pages": results}
    finally:
        await pool.close()


def report(result: dict[str, Any], command: str) -> str:
    v = result["volume"]
    lines = [
        _SECTION,
        "",
        f"`{command}` on {datetime.now(UTC):%Y-%m-%d}, {platform.processor() or platform.machine()}"
        f", 2 cores shared with other jobs, CPython {platform.python_version()}; the service"
        " in-process on a free port. Server time from each page's `Server-Timing` header"
        f" (session look-up to rendered HTML), {result['requests']} requests per page after"
        " 2 warm-up requests, one at a time.",
        "",
        "The database was filled once by `python -m loadtests.dasbor_seed --database-url ...`"
        " (or `--seed` here): 2,000 sellers and the read-model rows of 1,000,000 events"
        " (480,000 orders over 180 days), made inside PostgreSQL; the log holds only the"
        " measured seller's registration.",
        "",
        f"Volume: log head {v['head']:,}; {v['sellers']:,} sellers in the balances model;"
        f" the seller measured has {v['seller_recap_rows']:,} recap rows; district"
        f" {v['district']}. Every page must render in under {BUDGET_MS:.0f} ms.",
        "",
        "| page | median ms | p95 ms | max ms | client wall median ms | bytes | < 300 ms |",
        "|---|--:|--:|--:|--:|--:|---|",
    ]
    for p in result["pages"]:
        ok = "yes" if p["p95_ms"] < BUDGET_MS else "NO"
        lines.append(
            f"| {p['page']} | {p['median_ms']:.1f} | {p['p95_ms']:.1f} | {p['max_ms']:.1f}"
            f" | {p['wall_median_ms']:.1f} | {p['bytes']:,} | {ok} |"
        )
    return "\n".join(lines) + "\n"


def _write(section: str, path: Path) -> None:
    text = path.read_text()
    start = text.find(_SECTION)
    if start >= 0:
        end = text.find("\n## ", start + len(_SECTION))
        text = text[:start] + section + ("" if end < 0 else text[end:])
    else:
        marker = text.find("\n## ")
        text = text[: marker + 1] + section + "\n" + text[marker + 1 :]
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.dasbor_pages", description=__doc__)
    p.add_argument("--database-url", required=True)
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--seed", action="store_true", help="fill the database first (dasbor_seed)")
    p.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    args = p.parse_args(argv)
    if not 1 <= args.requests <= 1000:
        p.error("--requests must be 1 to 1000")
    result = asyncio.run(run(args.database_url, args.requests, args.seed))
    command = "python -m loadtests.dasbor_pages --database-url ... " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:]) if a.startswith("--r")
        or a.isdigit() or a == "--seed"
    )  # fmt: skip
    section = report(result, command.strip())
    print(section)
    if args.write:
        _write(section, Path(__file__).resolve().parents[1] / "BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
