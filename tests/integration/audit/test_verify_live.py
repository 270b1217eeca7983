"""`omniledger verify` on the live log: tampering in PostgreSQL is detected and named.

A history is written through the real Ledger, then one row of
``omniledger_events`` is altered behind the ledger's back with plain SQL, as
an operator with database access could. ``omniledger verify`` must exit 1
and print the first bad position (CONTRACT section 7, DESIGN rule 6); an
intact log exits 0.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import pytest

from ledger.contract.messages import chain_hash
from ledger.domain.catalog import TYPE_BY_TOPIC
from ledger.store.log import message_from_row

from .conftest import CliRunner, History, head, run_cli

D = "2026-11-30"


@dataclass
class Written:
    head: int
    capture: int  # a payment.captured in the middle of the log
    refund: int
    payout: int
    last: int


async def write_history(history: History) -> Written:
    """Two sellers; orders, captures with fees, a refund, a cancellation, a payout."""
    t = history.tag
    s1, s2 = f"s1-{t}", f"s2-{t}"
    await history.seller(s1)
    await history.seller(s2)
    await history.place(s1, f"o1-{t}", "150000", f"{D}T09:00:00+08:00")
    await history.place(s1, f"o2-{t}", "75000", f"{D}T09:05:00+08:00")
    await history.place(s2, f"o3-{t}", "20000", f"{D}T09:10:00+08:00", channel="shopee")
    capture = await history.capture(f"o1-{t}", "150000", f"{D}T10:00:00+08:00", fee="1050")
    await history.capture(f"o2-{t}", "75000", f"{D}T10:05:00+08:00", fee="1500")
    await history.capture(f"o3-{t}", "20000", f"{D}T10:10:00+08:00", channel="shopee")
    refund = await history.refund(f"o1-{t}", "50000", f"{D}T11:00:00+08:00")
    await history.place(s2, f"o4-{t}", "99000", f"{D}T12:00:00+08:00")
    await history.cancel(f"o4-{t}", f"{D}T12:30:00+08:00")
    payout = await history.payout(s1, "100000", f"{D}T17:30:00Z")
    last = await history.place(s1, f"o5-{t}", "5000", "2026-12-01T08:00:00+08:00")
    return Written(last.position, capture.position, refund.position, payout.position, last.position)


async def row(pool: asyncpg.Pool, position: int) -> asyncpg.Record:
    r = await pool.fetchrow("SELECT * FROM omniledger_events WHERE notification_id = $1", position)
    assert r is not None, position
    return r


async def set_state(pool: asyncpg.Pool, position: int, state: bytes | None) -> None:
    status = await pool.execute(
        "UPDATE omniledger_events SET state = $2 WHERE notification_id = $1", position, state
    )
    assert status == "UPDATE 1"


async def edit_state(pool: asyncpg.Pool, position: int, **changes: Any) -> None:
    """Changes fields inside the stored JSON state of one row (still valid JSON)."""
    r = await row(pool, position)
    state = orjson.loads(r["state"])
    for name, value in changes.items():
        assert name in state, (name, state)
        state[name] = value
    await set_state(pool, position, orjson.dumps(state))


async def reseal(pool: asyncpg.Pool, first: int, last: int, prev: str) -> str:
    """Re-chains rows ``first``..``last`` onto ``prev`` as a forger would; returns the last hash."""
    for position in range(first, last + 1):
        forged = message_from_row(await row(pool, position))
        forged["prev_hash"] = prev
        new_hash = chain_hash(prev, forged)
        await pool.execute(
            "UPDATE omniledger_events SET hash = $2, prev_hash = $3 WHERE notification_id = $1",
            position,
            new_hash,
            prev,
        )
        prev = new_hash
    return prev


def assert_broken_at(run: Any, position: int) -> None:
    assert run.rc == 1, (run.rc, run.out, run.err)
    assert f"BROKEN at position {position}:" in run.out, (run.out, run.err)
    assert "Traceback" not in run.err, run.err


async def test_an_intact_log_verifies(
    history: History, apool: asyncpg.Pool, cli: CliRunner
) -> None:
    written = await write_history(history)
    before = await head(apool)
    run = await cli("verify")
    assert run.rc == 0, (run.out, run.err)
    assert run.out.startswith(f"ok: {written.head} events, chain intact, last hash {before[1]}")
    assert await head(apool) == before  # verify writes nothing


async def test_an_empty_log_verifies(apool: asyncpg.Pool, cli: CliRunner) -> None:
    run = await cli("verify")
    assert run.rc == 0, (run.out, run.err)
    assert run.out.startswith("ok: 0 events")


# -- one alteration per test --------------------------------------------------------------


async def _amount_in_state(pool: asyncpg.Pool, w: Written) -> int:
    r = await row(pool, w.capture)
    assert orjson.loads(r["state"])["amount_minor"] == 15_000_000
    await edit_state(pool, w.capture, amount_minor=95_000_000)
    return w.capture


async def _fee_in_state(pool: asyncpg.Pool, w: Written) -> int:
    await edit_state(pool, w.capture, fee_minor=0)
    return w.capture


async def _seller_in_state(pool: asyncpg.Pool, w: Written) -> int:
    await edit_state(pool, w.payout, seller_id="someone-else")
    return w.payout


async def _occurred_at_in_state(pool: asyncpg.Pool, w: Written) -> int:
    await edit_state(pool, w.refund, occurred_at="2026-11-29T11:00:00+08:00")
    return w.refund


async def _recorded_at_one_microsecond(pool: asyncpg.Pool, w: Written) -> int:
    await pool.execute(
        "UPDATE omniledger_events SET recorded_at = recorded_at + interval '1 microsecond'"
        " WHERE notification_id = $1",
        w.refund,
    )
    return w.refund


async def _type_column(pool: asyncpg.Pool, w: Written) -> int:
    await pool.execute(
        "UPDATE omniledger_events SET type = 'payment.failed' WHERE notification_id = $1",
        w.capture,
    )
    return w.capture


async def _topic_column(pool: asyncpg.Pool, w: Written) -> int:
    refund_topic = next(t for t, name in TYPE_BY_TOPIC.items() if name == "refund.issued")
    await pool.execute(
        "UPDATE omniledger_events SET topic = $2 WHERE notification_id = $1",
        w.capture,
        refund_topic,
    )
    return w.capture


async def _delete_middle_row(pool: asyncpg.Pool, w: Written) -> int:
    assert (
        await pool.execute("DELETE FROM omniledger_events WHERE notification_id = $1", w.refund)
        == "DELETE 1"
    )
    return w.refund


async def _delete_last_row(pool: asyncpg.Pool, w: Written) -> int:
    assert (
        await pool.execute("DELETE FROM omniledger_events WHERE notification_id = $1", w.last)
        == "DELETE 1"
    )
    return w.last


async def _hash_column(pool: asyncpg.Pool, w: Written) -> int:
    await pool.execute(
        "UPDATE omniledger_events SET hash = $2 WHERE notification_id = $1",
        w.capture,
        hashlib.sha256(b"forged").hexdigest(),
    )
    return w.capture


async def _prev_hash_column(pool: asyncpg.Pool, w: Written) -> int:
    await pool.execute(
        "UPDATE omniledger_events SET prev_hash = $2 WHERE notification_id = $1",
        w.capture,
        "0" * 64,
    )
    return w.capture


async def _version_column(pool: asyncpg.Pool, w: Written) -> int:
    await pool.execute(
        "UPDATE omniledger_events SET originator_version = 99 WHERE notification_id = $1",
        w.refund,
    )
    return w.refund


async def _stream_column(pool: asyncpg.Pool, w: Written) -> int:
    await pool.execute(
        "UPDATE omniledger_events SET originator_id = $2 WHERE notification_id = $1",
        w.payout,
        uuid.uuid4(),
    )
    return w.payout


async def _state_binary_junk(pool: asyncpg.Pool, w: Written) -> int:
    await set_state(pool, w.capture, b"\x00\xff\xfe junk \x01")
    return w.capture


async def _state_a_json_array(pool: asyncpg.Pool, w: Written) -> int:
    await set_state(pool, w.capture, b"[1, 2, 3]")
    return w.capture


async def _state_null(pool: asyncpg.Pool, w: Written) -> int:
    await set_state(pool, w.capture, None)
    return w.capture


async def _state_an_empty_object(pool: asyncpg.Pool, w: Written) -> int:
    await set_state(pool, w.capture, b"{}")
    return w.capture


async def _state_without_occurred_at(pool: asyncpg.Pool, w: Written) -> int:
    r = await row(pool, w.capture)
    state = orjson.loads(r["state"])
    del state["occurred_at"]
    await set_state(pool, w.capture, orjson.dumps(state))
    return w.capture


async def _resealed_row(pool: asyncpg.Pool, w: Written) -> int:
    """The forger changes an amount and recomputes that row's own hash: the next row breaks."""
    await edit_state(pool, w.capture, amount_minor=95_000_000)
    forged = message_from_row(await row(pool, w.capture))
    new_hash = chain_hash(forged["prev_hash"], forged)
    await pool.execute(
        "UPDATE omniledger_events SET hash = $2 WHERE notification_id = $1", w.capture, new_hash
    )
    return w.capture + 1


ALTERATIONS = {
    "amount in state": _amount_in_state,
    "fee in state": _fee_in_state,
    "seller in state": _seller_in_state,
    "occurred_at in state": _occurred_at_in_state,
    "recorded_at +1us": _recorded_at_one_microsecond,
    "type column": _type_column,
    "topic column": _topic_column,
    "middle row deleted": _delete_middle_row,
    "last row deleted": _delete_last_row,
    "hash column": _hash_column,
    "prev_hash column": _prev_hash_column,
    "originator_version": _version_column,
    "originator_id": _stream_column,
    "state binary junk": _state_binary_junk,
    "state a JSON array": _state_a_json_array,
    "state NULL": _state_null,
    "state {}": _state_an_empty_object,
    "state without occurred_at": _state_without_occurred_at,
    "row re-sealed": _resealed_row,
}


#: One process, and three: ranges (0, 4], (4, 8], (8, 13] of the 13-event history
#: verified by this process and two forked helpers, then stitched.
PROCESSES = {"one process": ("--workers", "1"), "three processes": ("--workers", "3")}


@pytest.mark.parametrize("processes", list(PROCESSES))
@pytest.mark.parametrize("alteration", list(ALTERATIONS))
async def test_an_altered_row_is_detected_and_named(
    alteration: str, processes: str, history: History, apool: asyncpg.Pool, cli: CliRunner
) -> None:
    written = await write_history(history)
    bad = await ALTERATIONS[alteration](apool, written)
    run = await cli("verify", *PROCESSES[processes])
    assert_broken_at(run, bad)
    assert f"({bad - 1} events before it are intact)" in run.out, run.out


@pytest.mark.parametrize("processes", list(PROCESSES))
async def test_an_intact_log_verifies_in_ranges(
    processes: str, history: History, apool: asyncpg.Pool, cli: CliRunner
) -> None:
    written = await write_history(history)
    run = await cli("verify", *PROCESSES[processes])
    assert run.rc == 0, (run.out, run.err)
    _, head_hash = await head(apool)
    assert run.out.startswith(f"ok: {written.head} events, chain intact, last hash {head_hash}")


@pytest.mark.parametrize("processes", list(PROCESSES))
@pytest.mark.parametrize("position", [4, 5, 6, 8, 9])
async def test_a_resealed_chain_and_head_are_named_where_the_link_breaks(
    position: int, processes: str, history: History, apool: asyncpg.Pool, cli: CliRunner
) -> None:
    """The forger re-chains every row from ``position`` on and rewrites the head
    to match: only the link into ``position`` is left broken. With ranges, each
    helper takes its first ``prev_hash`` on trust, so at a range's first row
    (5 and 9) only the stitch of the ranges can see it."""
    written = await write_history(history)
    assert written.head == 13  # the boundaries above assume (0, 4], (4, 8], (8, 13]
    forged_prev = hashlib.sha256(b"a chain of the forger's own").hexdigest()
    last = await reseal(apool, position, written.head, forged_prev)
    await apool.execute("UPDATE ledger_head SET hash = $1", last)
    run = await cli("verify", *PROCESSES[processes])
    assert_broken_at(run, position)
    assert f"({position - 1} events before it are intact)" in run.out, run.out


async def test_more_processes_than_events(
    history: History, apool: asyncpg.Pool, cli: CliRunner
) -> None:
    await history.seller(f"only-{history.tag}")
    run = await cli("verify", "--workers", "4")
    assert run.rc == 0, (run.out, run.err)
    assert run.out.startswith("ok: 1 events, chain intact")


async def test_the_first_of_two_alterations_is_named(
    history: History, apool: asyncpg.Pool, cli: CliRunner
) -> None:
    written = await write_history(history)
    await edit_state(apool, written.payout, amount_minor=1)
    await edit_state(apool, written.refund, amount_minor=1)
    assert written.refund < written.payout
    assert_broken_at(await cli("verify"), written.refund)


async def test_a_resealed_tail_is_detected_by_the_head(
    history: History, apool: asyncpg.Pool, cli: CliRunner
) -> None:
    """A forger who re-chains every row after the one changed still leaves the head's hash.

    Which position was first changed cannot be known from the database alone
    here (the chain is self-consistent), but the log must not verify.
    """
    written = await write_history(history)
    await edit_state(apool, written.capture, amount_minor=95_000_000)
    prev = (await row(apool, written.capture))["prev_hash"]
    await reseal(apool, written.capture, written.head, prev)
    run = await cli("verify")
    assert run.rc == 1, (run.out, run.err)
    assert "BROKEN at position" in run.out, run.out


# -- what the hash does not cover but readers of the table rely on ----------------------


async def test_a_changed_occurred_at_column_is_detected(
    history: History, apool: asyncpg.Pool, cli: CliRunner
) -> None:
    """The ``occurred_at`` column is what reconciliation selects a day's money by
    (``LedgerStore.money_events_between``); moving a capture to another day there
    changes a reconciliation's findings, so verify must see it disagree with the
    event's own (hashed) ``occurred_at``.
    """
    written = await write_history(history)
    await apool.execute(
        "UPDATE omniledger_events SET occurred_at = occurred_at + interval '3 days'"
        " WHERE notification_id = $1",
        written.capture,
    )
    assert_broken_at(await cli("verify"), written.capture)


async def test_a_changed_originator_topic_in_state_is_detected(
    history: History, apool: asyncpg.Pool, cli: CliRunner
) -> None:
    """The library builds the aggregate class named by a created event's
    ``originator_topic`` inside ``state``; changing it changes what the
    library reads from the row, exactly like changing the ``topic`` column.
    """
    written = await write_history(history)
    first_seller_row = 1
    state = orjson.loads((await row(apool, first_seller_row))["state"])
    assert state["originator_topic"] == "ledger.domain.sellers:Seller"
    await edit_state(apool, first_seller_row, originator_topic="ledger.domain.orders:Order")
    assert written.head > 1
    assert_broken_at(await cli("verify"), first_seller_row)


@pytest.mark.parametrize("command", [("verify",), ("replay", "--as-of", "2026-12-01T00:00:00Z")])
async def test_an_unreachable_database_is_exit_2_not_a_broken_chain(
    command: tuple[str, ...],
) -> None:
    """Exit 1 from verify means "tampered"; not reaching PostgreSQL must not look like it."""
    run = await run_cli("postgresql://postgres@127.0.0.1:9/nowhere", *command)
    assert run.rc == 2, (run.rc, run.out, run.err)
    assert "Traceback" not in run.err, run.err
    assert f"omniledger {command[0]}: ConnectionRefusedError" in run.err, run.err
    assert "BROKEN" not in run.out and "ok:" not in run.out


async def test_the_read_only_commands_run_with_a_read_only_role(
    history: History, apool: asyncpg.Pool, fresh_db: str
) -> None:
    """An auditor's role that may only SELECT (or a read replica): verify,
    export and replay read the schema's version, they never migrate it."""
    await write_history(history)
    role = f"auditor_{uuid.uuid4().hex[:8]}"
    await apool.execute(f"CREATE ROLE {role} LOGIN")
    try:
        await apool.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        await apool.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        dsn = fresh_db.replace("postgresql://postgres@", f"postgresql://{role}@")
        for args in (["verify"], ["export"], ["replay", "--as-of", "2100-01-01T00:00:00Z"]):
            run = await run_cli(dsn, *args)
            assert run.rc == 0, (args, run.out, run.err)
            assert "migrations applied" not in run.err, run.err
    finally:
        await apool.execute(f"DROP OWNED BY {role}")
        await apool.execute(f"DROP ROLE {role}")


async def test_an_unmigrated_database_is_named_not_migrated_by_a_read(
    pg_admin_dsn: str, tmp_path: Any
) -> None:
    name = f"omniledger_unmigrated_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        from tests.support.servers import with_database

        run = await run_cli(with_database(pg_admin_dsn, name), "verify")
        assert run.rc == 2, (run.out, run.err)
        assert "omniledger migrate" in run.err and "Traceback" not in run.err, run.err
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
