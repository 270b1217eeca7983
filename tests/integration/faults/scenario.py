"""One fault under load, and what must hold after it.

``run`` starts the load, injects the fault after ``PRE_FAULT_S``, measures
how long the read side takes to keep up with the writes again, stops the
load once it does (and no sooner than ``POST_FAULT_S`` after the fault was
lifted), waits for zero lag, and then checks, from the outside (the
database's tables, the JetStream stream, the HTTP API, the ``omniledger``
commands):

- every acknowledged write is in the log exactly once, at the position its
  answer gave; no order was placed or captured twice; every position of the
  log belongs to exactly one idempotency key;
- the stream holds every position of the log exactly once
  (sequence == position == ``Nats-Msg-Id``);
- the relay and every read model keep up with the writes again within
  ``RECOVERY_BOUND_S`` of the fault being lifted (``_recovered``), and are
  at zero lag within ``ZERO_LAG_BOUND_S`` of the load's end;
- ``omniledger check-projections`` exits 0, and every seller's balance from
  the API equals ``omniledger replay`` and the clients' own fold of what
  the log holds of theirs.

Its ``Figures`` go into the tests' output and into ``RELIABILITY.md``.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from tests.integration.faults.load import Load, LoadConfig, Write
from tests.integration.faults.stack import Stack
from tests.integration.system.conftest import PROJECTIONS, money, stream_messages

__all__ = ["Fault", "Figures", "run"]

#: load before the fault, so that it strikes writes in flight
PRE_FAULT_S = 1.5
#: load after the fault is lifted: retried writes and new ones meet the recovering stack
POST_FAULT_S = 2.0
#: the read side keeps up with the writes again within this of the fault being lifted
RECOVERY_BOUND_S = 20.0
#: keeping up: the relay and every read model at least at the head of this long ago
LAG_TOLERANCE_S = 0.5
#: and doing so for this long, while writes are being acknowledged
STEADY_S = 1.0
STEADY_ACKS_MIN = 10
#: zero lag everywhere once the load has ended
ZERO_LAG_BOUND_S = 20.0
PROBE_INTERVAL_S = 0.1
SELLERS = 3
FAR_FUTURE = "2100-01-01T00:00:00Z"
#: where the figures of every scenario are appended (JSON lines), when set; the
#: report command sets it (``python -m tests.integration.faults``)
FIGURES_ENV = "OMNILEDGER_FAULT_FIGURES"

#: injects the fault and lifts it (restarts the server, SIGCONT, ...); returns the
#: monotonic time it was lifted (for a killed child of ``up``: when it was killed,
#: since lifting it is the supervisor's job)
Fault = Callable[[Stack], Awaitable[float]]


@dataclass
class Figures:
    scenario: str
    acknowledged: int
    not_acknowledged: int  # given up after retry_grace_s: committed or not
    committed_unacknowledged: int  # of those, in the log anyway
    retried_writes: int
    answers_503: int
    other_failures: int  # refused/dropped connections, timeouts, other statuses
    failure_window_s: float  # first to last failed attempt, as the clients saw it
    slowest_ack_s: float  # first attempt to acknowledgement, retries included
    recovery_s: float  # fault lifted -> the read side keeps up with the writes again
    zero_lag_s: float  # load ended -> zero lag everywhere
    lost: int
    doubled: int
    failures: dict[str, int]
    #: acknowledged between the fault's start and its being lifted
    acked_during_fault: int = 0

    def line(self) -> str:
        return (
            f"{self.scenario}: acked {self.acknowledged}, 503s {self.answers_503}, other "
            f"failures {self.other_failures} {self.failures}, failure window "
            f"{self.failure_window_s:.2f} s, slowest ack {self.slowest_ack_s:.2f} s, "
            f"recovery {self.recovery_s:.2f} s, zero lag "
            f"{self.zero_lag_s:.2f} s after the load, lost {self.lost}, doubled {self.doubled}"
        )


async def run(stack: Stack, name: str, fault: Fault, config: LoadConfig | None = None) -> Figures:
    """The scenario ``name``: ``fault`` under load, then every check; its figures are
    printed and recorded, and recorded with the error if a check fails."""
    known: dict[str, Any] = {"scenario": name}
    try:
        figures = await _run(stack, name, fault, config, known)
    except BaseException as e:
        known["error"] = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        _record(known)
        raise
    _record(asdict(figures) | {"error": None})
    return figures


async def _run(
    stack: Stack, name: str, fault: Fault, config: LoadConfig | None, known: dict[str, Any]
) -> Figures:
    await stack.heal()
    http = stack.http()
    await http.caught_up(timeout_s=ZERO_LAG_BOUND_S)
    previous_head = await http.head()
    tag = f"{name}-{uuid.uuid4().hex[:6]}"
    sellers = [f"{tag}-s{n}" for n in range(SELLERS)]
    for seller in sellers:
        await http.seller(seller)

    load = Load(stack.url, http.headers, sellers, tag, config or LoadConfig(duration_s=60.0))
    running = asyncio.create_task(load.run())
    try:
        await asyncio.sleep(PRE_FAULT_S)
        assert load.acked, f"no write acknowledged before the fault: {load.failures}"
        fault_at = time.monotonic()
        lifted_at = await fault(stack)
        known["acked_during_fault"] = sum(
            1 for w in load.acked if w.acked_at is not None and fault_at <= w.acked_at <= lifted_at
        )
        recovery_s = await _recovered(stack, load, lifted_at)
        await asyncio.sleep(max(0.0, lifted_at + POST_FAULT_S - time.monotonic()))
        load.stop()
        await asyncio.wait_for(asyncio.shield(running), load.config.retry_grace_s + 30)
    finally:
        load.stop()
        if not running.done():
            running.cancel()
        known.update(_load_figures(load))
    known["recovery_s"] = round(recovery_s, 2)
    started = time.monotonic()
    await http.caught_up(timeout_s=ZERO_LAG_BOUND_S)
    status, health = await http.get("/healthz")
    assert status == 200 and health["relay_lag_events"] == 0, health
    # every part back: /healthz names none as down or behind
    assert health.get("status") == "ok" and not health.get("problems"), health
    known["zero_lag_s"] = round(time.monotonic() - started, 2)

    lost, doubled, ours = await _check_log(stack, load, previous_head)
    known.update(
        committed_unacknowledged=sum(1 for w in load.unacked if w.key in ours),
        lost=len(lost),
        doubled=len(doubled),
    )
    figures = Figures(**known)
    print(figures.line())
    assert not load.rejected, [(w.body, w.rejected) for w in load.rejected[:3]]
    assert not lost, f"{len(lost)} acknowledged writes lost or moved, e.g. {lost[:3]}"
    assert not doubled, f"{len(doubled)} facts recorded twice, e.g. {doubled[:3]}"
    await _check_stream(stack, previous_head)
    await _check_balances(stack, sellers, [w for w in load.writes if w.key in ours])
    return figures


def _load_figures(load: Load) -> dict[str, Any]:
    failures = dict(load.failures)
    return {
        "acknowledged": len(load.acked),
        "not_acknowledged": len(load.unacked),
        "retried_writes": sum(1 for w in load.writes if w.attempts > 1),
        "answers_503": failures.get("503", 0),
        "other_failures": sum(v for k, v in failures.items() if k != "503"),
        "failure_window_s": round(load.failure_window_s, 2),
        "slowest_ack_s": round(load.slowest_ack_s, 2),
        "failures": failures,
    }


async def _probe(session: aiohttp.ClientSession, stack: Stack) -> tuple[int, int, list[int]] | None:
    """(head, relay position, read model positions), or None while the API cannot say."""
    http = stack.http()
    try:
        async with session.get(f"{stack.url}/healthz") as r:
            if r.status != 200:
                return None
            health = orjson.loads(await r.read())
        async with session.get(f"{stack.url}/v1/projections", headers=http.headers) as r:
            if r.status != 200:
                return None
            body = orjson.loads(await r.read())
    except (aiohttp.ClientError, OSError, TimeoutError):
        return None
    rows = {p["name"]: p["position"] for p in body["projections"]}
    return (
        int(health["head_position"]),
        int(health["relay_position"]),
        [int(rows.get(n, 0)) for n in PROJECTIONS],
    )


async def _recovered(stack: Stack, load: Load, lifted_at: float) -> float:
    """Seconds from ``lifted_at`` until the read side keeps up with the writes again.

    The read side keeps up when the relay and every read model have reached the log
    head as it stood ``LAG_TOLERANCE_S`` earlier; recovered means it has kept up at every
    probe for ``STEADY_S`` while at least ``STEADY_ACKS_MIN`` writes were acknowledged
    (a read side that is current only because nothing is written has not shown it
    recovered). The figure is the start of that steady run."""
    deadline = lifted_at + RECOVERY_BOUND_S
    heads: deque[tuple[float, int]] = deque(maxlen=200)
    steady_since: float | None = None
    acks_then = 0
    last: Any = None
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while (now := time.monotonic()) < deadline:
            probe = await _probe(session, stack)
            if probe is None:
                steady_since = None
            else:
                last = probe
                head, relayed, models = probe
                earlier = [h for t, h in heads if t <= now - LAG_TOLERANCE_S]
                heads.append((now, head))
                keeping_up = bool(earlier) and min(relayed, *models) >= earlier[-1]
                if not keeping_up:
                    steady_since = None
                elif steady_since is None:
                    steady_since, acks_then = now, len(load.acked)
                elif now - steady_since >= STEADY_S:
                    if len(load.acked) - acks_then >= STEADY_ACKS_MIN:
                        return max(0.0, steady_since - lifted_at)
            await asyncio.sleep(PROBE_INTERVAL_S)
    raise AssertionError(
        f"the relay and read models did not keep up with the writes again within "
        f"{RECOVERY_BOUND_S} s of the fault being lifted; last (head, relay, models "
        f"{PROJECTIONS}): {last}; up's children: {stack.children()}\n"
        f"--- up's log (tail)\n{stack.service.log()}"
    )


async def _check_log(
    stack: Stack, load: Load, previous_head: int
) -> tuple[list[Write], list[Any], dict[str, int]]:
    """(acknowledged writes lost or moved, facts doubled, the clients' keys in the log)."""
    conn = await asyncpg.connect(stack.deployment.dsn)
    try:
        keys = {
            r["key"]: r["position"]
            for r in await conn.fetch("SELECT key, position FROM idempotency_keys")
        }
        head = await conn.fetchval("SELECT position FROM ledger_head")
    finally:
        await conn.close()
    # stored as "c:<client key>" ("i:<the ledger's own key>" for its own facts, app/writer.py)
    ours = {k.split(":", 1)[1]: p for k, p in keys.items() if k.startswith("c:")}
    lost = [w for w in load.acked if ours.get(w.key) != w.position]
    positions = Counter(keys.values())
    doubled: list[Any] = [(p, n) for p, n in positions.items() if n > 1]
    assert sorted(positions) == list(range(1, head + 1)), "a position without a key"
    log = await stack.http().events(after=previous_head)
    at = {e["position"]: e for e in log}
    # the key's position holds the write itself, not some other event
    lost += [
        w
        for w in load.acked
        if w not in lost
        and (
            w.position not in at
            or (at[w.position]["type"], at[w.position]["data"].get("order_id"))
            != (w.body["type"], w.body["order_id"])
        )
    ]
    # the same fact twice under two keys: one placement and one capture per order
    facts = Counter(
        (e["type"], e["data"].get("order_id"))
        for e in log
        if e["type"] in ("order.placed", "payment.captured")
    )
    doubled += [fact for fact, n in facts.items() if n > 1]
    return lost, doubled, ours


async def _check_stream(stack: Stack, previous_head: int) -> None:
    """The stream is the log: sequence == position == Nats-Msg-Id, no gap, no double."""
    head = await stack.http().head()
    info, msgs = await stream_messages(stack.deployment.nats_url, stack.deployment.stream)
    assert (info.state.first_seq, info.state.last_seq, info.state.messages) == (1, head, head), (
        info.state
    )
    for msg in msgs[previous_head:]:
        assert (msg.headers or {}).get("Nats-Msg-Id") == str(msg.seq), (msg.seq, msg.headers)
        assert orjson.loads(msg.data)["position"] == msg.seq, msg.seq


async def _check_balances(stack: Stack, sellers: list[str], committed: list[Write]) -> None:
    verify = await stack.cli("verify")  # the hash chain came through the fault intact
    assert verify.rc == 0, verify
    check = await stack.cli("check-projections")
    assert check.rc == 0, check
    replay = await stack.cli("replay", "--as-of", FAR_FUTURE)
    assert replay.rc == 0, replay
    replayed = {b["seller_id"]: money(b) for b in replay.json()["balances"]}
    expected = _fold(committed, sellers)
    http = stack.http()
    head = await http.head()
    for seller in sellers:
        status, projected = await http.get(f"/v1/sellers/{seller}/balance")
        assert status == 200, projected
        assert projected["as_of_position"] == head, projected
        assert money(projected) == replayed[seller], (seller, projected, replayed[seller])
        assert money(projected) == expected[seller], (seller, projected, expected[seller])


def _fold(committed: list[Write], sellers: list[str]) -> dict[str, dict[str, str]]:
    """The balances the clients expect from the writes the log holds of theirs."""
    minor = lambda s: int(s.replace(".", ""))  # noqa: E731 - every amount has 2 digits
    placed = {w.body["order_id"]: w.body for w in committed if w.body["type"] == "order.placed"}
    acc: dict[str, Counter[str]] = {s: Counter() for s in sellers}
    for order in placed.values():
        acc[order["seller_id"]]["pending"] += minor(order["amount"])
    for w in committed:
        if w.body["type"] == "payment.captured":
            seller = placed[w.body["order_id"]]["seller_id"]
            acc[seller]["pending"] -= minor(w.body["amount"])
            acc[seller]["captured"] += minor(w.body["amount"])
            acc[seller]["fees"] += minor(w.body["fee"])
    fmt = lambda m: f"{m // 100}.{m % 100:02d}"  # noqa: E731
    return {
        s: {
            "pending": fmt(a["pending"]),
            "available": fmt(a["captured"] - a["fees"]),
            "captured_total": fmt(a["captured"]),
            "refunded_total": fmt(0),
            "fees_total": fmt(a["fees"]),
            "paid_out_total": fmt(0),
        }
        for s, a in acc.items()
    }


def _record(row: dict[str, Any]) -> None:
    path = os.environ.get(FIGURES_ENV)
    if path:
        with Path(path).open("ab") as f:
            f.write(orjson.dumps(row) + b"\n")
