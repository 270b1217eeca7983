"""The load generator: ``wrk`` with ``loadtests/post_events.lua``, in a process of its own.

``run_wrk`` starts wrk for a fixed duration (one thread per target port, the
connections spread evenly), waits for it (bounded), and reads the one
``WRK_JSON`` line the script's ``done()`` prints: requests, non-2xx answers,
latency percentiles. wrk's own peak RSS comes from ``wait4``. wrk is a
closed-loop generator: latency is measured per request from send to answer,
with each connection waiting for its answer before the next request.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from loadtests.processes import Child
from loadtests.world import World

__all__ = ["LUA_SCRIPT", "GeneratorRun", "connections_for", "run_wrk"]

LUA_SCRIPT: Final = Path(__file__).resolve().parent / "post_events.lua"


def connections_for(connections: int, ports: int) -> int:
    """wrk gives each thread connections / threads: a multiple of the thread count."""
    return max(ports, connections - connections % ports)


@dataclass
class GeneratorRun:
    requests: int
    duration_s: float
    errors: dict[str, int]
    latency_us: dict[str, float]
    peak_rss_kb: int | None

    @property
    def ok_requests(self) -> int:
        return self.requests - self.errors.get("status", 0)

    def latency_ms(self) -> dict[str, float]:
        return {k: round(v / 1000, 3) for k, v in self.latency_us.items()}


async def run_wrk(
    world: World,
    *,
    mode: str,
    phase: str,
    ports: list[int],
    duration_s: int,
    connections: int | None = None,
) -> GeneratorRun:
    """``connections``: the phase's own count (default ``--connections``)."""
    o = world.options
    threads = len(ports)
    connections = connections_for(connections or o.connections, threads)
    argv = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{duration_s}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA_SCRIPT),
        f"http://127.0.0.1:{ports[0]}",
        "--",
        mode,
        world.tag,
        str(o.sellers),
        str(o.batch_size),
        phase,
    ]
    env = dict(os.environ, BENCH_KEY=world.admin_key, BENCH_PORTS=",".join(map(str, ports)))
    child = world.children.add(
        Child(f"wrk {mode} {phase}", argv, log_path=world.log_path(f"wrk-{mode}-{phase}"), env=env)
    )
    child.start()
    code = await child.wait(duration_s + 30)
    if code != 0:
        raise child.failed("failed")
    text = child.log_path.read_text(errors="replace")
    line = next((x for x in text.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise child.failed("printed no WRK_JSON line")
    data = json.loads(line.removeprefix("WRK_JSON "))
    return GeneratorRun(
        requests=int(data["requests"]),
        duration_s=data["duration_us"] / 1e6,
        errors={k: int(v) for k, v in data["errors"].items()},
        latency_us={k: float(v) for k, v in data["latency_us"].items()},
        peak_rss_kb=child.peak_rss_kb,
    )
