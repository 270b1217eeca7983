"""Throughput of ``verify_messages`` over a JSON Lines export; not a test (run by hand).

    .venv/bin/python -m tests.unit.audit.bench_verify [COUNT]

Writes COUNT generated chained messages (default 200,000) to a temporary
file, then times ``verify_messages(iter_jsonl(path))`` (parse + hash) and
``verify_messages(list)`` (hash only), best of three.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import orjson

from ledger.audit.chain import iter_jsonl, verify_messages
from tests.unit.audit.history import generated_log


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    log = generated_log(count)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events.jsonl"
        path.write_bytes(b"".join(orjson.dumps(m) + b"\n" for m in log))
        size_mb = path.stat().st_size / 1e6
        for label, source in (
            ("file (orjson per line + hash)", lambda: iter_jsonl(path)),
            ("in memory (hash only)", lambda: log),
        ):
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                report = verify_messages(source())
                best = min(best, time.perf_counter() - started)
                assert report.ok and report.checked == count, report
            print(f"{label}: {count} events in {best:.3f} s = {count / best:,.0f} events/s")
        print(f"export size {size_mb:.1f} MB, Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
