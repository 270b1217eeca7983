"""Lag while the load runs: projections (``GET /v1/projections``) and the relay.

``LagWatch`` polls every ``LAG_POLL_INTERVAL_S``: the projections' own
figures (the worst ``lag_events`` / ``lag_seconds`` over all read models),
and the relay's lag as the log's head (``/healthz``) minus the last sequence
of our JetStream stream. After the load it times how long until both are
zero. A missing ``/v1/projections`` (404) is reported as "not available",
never guessed from the database. Not here: the load itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from loadtests.world import Stream, World

__all__ = ["LAG_POLL_INTERVAL_S", "LagSample", "LagWatch", "percentile", "summarize_lag"]

log = logging.getLogger("loadtests")

LAG_POLL_INTERVAL_S: Final = 0.1
#: peak RSS of the child processes is sampled on every n-th lag poll
RSS_SAMPLE_EVERY_POLLS: Final = 5
#: the head must stand still this long, lags at zero, before the load counts as absorbed
#: (longer than one group commit of a big backlog takes; ``--smoke`` uses less)
QUIET_S: Final = 3.0


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, -(-len(ordered) * q // 100) - 1))
    return ordered[int(index)]


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class LagSample:
    at: float
    projection_lag_events: int | None  # max over projections; None: nothing to read
    projection_lag_s: float | None
    relay_lag_events: int | None
    head: int | None  # the log's head position at the time of the sample


class LagWatch:
    """Polls ``GET /v1/projections`` and the relay's stream against the log's head."""

    def __init__(
        self, world: World, http: aiohttp.ClientSession, base_url: str, stream: Stream
    ) -> None:
        self.world = world
        self.http = http
        self.base_url = base_url
        self.stream = stream
        self.headers = {"Authorization": f"Bearer {world.admin_key}"}
        #: None until the first answer; False when the route is missing (404)
        self.projections_available: bool | None = None
        self.projection_names: list[str] = []
        self.errors = 0

    async def sample(self) -> LagSample:
        proj_events: int | None = None
        proj_s: float | None = None
        relay: int | None = None
        head: int | None = None
        timeout = aiohttp.ClientTimeout(total=2.0)
        if self.projections_available is not False:
            try:
                async with self.http.get(
                    f"{self.base_url}/v1/projections", headers=self.headers, timeout=timeout
                ) as r:
                    if r.status == 404:
                        self.projections_available = False
                        self.world.notes.append(
                            "GET /v1/projections answered 404: no projection lag measured"
                        )
                    elif r.status == 200:
                        self.projections_available = True
                        rows = (await r.json()).get("projections") or []
                        self.projection_names = sorted(str(p.get("name")) for p in rows)
                        events = [p.get("lag_events") for p in rows]
                        if rows and None not in events:
                            proj_events = max(int(x) for x in events)
                        # lag_seconds is null until a projection applied something
                        seconds = [
                            float(p["lag_seconds"])
                            for p in rows
                            if p.get("lag_seconds") is not None
                        ]
                        proj_s = max(seconds) if seconds else None
                    else:
                        self.errors += 1
            except (TimeoutError, aiohttp.ClientError, ValueError):
                self.errors += 1
        try:
            async with self.http.get(f"{self.base_url}/healthz", timeout=timeout) as r:
                head = int((await r.json())["head_position"])
            relay = max(0, head - await asyncio.wait_for(self.stream.last_seq(), 2.0))
        except (TimeoutError, aiohttp.ClientError, ValueError, KeyError):
            self.errors += 1
        except Exception as e:  # a NATS hiccup must not end the run
            log.debug("relay lag sample failed: %r", e)
            self.errors += 1
        return LagSample(time.monotonic(), proj_events, proj_s, relay, head)

    async def during(self, stop: asyncio.Event) -> list[LagSample]:
        samples: list[LagSample] = []
        polls = 0
        while not stop.is_set():
            began = time.monotonic()
            samples.append(await self.sample())
            polls += 1
            if polls % RSS_SAMPLE_EVERY_POLLS == 0:
                self.world.children.sample()
            spent = time.monotonic() - began
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, LAG_POLL_INTERVAL_S - spent))
        return samples

    def _wants_projections(self) -> bool:
        return bool(self.projections_available and self.projection_names)

    async def after_load(
        self, since: float, timeout_s: float, quiet_s: float = QUIET_S
    ) -> dict[str, Any]:
        """Polls until the writer is idle and nothing lags; when each lag was zero for good.

        Requests still queued in the service when the generator stops keep
        committing for a while, so "zero lag" is only final once the head has
        stopped moving for ``quiet_s`` with every lag at zero; the time
        reported is that of the first sample after the last one with lag.
        """
        samples: list[LagSample] = []
        deadline = since + timeout_s
        head: int | None = None
        head_moved_at = since
        while time.monotonic() < deadline:
            s = await self.sample()
            samples.append(s)
            if s.head is not None and s.head != head:
                head, head_moved_at = s.head, s.at
            if self._zero(s) and s.at - head_moved_at >= quiet_s:
                break
            await asyncio.sleep(LAG_POLL_INTERVAL_S)
        heads = [s.head for s in samples if s.head is not None]
        return {
            "relay": _settled([(s.at, s.relay_lag_events) for s in samples], since),
            "projections": _settled([(s.at, s.projection_lag_events) for s in samples], since)
            if self._wants_projections()
            else None,
            "writer_busy_after_load_s": round(head_moved_at - since, 2),
            "events_committed_after_load": heads[-1] - heads[0] if heads else None,
        }

    def _zero(self, s: LagSample) -> bool:
        return s.relay_lag_events == 0 and (
            not self._wants_projections() or s.projection_lag_events == 0
        )


def _settled(lags: list[tuple[float, int | None]], since: float) -> float | None:
    """Seconds from ``since`` to the first sample after the last non-zero (or unknown) lag."""
    if not lags or lags[-1][1] != 0:
        return None
    last_lagging = max((i for i, (_, lag) in enumerate(lags) if lag != 0), default=-1)
    return lags[last_lagging + 1][0] - since


def summarize_lag(
    samples: list[LagSample], after: dict[str, Any], watch: LagWatch, timeout_s: float
) -> dict[str, Any]:
    proj_events = [s.projection_lag_events for s in samples if s.projection_lag_events is not None]
    proj_s = [s.projection_lag_s for s in samples if s.projection_lag_s is not None]
    relay = [s.relay_lag_events for s in samples if s.relay_lag_events is not None]
    projections: dict[str, Any] = {
        "available": watch._wants_projections(),
        "names": watch.projection_names,
        "samples": len(proj_events),
        "lag_events_p99": percentile([float(x) for x in proj_events], 99),
        "lag_events_max": max(proj_events) if proj_events else None,
        "lag_seconds_p99": _round(percentile(proj_s, 99), 3),
        "time_to_zero_lag_s": _round(after["projections"], 2),
    }
    if projections["available"] and after["projections"] is None:
        projections["timed_out_after_s"] = timeout_s
    relay_out: dict[str, Any] = {
        "samples": len(relay),
        "lag_events_p99": percentile([float(x) for x in relay], 99),
        "lag_events_max": max(relay) if relay else None,
        "time_to_zero_lag_s": _round(after["relay"], 2),
    }
    if after["relay"] is None:
        relay_out["timed_out_after_s"] = timeout_s
    return {
        "projections": projections,
        "relay": relay_out,
        "writer_busy_after_load_s": after["writer_busy_after_load_s"],
        "events_committed_after_load": after["events_committed_after_load"],
        "poll_errors": watch.errors,
    }
