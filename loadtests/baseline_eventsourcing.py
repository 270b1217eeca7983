"""Baseline for the benchmark: a plain ``eventsourcing`` Application on PostgreSQL.

Several threads each create one new aggregate and ``save`` it, over and over,
for a fixed time: one stored event per save, through the library's own
``PostgresApplicationRecorder`` (one transaction per save, the library's
table lock for ordering). That is what the ledger would cost written the
straightforward way with the library we build on, and the figure
``loadtests/bench.py`` divides the ledger's throughput by.

Configured only through the library's environment variables (the bench sets
them for a fresh database of its own)::

    PERSISTENCE_MODULE=eventsourcing.postgres POSTGRES_DBNAME=... POSTGRES_HOST=127.0.0.1 \\
    POSTGRES_PORT=5432 POSTGRES_USER=postgres POSTGRES_PASSWORD= \\
    python -m loadtests.baseline_eventsourcing --duration 10 --threads 8

Prints one JSON line: events, elapsed_s, events_per_s, per-save latency
percentiles, peak RSS of this process. Every loop is bounded by the deadline
and by ``--events-max``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

__all__ = ["main"]


class BenchItem(Aggregate):
    @event("Created")
    def __init__(self, seller_id: str, amount_minor: int) -> None:
        self.seller_id = seller_id
        self.amount_minor = amount_minor


class BenchApp(Application):
    """Its table is ``benchapp_events`` in the database the environment names."""


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def run(duration_s: float, threads: int, events_max: int) -> dict[str, Any]:
    app = BenchApp()
    # One save before the clock starts: the table exists and the pool is warm.
    app.save(BenchItem("warm-up", 1))
    stop_at = time.monotonic() + duration_s
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    per_thread_max = max(1, events_max // threads)
    start = threading.Barrier(threads + 1)

    def worker(index: int) -> None:
        mine = latencies[index]
        start.wait()
        while len(mine) < per_thread_max and time.monotonic() < stop_at:
            began = time.perf_counter()
            try:
                app.save(BenchItem(f"seller-{index}", 150_000_00))
            except Exception:
                errors[index] += 1
                if errors[index] > 100:
                    return
                continue
            mine.append(time.perf_counter() - began)

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    started = time.monotonic()
    start.wait()
    for w in workers:
        w.join(timeout=duration_s + 30)
    elapsed_s = time.monotonic() - started
    app.close()
    all_latencies = sorted(x for mine in latencies for x in mine)
    events = len(all_latencies)
    return {
        "events": events,
        "errors": sum(errors),
        "threads": threads,
        "elapsed_s": round(elapsed_s, 3),
        "events_per_s": round(events / elapsed_s, 1) if elapsed_s > 0 else 0.0,
        "latency_ms": {
            "p50": _ms(_percentile(all_latencies, 50)),
            "p99": _ms(_percentile(all_latencies, 99)),
        },
        "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--events-max", type=int, default=5_000_000)
    args = parser.parse_args(argv)
    result = run(args.duration, args.threads, args.events_max)
    print(json.dumps(result), flush=True)
    return 0 if result["events"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
