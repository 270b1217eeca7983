"""CPU seconds spent during a phase, for the whole box and per process, from ``/proc``.

Events per second say how fast; on a box whose two cores run the service, its
relay and read models, PostgreSQL and the load generator at once, CPU seconds
per event say where the time went: which part bounds the rate, and what a
baseline that runs less of it spends. Linux only; a process that exits during
the phase counts up to its last reading (none, if it was never read).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["CpuSnapshot", "argv_of", "box_busy_s", "pids_named", "process_cpu_s", "snapshot"]

_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def box_busy_s() -> float:
    """CPU seconds every core has spent busy since boot (``/proc/stat``: all but idle
    and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    # guest time is already counted in user and nice
    return (sum(fields[:8]) - idle) * _TICK_S


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return (int(rest[11]) + int(rest[12])) * _TICK_S


@dataclass
class CpuSnapshot:
    box_s: float
    #: part name -> pid -> CPU seconds so far
    parts: dict[str, dict[int, float]] = field(default_factory=dict)

    def per_event_us(self, later: CpuSnapshot, events: int) -> dict[str, float | None]:
        """Microseconds of CPU per event between this snapshot and ``later``: the box,
        then each part (read with the same pids both times)."""
        if events <= 0:
            return {"box": None}
        out: dict[str, float | None] = {"box": round((later.box_s - self.box_s) / events * 1e6, 1)}
        for name, now in later.parts.items():
            before = self.parts.get(name, {})
            spent = sum(cpu - before.get(pid, 0.0) for pid, cpu in now.items())
            out[name] = round(spent / events * 1e6, 1)
        return out


def snapshot(parts: Mapping[str, Iterable[int]]) -> CpuSnapshot:
    """The box's busy seconds and each named part's processes' CPU seconds, now."""
    read: dict[str, dict[int, float]] = {}
    for name, pids in parts.items():
        read[name] = {pid: cpu for pid in pids if (cpu := process_cpu_s(pid)) is not None}
    return CpuSnapshot(box_busy_s(), read)


def pids_named(comm: str) -> list[int]:
    """Processes whose command name is ``comm`` (``/proc/PID/comm``), e.g. the NATS server."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == comm:
                        found.append(int(entry))
            except OSError:
                continue
    return found


def argv_of(pid: int) -> list[str] | None:
    """The command line of ``pid``, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace").split("\0")
    except OSError:
        return None
