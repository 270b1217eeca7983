"""`omniledger export` (JSON Lines) and `omniledger verify --file` on the export.

The export is the auditor's copy of the log: it must verify on its own, be
the very objects of ``GET /v1/events``, show any altered line by position,
and ``--after`` / ``--until`` must cut exactly the positions asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from .conftest import CliRunner, History, Http, head
from .test_verify_live import write_history


def lines_of(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def rewrite(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


async def export_to(cli: CliRunner, path: Path, *args: str) -> Any:
    run = await cli("export", *args, stdout_path=path)
    assert run.rc == 0, run.err
    return run


async def test_export_verifies_and_equals_get_events(
    history: History, http: Http, apool: asyncpg.Pool, cli: CliRunner, tmp_path: Path
) -> None:
    written = await write_history(history)
    out = tmp_path / "events.jsonl"
    run = await export_to(cli, out)
    assert f"exported {written.head} events" in run.err

    exported = [orjson.loads(line) for line in lines_of(out)]
    assert [m["position"] for m in exported] == list(range(1, written.head + 1))
    assert exported == await http.events()
    assert exported[-1]["hash"] == (await head(apool))[1]

    check = await cli("verify", "--file", str(out))
    assert check.rc == 0, (check.out, check.err)
    assert check.out.startswith(
        f"ok: {written.head} events, chain intact, last hash {exported[-1]['hash']}"
    )


async def test_verify_file_works_without_a_database(
    history: History, cli: CliRunner, tmp_path: Path
) -> None:
    """An auditor checks an export on a machine with no access to the ledger."""
    from .conftest import run_cli

    written = await write_history(history)
    out = tmp_path / "events.jsonl"
    await export_to(cli, out)
    check = await run_cli(None, "verify", "--file", str(out))
    assert check.rc == 0, (check.out, check.err)
    assert check.out.startswith(f"ok: {written.head} events")


def _amount(message: dict[str, Any]) -> dict[str, Any]:
    assert message["type"] == "payment.captured"
    message["data"]["amount"] = "950000.00"
    return message


def _fee(message: dict[str, Any]) -> dict[str, Any]:
    message["data"]["fee"] = "0.00"
    return message


def _recorded_at(message: dict[str, Any]) -> dict[str, Any]:
    message["recorded_at"] = message["recorded_at"].replace("Z", "+00:00")
    return message


def _type(message: dict[str, Any]) -> dict[str, Any]:
    message["type"] = "payment.failed"
    return message


def _added_field(message: dict[str, Any]) -> dict[str, Any]:
    message["data"]["note"] = "added later"
    return message


EDITS = {"amount": _amount, "fee": _fee, "recorded_at spelling": _recorded_at,
         "type": _type, "added data field": _added_field}  # fmt: skip


@pytest.mark.parametrize("edit", list(EDITS))
async def test_an_altered_line_is_named(
    edit: str, history: History, cli: CliRunner, tmp_path: Path
) -> None:
    written = await write_history(history)
    out = tmp_path / "events.jsonl"
    await export_to(cli, out)
    lines = lines_of(out)
    index = written.capture - 1
    lines[index] = orjson.dumps(EDITS[edit](orjson.loads(lines[index])))
    rewrite(out, lines)
    run = await cli("verify", "--file", str(out))
    assert run.rc == 1, (run.out, run.err)
    assert f"BROKEN at position {written.capture}:" in run.out, run.out


async def test_a_textual_amount_edit_is_named(
    history: History, cli: CliRunner, tmp_path: Path
) -> None:
    """The edit an auditor fears most: one digit of an amount changed in a text editor."""
    written = await write_history(history)
    out = tmp_path / "events.jsonl"
    await export_to(cli, out)
    lines = lines_of(out)
    index = written.refund - 1
    assert b'"amount":"50000.00"' in lines[index]
    lines[index] = lines[index].replace(b'"amount":"50000.00"', b'"amount":"5000.00"')
    rewrite(out, lines)
    run = await cli("verify", "--file", str(out))
    assert run.rc == 1
    assert f"BROKEN at position {written.refund}:" in run.out, run.out


async def test_removed_swapped_and_garbled_lines_are_named(
    history: History, cli: CliRunner, tmp_path: Path
) -> None:
    written = await write_history(history)
    out = tmp_path / "events.jsonl"
    await export_to(cli, out)
    original = lines_of(out)
    p = written.capture

    removed = original[: p - 1] + original[p:]
    rewrite(out, removed)
    run = await cli("verify", "--file", str(out))
    assert (run.rc, f"BROKEN at position {p}:" in run.out) == (1, True), run.out

    swapped = list(original)
    swapped[p - 1], swapped[p] = swapped[p], swapped[p - 1]
    rewrite(out, swapped)
    run = await cli("verify", "--file", str(out))
    assert run.rc == 1
    assert f"BROKEN at position {p}:" in run.out or f"BROKEN at position {p + 1}:" in run.out, (
        run.out
    )

    garbled = list(original)
    garbled[p - 1] = b'{"position": ' + str(p).encode() + b', "oops'
    rewrite(out, garbled)
    run = await cli("verify", "--file", str(out))
    assert (run.rc, f"BROKEN at position {p}:" in run.out) == (1, True), (run.out, run.err)
    assert "Traceback" not in run.err

    binary = list(original)
    binary[p - 1] = b"\xff\xfe\x00\x01"
    rewrite(out, binary)
    run = await cli("verify", "--file", str(out))
    assert (run.rc, f"BROKEN at position {p}:" in run.out) == (1, True), (run.out, run.err)
    assert "Traceback" not in run.err


async def test_an_export_with_its_first_lines_cut_off_does_not_verify(
    history: History, cli: CliRunner, tmp_path: Path
) -> None:
    """Without ``--window`` an export must start at position 1: lines deleted off
    its top are otherwise indistinguishable from a window and verified "ok"."""
    await write_history(history)
    out = tmp_path / "events.jsonl"
    await export_to(cli, out)
    rewrite(out, lines_of(out)[3:])
    run = await cli("verify", "--file", str(out))
    assert (run.rc, run.out.startswith("BROKEN at position 1:")) == (1, True), run.out
    assert "--window" in run.out
    # the same file declared a window: its start is taken on trust, and it says so
    run = await cli("verify", "--file", str(out), "--window")
    assert run.rc == 0, run.out
    assert "taken on trust" in run.err


async def test_a_window_export_verifies_with_window(
    history: History, cli: CliRunner, tmp_path: Path
) -> None:
    await write_history(history)
    out = tmp_path / "window.jsonl"
    await export_to(cli, out, "--after", "4")
    assert (await cli("verify", "--file", str(out))).rc == 1
    assert (await cli("verify", "--file", str(out), "--window")).rc == 0


async def test_export_of_a_tampered_log_does_not_verify(
    history: History, apool: asyncpg.Pool, cli: CliRunner, tmp_path: Path
) -> None:
    written = await write_history(history)
    await apool.execute(
        "UPDATE omniledger_events SET recorded_at = recorded_at - interval '1 day'"
        " WHERE notification_id = $1",
        written.payout,
    )
    out = tmp_path / "events.jsonl"
    await export_to(cli, out)
    run = await cli("verify", "--file", str(out))
    assert run.rc == 1
    assert f"BROKEN at position {written.payout}:" in run.out, run.out


@pytest.mark.parametrize(
    ("after", "until"),
    [
        (0, None),
        (3, None),
        (0, 5),
        (3, 8),
        (7, 7),
        (7, 8),
        (None, None),
        (100, None),
        (8, 3),
        (0, 1),
    ],
)
async def test_windows_export_exactly_those_positions(
    after: int | None, until: int | None, history: History, cli: CliRunner, tmp_path: Path
) -> None:
    written = await write_history(history)
    full = tmp_path / "all.jsonl"
    await export_to(cli, full)
    everything = lines_of(full)

    args: list[str] = []
    if after is not None:
        args += ["--after", str(after)]
    if until is not None:
        args += ["--until", str(until)]
    window = tmp_path / "window.jsonl"
    run = await export_to(cli, window, *args)

    first = (after or 0) + 1
    last = min(until if until is not None else written.head, written.head)
    expected = list(range(first, last + 1))
    got = lines_of(window)
    assert [orjson.loads(line)["position"] for line in got] == expected
    assert got == [everything[p - 1] for p in expected]  # byte for byte the same lines
    assert f"exported {len(expected)} events" in run.err


async def test_consecutive_windows_add_up_to_the_log(
    history: History, http: Http, cli: CliRunner, tmp_path: Path
) -> None:
    written = await write_history(history)
    cut = written.head // 2
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    await export_to(cli, a, "--until", str(cut))
    await export_to(cli, b, "--after", str(cut))
    joined = tmp_path / "joined.jsonl"
    rewrite(joined, lines_of(a) + lines_of(b))
    assert [orjson.loads(line) for line in lines_of(joined)] == await http.events()
    run = await cli("verify", "--file", str(joined))
    assert run.rc == 0, run.out


async def test_bad_window_arguments_exit_2(cli: CliRunner) -> None:
    run = await cli("export", "--after", "abc")
    assert run.rc == 2
    assert "--after" in run.err
    run = await cli("export", "--format", "csv")
    assert run.rc == 2
