"""`omniledger verify` of the live log keeps its outcome for the dasbor (issue 14):
beside the log, never in it; ``dasbor_reads.last_verify`` answers the last one."""

from __future__ import annotations

import asyncpg

from projections.dasbor_reads import last_verify

from .conftest import CliRunner, History, head
from .test_verify_live import edit_state, write_history


async def test_each_verify_records_its_outcome_and_the_last_is_read(
    history: History, apool: asyncpg.Pool, cli: CliRunner
) -> None:
    assert await last_verify(apool) is None
    written = await write_history(history)
    before = await head(apool)
    run = await cli("verify")
    assert run.rc == 0, (run.out, run.err)
    first = await last_verify(apool)
    assert first is not None
    assert {k: first[k] for k in ("ok", "events", "head_position", "problems")} == {
        "ok": True, "events": written.head, "head_position": written.head,
        "problems": []}  # fmt: skip
    assert await head(apool) == before, "the outcome is not an event of the log"

    await edit_state(apool, written.capture, amount_minor=1)
    run = await cli("verify")
    assert run.rc == 1, (run.out, run.err)
    last = await last_verify(apool)
    assert last is not None and last["at"] >= first["at"]
    assert (last["ok"], last["events"], last["head_position"]) == (
        False, written.capture - 1, written.head)  # fmt: skip
    [problem] = last["problems"]
    assert problem.startswith(f"position {written.capture}: "), problem
    assert await apool.fetchval("SELECT count(*) FROM verify_runs") == 2
