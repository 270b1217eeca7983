"""Issue 15, point 1: losing one node of a 3-node NATS JetStream cluster under load.

``omniledger up`` runs against three ``nats-server`` processes
(``deploy/nats/cluster.conf``) and creates the stream ``LEDGER`` with 3
replicas. While the fault suite's bounded load writes, the node leading the
stream is killed with SIGKILL; while it is down:

- writes keep being acknowledged (they go to PostgreSQL; NATS never refuses one),
- another node leads the stream, and the relay and every read model get past
  the log head of the moment of the kill (they reconnected to the other nodes;
  the same processes: neither was restarted),

then the node is started again (on its store, or on an empty folder) and must
become current (its ``/healthz``), its own copy of the stream holding every
position. ``scenario.run`` then checks what it checks for every fault: each
acknowledged write in the log once, the stream equal to the log (sequence =
position = ``Nats-Msg-Id``), ``check-projections``, ``verify`` and the
balances. ``python -m tests.integration.cluster`` writes the figures into
RELIABILITY.md.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from tests.integration.cluster.figures import record
from tests.integration.cluster.stack import ClusterStack
from tests.integration.faults import scenario
from tests.integration.faults.load import LoadConfig
from tests.integration.system.conftest import PROJECTIONS

#: the killed node stays down at least this long
DOWN_S = 8.0
#: within this of the kill, the relay and every read model are past the head of that moment
CARRY_ON_BOUND_S = 30.0
#: a node started again is current (caught up) within this
CATCH_UP_BOUND_S = 30.0
#: events past the head at the kill the read side must reach while the node is down
EVENTS_PAST_KILL = 20
#: about 60 writes/s, as the issue's bounded load
LOAD = LoadConfig(writers=4, rate_per_s_max=60.0, duration_s=60.0)


async def _carried_on(
    stack: ClusterStack, head: int, killed_at: float, notes: dict[str, Any]
) -> float:
    """Seconds from the kill until the relay and every read model are past ``head``
    (and in ``notes``, until the relay alone was)."""
    deadline = killed_at + CARRY_ON_BOUND_S
    last: Any = None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            last = await scenario._probe(session, stack)
            now = time.monotonic()
            if last is not None and last[1] >= head + EVENTS_PAST_KILL:
                notes.setdefault("relay_past_s", round(now - killed_at, 2))
            if last is not None and min(last[1], *last[2]) >= head + EVENTS_PAST_KILL:
                return now - killed_at
            await asyncio.sleep(scenario.PROBE_INTERVAL_S)
    raise AssertionError(
        f"with one NATS node down, the read side did not get {EVENTS_PAST_KILL} events past "
        f"head {head} within {CARRY_ON_BOUND_S} s; last (head, relay, models): {last}\n"
        f"--- up's log (tail)\n{stack.service.log()}"
    )


def _lose_the_leader(notes: dict[str, Any], *, wipe: bool) -> scenario.Fault:
    async def fault(stack: Any) -> float:
        assert isinstance(stack, ClusterStack)
        # a node of a cluster in its steady state, not one still forming its groups
        await stack.settled([f"projection_{name}" for name in PROJECTIONS])
        node = await stack.stream_leader()
        head = await stack.http().head()
        notes["children_before"] = stack.children()
        killed_at = time.monotonic()
        stack.cluster.kill(node)
        if wipe:
            stack.cluster.wipe(node)
        notes["killed"] = node.name
        notes["carried_on_s"] = round(await _carried_on(stack, head, killed_at, notes), 2)
        leader = await stack.stream_leader()
        assert leader is not node, f"{node.name} is dead but still named leader"
        notes["new_leader"] = leader.name
        await asyncio.sleep(max(0.0, killed_at + DOWN_S - time.monotonic()))
        lifted_at = time.monotonic()
        notes["down_s"] = round(lifted_at - killed_at, 2)
        stack.cluster.spawn(node)
        notes["catch_up_s"] = round(await stack.cluster.wait_current(node, CATCH_UP_BOUND_S), 2)
        return lifted_at

    return fault


async def _check_cluster(stack: ClusterStack, notes: dict[str, Any]) -> None:
    """Three replicas, all current; the killed node's own copy holds every position;
    the relay and the projections are the processes they were before the kill."""
    head = await stack.http().head()
    info = await stack.js_call("stream_info", stack.deployment.stream)
    assert info.config.num_replicas == 3, info.config  # CONTRACT 6: several URLs -> 3
    assert info.cluster is not None
    replicas = info.cluster.replicas or []
    assert len(replicas) == 2 and all(r.current for r in replicas), info.cluster
    killed = stack.cluster.node(notes["killed"])
    deadline = time.monotonic() + 10.0
    while True:
        own = await stack.cluster.stream_state(killed, stack.deployment.stream)
        state = (own or {}).get("state", {})
        if (state.get("first_seq"), state.get("last_seq"), state.get("messages")) == (
            1, head, head,
        ):  # fmt: skip
            break
        assert time.monotonic() < deadline, f"{killed.name}'s own copy: {state}, head {head}"
        await asyncio.sleep(0.2)
    assert stack.children() == notes.pop("children_before"), "relay or projections restarted"


@pytest.mark.parametrize("wipe", [False, True], ids=["same-store", "store-deleted"])
async def test_kill_9_the_stream_leader_node(cluster_stack: ClusterStack, wipe: bool) -> None:
    name = "nats-node-loss-store-deleted" if wipe else "nats-node-loss"
    notes: dict[str, Any] = {}
    try:
        figures = await scenario.run(cluster_stack, name, _lose_the_leader(notes, wipe=wipe), LOAD)
        await _check_cluster(cluster_stack, notes)
    except BaseException as e:
        notes["error"] = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise
    finally:
        notes.pop("children_before", None)
        record(name, notes)
        print(f"{name}: {notes}")
    # NATS is not on the write path: a node's loss is never a refused write
    assert figures.answers_503 == 0, figures
    assert figures.acked_during_fault > 0, figures
