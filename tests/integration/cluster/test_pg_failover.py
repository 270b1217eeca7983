"""Issue 15, point 2: the PostgreSQL primary dies and its synchronous standby takes over.

A primary and a streaming standby of this module's own (``postgres_pair.py``,
configured by the files ``deploy/postgres/`` ships), ``omniledger up`` given
both in one multi-host URL with ``target_session_attrs=read-write``. Under the
fault suite's bounded load (``tests/integration/faults/scenario.py``) the
primary's postmaster and backends get SIGKILL, the standby is promoted with
``pg_ctl promote`` after ``DETECT_S`` (what a failover manager takes to decide),
and the service must find the new primary by itself, without a restart. Then
everything ``scenario.run`` checks must hold on the new primary: every
acknowledged write in the log exactly once at its position, the stream equal
to the log (no gap, no double), ``omniledger verify`` and
``check-projections`` clean, balances equal to ``replay``.

``python -m tests.integration.cluster.pg_failover_report`` runs this module and
appends its figures to RELIABILITY.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import nats
import nats.js.errors
import orjson
import pytest

from tests.integration.cluster.postgres_pair import PostgresPair
from tests.integration.faults import scenario
from tests.integration.system.conftest import (
    Deployment,
    Http,
    Run,
    Service,
    free_loopback_port,
    run_cli,
)

#: how long the primary is gone before the standby is promoted
DETECT_S = 2.0
#: the service takes writes again within this of the promotion
WRITES_BACK_BOUND_S = 15.0

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
async def pair() -> AsyncIterator[PostgresPair]:
    # not under pytest's basetemp, as in tests/integration/faults/conftest.py: the
    # PostgreSQL account must keep its way to the data folders for the whole run
    root = Path(tempfile.mkdtemp(prefix="ol-pgpair-"))
    p = PostgresPair(root)
    try:
        await p.start()
        yield p
    finally:
        p.stop()
        shutil.rmtree(root, ignore_errors=True)


class _Pg:
    """What ``scenario`` reads of a stack's PostgreSQL: a DSN (the new primary, after)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn


@pytest.fixture(scope="module")
async def names(nats_url: str) -> AsyncIterator[tuple[str, str]]:
    """(stream, subject prefix) of this module's services, on the shared NATS: one pair of
    names for the module, as its services share one database; the stream is deleted at
    the end (its consumers go with it)."""
    tag = uuid.uuid4().hex[:8]
    stream = f"LEDGER_PGF{tag}"
    yield stream, f"pgf{tag}"
    nc = await nats.connect(nats_url)
    try:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


class FailoverStack:
    """The face of ``tests.integration.faults.stack.Stack`` that ``scenario.run`` uses,
    over the pair, the shared NATS (a stream of our own) and one ``omniledger up``."""

    def __init__(
        self,
        pair: PostgresPair,
        nats_url: str,
        names: tuple[str, str],
        root: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.pair = pair
        self.pg = _Pg(pair.url())
        data_dir = root / "omniledger"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.deployment = Deployment(
            dsn=pair.url(),
            nats_url=nats_url,
            stream=names[0],
            prefix=names[1],
            data_dir=data_dir,
            extra_env=extra_env or {},
        )
        self.service = Service(self.deployment, free_loopback_port(), root / "up.log")
        self.session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return self.service.url

    def http(self) -> Http:
        assert self.session is not None
        return Http(self.session, self.url, self.deployment.admin_key, self.service.log)

    async def cli(self, *args: str, timeout_s: float = 60.0) -> Run:
        return await run_cli(self.deployment, *args, timeout_s=timeout_s)

    def children(self) -> dict[str, list[int]]:
        return {}  # only named in scenario's failure messages

    async def heal(self) -> None:
        """Nothing to bring back: the scenario runs once, on a fresh pair."""

    async def open(self) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        await self.service.start(timeout_s=60)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
        await self.service.stop()


@pytest.fixture
async def stack(
    pair: PostgresPair, nats_url: str, names: tuple[str, str], tmp_path: Path
) -> AsyncIterator[FailoverStack]:
    s = FailoverStack(pair, nats_url, names, tmp_path)
    try:
        await s.open()
        yield s
    finally:
        await s.close()


def _record(row: dict[str, Any]) -> None:
    """Beside scenario's own figures, in the file the report command names."""
    path = os.environ.get(scenario.FIGURES_ENV)
    if path:
        with Path(path).open("ab") as f:
            f.write(orjson.dumps(row) + b"\n")


async def _order(http: Http, seller: str, order: str) -> int:
    status, out = await http.post("/v1/events", {
        "idempotency_key": f"k-{order}", "type": "order.placed",
        "occurred_at": "2026-11-30T10:00:00+08:00", "seller_id": seller,
        "order_id": order, "channel": "pos", "amount": "25.00",
    })  # fmt: skip
    assert status == 201, out
    return int(out["position"])


async def test_reads_from_the_standby(
    pair: PostgresPair, nats_url: str, names: tuple[str, str], tmp_path: Path
) -> None:
    """OMNILEDGER_READ_DATABASE_URL: the read endpoints and the auditors' commands read the
    standby and say how far behind it is. Replay paused on the standby shows it: the
    writes are acknowledged (the standby still flushes them) but the reads do not see them
    until replay resumes, and say so."""
    standby = pair.standby.dsn()
    s = FailoverStack(pair, nats_url, names, tmp_path, {"OMNILEDGER_READ_DATABASE_URL": standby})
    await s.open()
    conn = await asyncpg.connect(standby)
    try:
        http = s.http()
        seller = f"rr-{uuid.uuid4().hex[:6]}"
        await http.seller(seller)
        first = await _order(http, seller, f"{seller}-1")
        status, balance = await http.get(f"/v1/sellers/{seller}/balance?min_position={first}")
        assert status == 200 and balance["as_of_position"] >= first, balance
        assert balance["pending"] == "25.00" and 0 <= balance["replica_lag_s"] < 5, balance
        for path in ("/v1/projections", f"/v1/events?after={first - 1}",
                     f"/v1/sellers/{seller}/recaps?from=2026-11-30&to=2026-11-30",
                     "/v1/recaps/daily?date=2026-11-30"):  # fmt: skip
            status, body = await http.get(path)
            assert status == 200 and "replica_lag_s" in body, (path, body)
        status, page = await http.get(f"/v1/events?after={first - 1}")
        assert [e["position"] for e in page["events"]] == [first], page

        await conn.execute("SELECT pg_wal_replay_pause()")
        second = await _order(http, seller, f"{seller}-2")  # acknowledged: flushed on both
        await asyncio.sleep(1.2)  # the lag is cached for 0.5 s
        status, page = await http.get(f"/v1/events?after={first - 1}")
        assert status == 200, page
        assert [e["position"] for e in page["events"]] == [first], "read from the primary?"
        assert page["replica_lag_s"] >= 1.0, page
        # a reader who asks for its own write waits for the standby, then 503: never stale
        status, body = await http.get(f"/v1/sellers/{seller}/balance?min_position={second}")
        assert status == 503, body
        export = await s.cli("export", "--after", str(first - 1))
        assert export.rc == 0, export
        assert [orjson.loads(x)["position"] for x in export.out.splitlines()] == [first], export
        line = next(x for x in export.err.splitlines() if "read database" in x)
        assert f"127.0.0.1:{pair.standby.port}/omniledger" in line, line
        assert "a standby, replay lag" in line and pair.password not in line, line
        lag_s = float(line.split("replay lag ")[1].split(" s")[0])
        assert lag_s >= 1.0, line

        await conn.execute("SELECT pg_wal_replay_resume()")
        status, balance = await http.get(f"/v1/sellers/{seller}/balance?min_position={second}")
        assert status == 200 and balance["pending"] == "50.00", balance
        verify = await s.cli("verify")
        assert verify.rc == 0 and verify.out.startswith("ok:"), verify
        assert "a standby, replay lag 0.00 s" in verify.err, verify
        replay = await s.cli("replay", "--as-of", "2100-01-01T00:00:00Z", "--seller", seller)
        assert replay.rc == 0 and replay.json()["balances"][0]["pending"] == "50.00", replay
    finally:
        with contextlib.suppress(Exception):
            await conn.execute("SELECT pg_wal_replay_resume()")
        await conn.close()
        await s.close()


async def _probe_writes(
    stack: FailoverStack, seller: str, stop: asyncio.Event, acked: list[tuple[float, float]]
) -> None:
    """One careful client writing every 50 ms (retrying each write with its key until it is
    acknowledged); appends (monotonic time the acknowledged attempt was sent, time of its
    acknowledgement) to ``acked``. The send time matters: a write the primary committed
    just before the SIGKILL may still be answered a few milliseconds after it."""
    http = stack.http()
    n = 0
    while not stop.is_set():
        body = {
            "idempotency_key": uuid.uuid4().hex, "type": "order.placed",
            "occurred_at": "2026-11-30T10:00:00+08:00", "seller_id": seller,
            "order_id": f"{seller}-{n}", "channel": "pos", "amount": "10.00",
        }  # fmt: skip
        while not stop.is_set():
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                sent = time.monotonic()
                status, _ = await http.post("/v1/events", body)
                if status in (200, 201):
                    acked.append((sent, time.monotonic()))
                    break
                assert status == 503, status  # nothing else is right while the primary is away
            await asyncio.sleep(0.05)
        n += 1
        await asyncio.sleep(0.05)


async def test_primary_failover(stack: FailoverStack, pair: PostgresPair) -> None:
    seen: dict[str, Any] = {}

    async def fault(s: Any) -> float:
        probe_seller = f"pgf-probe-{uuid.uuid4().hex[:6]}"
        await stack.http().seller(probe_seller)
        stop = asyncio.Event()
        acks: list[tuple[float, float]] = []
        probe = asyncio.create_task(_probe_writes(stack, probe_seller, stop, acks))
        await asyncio.sleep(0.5)
        killed_at = time.monotonic()
        pids = pair.primary.kill()
        await pair.primary.gone(pids)
        gone_at = time.monotonic()
        await asyncio.sleep(DETECT_S)
        promote_started = time.monotonic()
        await pair.promote()
        promoted_at = time.monotonic()
        try:
            # the probe's first acknowledgement after the promotion, then a little more
            while time.monotonic() < promoted_at + WRITES_BACK_BOUND_S and not probe.done():
                if acks and acks[-1][1] > promoted_at:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
        finally:
            stop.set()
            await probe
        # writes sent once no primary process was left; one sent before may be answered
        # just after the kill, having committed just before it
        after = [acked for sent, acked in acks if sent > gone_at]
        seen.update(
            killed_at=killed_at,
            promote_s=promoted_at - promote_started,
            acked_while_down=sum(1 for t in after if t < promote_started),
            writes_back_s=(after[0] - killed_at) if after else None,
            back_after_promote_s=(after[0] - promoted_at) if after else None,
        )
        return promoted_at

    figures = await scenario.run(stack, "postgres-failover", fault)  # type: ignore[arg-type]
    extra = {k: round(v, 3) for k, v in seen.items() if k != "killed_at" and v is not None}
    print(f"postgres-failover: {extra}")
    _record({"scenario": "postgres-failover-times", **extra})
    assert figures.answers_503 + figures.other_failures > 0, "the outage went unnoticed"
    assert seen["acked_while_down"] == 0, seen  # no write taken while no primary ran
    assert seen["writes_back_s"] is not None, f"no write after the promotion: {seen}"
    assert seen["back_after_promote_s"] < WRITES_BACK_BOUND_S, seen
