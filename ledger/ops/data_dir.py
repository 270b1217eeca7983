"""The data folder of ``omniledger up`` (``./.omniledger`` by default): what one
``up`` leaves there for the next command, and the lock that keeps a second
``up`` out of it.

- ``env``: the URLs of the embedded servers ``up`` started, read by every
  other command run with the same data folder (``remembered_env``), so that
  ``omniledger verify`` after ``up`` finds its database.
- ``up.lock``: held (``flock``) while an ``up`` runs there (``hold_lock``).
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ledger.ops.settings import Settings

__all__ = ["ENV_FILE", "DataDirBusy", "hold_lock", "remember", "remembered_env"]

log = logging.getLogger("omniledger")

#: Where ``up`` writes the URLs of the embedded servers it started, for the
#: commands run in the same data folder (and for a shell: ``. .omniledger/env``).
ENV_FILE: Final = "env"


def remember(data_dir: Path, settings: Settings) -> None:
    lines = [
        f"{name}={value}"
        for name, value in (
            ("OMNILEDGER_DATABASE_URL", settings.database_url),
            ("OMNILEDGER_NATS_URL", settings.nats_url),
        )
        if value
    ]
    (data_dir / ENV_FILE).write_text("\n".join(lines) + "\n")
    for line in lines:
        log.info("%s (written to %s)", line, data_dir / ENV_FILE)


def remembered_env(data_dir: Path) -> dict[str, str]:
    """The URLs an ``up`` in ``data_dir`` wrote down (empty when none did)."""
    try:
        text = (data_dir / ENV_FILE).read_text()
    except OSError:
        return {}
    found = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.startswith("OMNILEDGER_") and value.strip():
            found[name.strip()] = value.strip()
    return found


class DataDirBusy(Exception):
    """Another ``up`` holds the data folder."""


def hold_lock(data_dir: Path) -> IO[str]:
    """Takes ``data_dir/up.lock`` for as long as the returned file stays open.

    Checked before anything starts: a second ``up`` in the same folder used to
    start PostgreSQL and fail on its lock file with a 25-line server log.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = (data_dir / "up.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        raise DataDirBusy(
            f"another omniledger up (pid {holder}) is running with the data folder {data_dir};"
            " stop it, or give this one its own folder (OMNILEDGER_DATA_DIR)"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock
