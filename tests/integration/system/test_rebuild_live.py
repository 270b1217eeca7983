"""Issue 3: ``omniledger projections rebuild`` and ``check-projections`` against a live ``up``.

While ``omniledger up`` keeps serving and clients keep writing and reading,
a rebuild of all read models and then of one by name exits 0 and says how
far it got; ``check-projections`` finds nothing. A tampered projection row
makes ``check-projections`` exit 1 and name the difference; rebuilding that
read model repairs it. No write or read gets anything but its normal answer
meanwhile.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from tests.integration.system.conftest import (
    PROJECTIONS,
    CliRunner,
    Http,
    Service,
    money,
    run_cli_on_a_terminal,
)

AT = "2026-11-30T17:30:00Z"
REBUILT = re.compile(
    r"^(?P<name>\w+): rebuilt to position (?P<position>\d+) \((?P<count>\d+) events, "
    r"0 set aside\), generation (?P<generation>\d+)$",
    re.MULTILINE,
)


@dataclass
class Traffic:
    """Writers and readers running against the service until stopped."""

    http: Http
    sellers: list[str]
    tag: str
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    written: int = 0
    reads: int = 0
    round: int = 0
    failures: list[Any] = field(default_factory=list)

    async def writer(self, w: int) -> None:
        i = 0
        while not self.stop.is_set():
            seller = self.sellers[(w + i) % len(self.sellers)]
            order = f"live-{self.round}-{w}-{i}-{self.tag}"
            for body in (
                {"type": "order.placed", "seller_id": seller, "order_id": order,
                 "channel": "qris", "amount": "25000"},
                {"type": "payment.captured", "order_id": order, "channel": "qris",
                 "amount": "25000", "fee": "175", "gateway": "xendit",
                 "gateway_ref": f"p-{order}"},
            ):  # fmt: skip
                body |= {"idempotency_key": uuid.uuid4().hex, "occurred_at": AT}
                status, answer = await self.http.post("/v1/events", body)
                if status != 201:
                    self.failures.append(("write", status, answer))
                    return
                self.written += 1
            i += 1

    async def reader(self, r: int) -> None:
        seller = self.sellers[r % len(self.sellers)]
        paths = [
            f"/v1/sellers/{seller}/balance",
            f"/v1/sellers/{seller}/recaps?from=2026-12-01&to=2026-12-01",
            "/v1/recaps/daily?date=2026-12-01",
            "/v1/projections",
        ]
        i = 0
        while not self.stop.is_set():
            path = paths[i % len(paths)]
            status, answer = await self.http.get(path)
            if status != 200:
                self.failures.append(("read", path, status, answer))
                return
            self.reads += 1
            i += 1
            await asyncio.sleep(0.005)

    async def run_while(self, coro: Any) -> Any:
        self.round += 1
        tasks = [asyncio.create_task(self.writer(w)) for w in range(4)]
        tasks += [asyncio.create_task(self.reader(r)) for r in range(2)]
        written_before = self.written
        try:
            result = await coro
        finally:
            self.stop.set()
            await asyncio.gather(*tasks)
            self.stop.clear()
        assert not self.failures, self.failures[:5]
        assert self.written > written_before, "writes should have kept coming meanwhile"
        return result


def rebuilt(out: str) -> dict[str, dict[str, int]]:
    return {
        m["name"]: {k: int(m[k]) for k in ("position", "count", "generation")}
        for m in REBUILT.finditer(out)
    }


async def test_rebuild_and_check_while_the_service_runs(
    service: Service, http: Http, cli: CliRunner
) -> None:
    tag = uuid.uuid4().hex[:6]
    sellers = [f"rb-{n}-{tag}" for n in range(5)]
    for n, seller in enumerate(sellers):
        await http.seller(seller, district=["Tamalate", "Mariso"][n % 2])
    # Some history first, in batches, so a rebuild has something to fold.
    for b in range(6):
        events = []
        for j in range(100):
            order = f"hist-{b}-{j}-{tag}"
            seller = sellers[j % len(sellers)]
            events += [
                {"type": "order.placed", "seller_id": seller, "order_id": order,
                 "channel": ["qris", "shopee", "website"][j % 3], "amount": "120000"},
                {"type": "payment.captured", "order_id": order,
                 "channel": ["qris", "shopee", "website"][j % 3], "amount": "120000",
                 "fee": "840", "gateway": "midtrans", "gateway_ref": f"h-{order}"},
            ]  # fmt: skip
        for e in events:
            e |= {"idempotency_key": uuid.uuid4().hex, "occurred_at": AT}
        status, answer = await http.post("/v1/events", {"events": events})
        assert status == 200, answer
        assert all(r["status"] == "recorded" for r in answer["results"]), answer
    head = await http.caught_up()
    assert head >= 1200
    traffic = Traffic(http, sellers, tag)

    # -- rebuild everything while writes and reads keep coming ------------------------------
    run = await traffic.run_while(cli("projections", "rebuild"))
    assert run.rc == 0, run
    done = rebuilt(run.out)
    assert set(done) == set(PROJECTIONS), run
    for name, r in done.items():
        assert r["position"] >= head, (name, r)
        assert r["count"] >= head, (name, r)
        assert r["generation"] >= 1, (name, r)

    run = await traffic.run_while(cli("check-projections"))
    assert run.rc == 0, run
    for name in PROJECTIONS:
        assert re.search(rf"^{name}: ok at position \d+$", run.out, re.MULTILINE), run
    assert "balances: independent replay ok" in run.out, run

    # -- one read model by name, progress drawn on a terminal -------------------------------
    generation = done["recaps"]["generation"]
    run = await traffic.run_while(
        run_cli_on_a_terminal(service.deployment, "projections", "rebuild", "recaps")
    )
    assert run.rc == 0, run
    assert set(rebuilt(run.out)) == {"recaps"}, run
    assert rebuilt(run.out)["recaps"]["generation"] == generation + 1, run
    assert "rebuild recaps" in run.err, f"no progress bar on the terminal: {run.err!r}"
    assert re.search(r"\d+(\.\d+)?k?ev", run.err), f"no progress count: {run.err!r}"

    # -- tamper with a row: the check names it, a rebuild repairs it ------------------------
    victim = sellers[2]
    pool = await asyncpg.create_pool(service.deployment.dsn, min_size=1, max_size=2)
    assert pool is not None
    try:
        tampered = await pool.execute(
            "UPDATE proj_balances SET captured_minor = captured_minor + 1 WHERE seller_id = $1",
            victim,
        )
        assert tampered == "UPDATE 1"
    finally:
        await pool.close()

    run = await traffic.run_while(cli("check-projections"))
    assert run.rc == 1, run
    assert "balances: DIFFERS" in run.out, run
    # issue 13: the way out is named
    assert "to rebuild it from the log: omniledger projections rebuild balances" in run.out, run
    differences = [line for line in run.out.splitlines() if victim in line]
    assert any("proj_balances" in line for line in differences), run
    assert any(line.startswith(f"balances: seller {victim} IDR") for line in differences), run
    for name in ("recaps", "city"):
        assert re.search(rf"^{name}: ok at position \d+$", run.out, re.MULTILINE), run

    run = await traffic.run_while(cli("projections", "rebuild", "balances"))
    assert run.rc == 0, run
    assert set(rebuilt(run.out)) == {"balances"}, run

    run = await traffic.run_while(cli("check-projections"))
    assert run.rc == 0, run

    # -- quiet again: everything caught up, balances equal the auditor's replay -------------
    head = await http.caught_up()
    run = await cli("check-projections")
    assert run.rc == 0, run
    replay = await cli("replay", "--as-of", "2100-01-01T00:00:00Z")
    assert replay.rc == 0, replay
    replayed = {b["seller_id"]: money(b) for b in replay.json()["balances"]}
    for seller in sellers:
        status, balance = await http.get(f"/v1/sellers/{seller}/balance")
        assert status == 200, balance
        assert balance["as_of_position"] == head
        assert money(balance) == replayed[seller], seller
    assert traffic.reads > 0


async def test_rebuild_of_an_unknown_read_model_is_refused(
    service: Service, cli: CliRunner
) -> None:
    run = await cli("projections", "rebuild", "nonsense")
    assert run.rc == 2, run
    assert "unknown read model 'nonsense'" in run.err, run
