"""Issue 10, finding 1: ``omniledger up`` restarts its relay and projection children.

A real ``up`` process; its ``relay`` child, then its ``project`` child, then
both get SIGKILL while writes go on. Each must come back as a new process
(reaped, no zombie left), ``/healthz`` must show it (its restart count, the
last exit), the relay's and every read model's lag must return to 0 and the
balances must reach the log (``omniledger replay``). Before the fix they stayed
``<defunct>`` and the lag grew for ever while ``/healthz`` said ``ok``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from typing import Any

from ledger.api.http import HEALTH_LAG_EVENTS_MAX
from tests.integration.system.conftest import (
    PROJECTIONS,
    CliRunner,
    Http,
    Service,
    command_lines,
    money,
)

AT = "2026-11-30T10:00:00+08:00"
FAR_FUTURE = "2100-01-01T00:00:00Z"
RESTART_TIMEOUT_S = 15.0


def child_pids(service: Service) -> dict[str, int]:
    """``{"relay": pid, "project": pid}`` of the live children, from /proc."""
    out: dict[str, int] = {}
    for pid, line in command_lines(service.group()).items():
        for part in ("relay", "project"):
            if line.rstrip().endswith(f"ledger.ops.cli {part}"):
                out[part] = pid
    return out


async def write(http: Http, sellers: list[str], tag: str, round_: int) -> None:
    """One batch: an order and its capture per seller."""
    events: list[dict[str, Any]] = []
    for i, seller in enumerate(sellers):
        order = f"o{round_}-{i}-{tag}"
        amount = str(10_000 + 1_000 * round_ + i)
        events.append({"idempotency_key": uuid.uuid4().hex, "occurred_at": AT,
                       "type": "order.placed", "seller_id": seller, "order_id": order,
                       "channel": "qris", "amount": amount})  # fmt: skip
        events.append({"idempotency_key": uuid.uuid4().hex, "occurred_at": AT,
                       "type": "payment.captured", "order_id": order, "channel": "qris",
                       "amount": amount, "fee": "70", "gateway": "midtrans",
                       "gateway_ref": f"pay-{round_}-{i}-{tag}"})  # fmt: skip
    status, answer = await http.post("/v1/events", {"events": events})
    assert status == 200, answer
    assert all(r["status"] == "recorded" for r in answer["results"]), answer


async def test_up_restarts_a_killed_relay_and_projection_child(
    service: Service, http: Http, cli: CliRunner
) -> None:
    tag = uuid.uuid4().hex[:6]
    sellers = [f"sup-{n}-{tag}" for n in range(3)]
    for seller in sellers:
        await http.seller(seller)
    await write(http, sellers, tag, 0)
    await http.caught_up()
    pids = child_pids(service)
    assert set(pids) == {"relay", "project"}, command_lines(service.group())
    status, health = await http.get("/healthz")
    assert (status, health["status"]) == (200, "ok"), health
    restarts = {"relay": 0, "project": 0}

    for round_, victims in enumerate((["relay"], ["project"], ["relay", "project"]), start=1):
        old = child_pids(service)
        for victim in victims:
            os.kill(old[victim], signal.SIGKILL)
            restarts[victim] += 1
        await write(http, sellers, tag, round_)  # writes go on while they are down

        seen_down = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESTART_TIMEOUT_S
        while True:
            status, health = await http.get("/healthz")
            assert status == 200, health  # the API itself never stopped answering
            children = health.get("children", {})
            if children and any(children[v]["state"] != "running" for v in victims):
                seen_down = True
                assert health["status"] == "degraded", health
                assert any(p.startswith(tuple(victims)) for p in health["problems"]), health
            now = child_pids(service)
            if all(
                v in now
                and now[v] != old[v]
                and children.get(v, {}).get("state") == "running"
                and children[v]["pid"] == now[v]
                for v in victims
            ):
                break
            assert loop.time() < deadline, (
                f"{victims} not started again in {RESTART_TIMEOUT_S} s: {health}, "
                f"processes {command_lines(service.group())}\n{service.log()}"
            )
            await asyncio.sleep(0.05)
        assert health["problems"] == [], health
        assert {n: c["state"] for n, c in children.items()} == {
            "relay": "running",
            "project": "running",
        }, health
        for victim in victims:
            assert children[victim]["restarts"] == restarts[victim], health
            assert children[victim]["last_exit"] == "signal 9 (SIGKILL)", health
        assert seen_down or all(children[v]["restarts"] > 0 for v in victims)
        assert not service.zombies(), f"left unreaped: {service.zombies()}"
        for part in ("relay", "project"):  # the other child was left alone
            if part not in victims:
                assert child_pids(service)[part] == old[part]

        head = await http.caught_up()
        status, health = await http.get("/healthz")
        assert (health["status"], health["relay_lag_events"]) == ("ok", 0), health
        assert {n: p["lag_events"] for n, p in health["projections"].items()} == dict.fromkeys(
            PROJECTIONS, 0
        ), health
        replay = await cli("replay", "--as-of", FAR_FUTURE)
        assert replay.rc == 0, replay
        replayed = {b["seller_id"]: money(b) for b in replay.json()["balances"]}
        for seller in sellers:
            status, balance = await http.get(f"/v1/sellers/{seller}/balance")
            assert status == 200, balance
            assert balance["as_of_position"] == head, balance
            assert money(balance) == replayed[seller], (round_, seller)

    log = service.log(tail=200_000)
    assert "relay exited with signal 9 (SIGKILL)" in log, log[-3000:]
    assert "project exited with signal 9 (SIGKILL)" in log, log[-3000:]
    assert "restarting in 0.5 s, restart 1" in log, log[-3000:]
    status, text = await metrics(http)
    assert status == 200
    assert 'omniledger_child_restarts{name="relay"} 2' in text, text
    assert 'omniledger_child_restarts{name="project"} 2' in text, text
    assert 'omniledger_projection_lag_events{name="balances"} 0' in text, text
    assert "omniledger_relay_lag_events 0" in text, text
    check = await cli("check-projections")
    assert check.rc == 0, check


async def metrics(http: Http) -> tuple[int, str]:
    async with http.session.get(http.base + "/metrics") as r:
        return r.status, await r.text()


async def test_check_projections_fails_on_a_read_model_behind_the_log(
    service: Service, http: Http, cli: CliRunner
) -> None:
    """Finding 2: the check compared each model with the log only up to the model's
    own position, so a stopped one was "ok". With the ``project`` child frozen
    (SIGSTOP, while idle: it holds no row lock) and writes going on, the check
    exits 1 naming every model and how far behind it is; thawed, it exits 0."""
    tag = uuid.uuid4().hex[:6]
    sellers = [f"lag-{n}-{tag}" for n in range(2)]
    for seller in sellers:
        await http.seller(seller)
    await write(http, sellers, tag, 0)
    before = await http.caught_up()
    await asyncio.sleep(0.3)  # past the consumers' linger: idle, no transaction open
    project = child_pids(service)["project"]
    os.kill(project, signal.SIGSTOP)
    try:
        for round_ in (1, 2, 3):
            await write(http, sellers, tag, round_)
        head = await http.head()
        behind = head - before
        assert behind == 3 * 2 * len(sellers)
        status, health = await http.get("/healthz")
        assert status == 200, health
        # from the database: what a scaled-out deployment's monitor sees too
        assert {n: p["lag_events"] for n, p in health["projections"].items()} == dict.fromkeys(
            PROJECTIONS, behind
        ), health
        assert (health["status"], health["problems"]) == ("ok", []), health  # a little behind

        # far behind: /healthz says so (still 200: writes work)
        for n in range(HEALTH_LAG_EVENTS_MAX // 1000 + 1):
            events = [
                {"idempotency_key": uuid.uuid4().hex, "occurred_at": AT, "type": "order.placed",
                 "seller_id": sellers[j % 2], "order_id": f"far{n}-{j}-{tag}", "channel": "pos",
                 "amount": "1000"}
                for j in range(1000)
            ]  # fmt: skip
            status, answer = await http.post("/v1/events", {"events": events})
            assert status == 200, answer
        head = await http.head()
        behind = head - before
        assert behind > HEALTH_LAG_EVENTS_MAX
        status, health = await http.get("/healthz")
        assert (status, health["status"]) == (200, "degraded"), health
        assert health["problems"] == [
            f"projection {name}: {behind} events behind the log" for name in sorted(PROJECTIONS)
        ], health
        assert health["relay_lag_events"] < HEALTH_LAG_EVENTS_MAX, health

        run = await cli("check-projections", "--wait-s", "1")
        assert run.rc == 1, run
        for name in PROJECTIONS:
            assert (
                f"{name}: BEHIND the log by {behind} events (at position {before}, "
                f"log head {head}, after waiting 1 s; at most 0 allowed)"
            ) in run.out, run
            # the content is still compared, up to where the model got
            assert f"{name}: ok at position {before}" in run.out, run
        run = await cli("check-projections", "--wait-s", "0", "--lag-max", str(behind))
        assert run.rc == 0, run  # within the bound asked for
        assert "BEHIND" not in run.out, run
    finally:
        os.kill(project, signal.SIGCONT)
    assert await http.caught_up(timeout_s=120) == head
    run = await cli("check-projections")
    assert run.rc == 0, run
    assert "BEHIND" not in run.out, run
    assert "balances: independent replay ok" in run.out, run
