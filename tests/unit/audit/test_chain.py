"""The hash chain check: an intact log passes; any alteration names the first bad position."""

from __future__ import annotations

import copy
from pathlib import Path

import orjson
import pytest

from ledger.audit.chain import ChainReport, MalformedExport, iter_jsonl, verify_messages
from ledger.contract.messages import GENESIS_HASH
from tests.unit.audit.history import generated_log

LOG = generated_log(1000)


@pytest.fixture
def log() -> list[dict]:
    return copy.deepcopy(LOG)


def write_jsonl(path: Path, messages: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(m) + b"\n" for m in messages))
    return path


def test_an_intact_chain_of_1000_passes(log: list[dict]) -> None:
    report = verify_messages(log, start_position=1)
    assert report == ChainReport(True, 1000, None, None, log[-1]["hash"])


def test_an_intact_export_file_passes(log: list[dict], tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", log)
    assert verify_messages(iter_jsonl(path)).ok


def test_a_window_verifies_from_the_hash_before_it(log: list[dict]) -> None:
    report = verify_messages(log[500:], start_prev_hash=log[499]["hash"], start_position=501)
    assert report.ok and report.checked == 500
    assert not verify_messages(log[500:]).ok  # not from the genesis


def test_altered_amount_in_data_is_found(log: list[dict]) -> None:
    captured = next(m for m in log[300:] if m["type"] == "payment.captured")
    captured["data"]["amount"] = "1.00"
    report = verify_messages(log)
    assert not report.ok
    assert report.first_bad_position == captured["position"]
    assert report.checked == captured["position"] - 1
    assert report.last_hash == log[captured["position"] - 2]["hash"]
    assert "does not match its content" in report.reason


def test_an_added_field_in_data_is_found(log: list[dict]) -> None:
    log[10]["data"]["note"] = "x"
    assert verify_messages(log).first_bad_position == 11


def test_altered_recorded_at_is_found(log: list[dict]) -> None:
    log[641]["recorded_at"] = "2026-01-01T00:00:00Z"
    assert verify_messages(log).first_bad_position == 642


def test_altered_hash_is_found_at_that_position(log: list[dict]) -> None:
    log[99]["hash"] = "f" * 64
    report = verify_messages(log)
    assert report.first_bad_position == 100
    assert "hash at 100" in report.reason


def test_a_rehashed_message_breaks_the_link_to_the_next(log: list[dict]) -> None:
    from ledger.contract.messages import chain_hash

    # a careful forger recomputes the altered message's hash: the next link breaks
    log[99]["data"]["amount"] = "1.00"
    log[99]["hash"] = chain_hash(log[99]["prev_hash"], log[99])
    report = verify_messages(log)
    assert report.first_bad_position == 101
    assert "prev_hash" in report.reason


def test_a_deleted_line_names_the_missing_position(log: list[dict], tmp_path: Path) -> None:
    del log[456]  # position 457
    path = write_jsonl(tmp_path / "events.jsonl", log)
    report = verify_messages(iter_jsonl(path))
    assert not report.ok
    assert report.first_bad_position == 457
    assert "457 is missing" in report.reason
    assert report.checked == 456


def test_a_deleted_first_line_is_found(log: list[dict]) -> None:
    assert verify_messages(log[1:]).first_bad_position == 2
    assert verify_messages(log[1:], start_position=1).first_bad_position == 1


def test_deleted_last_lines_need_the_expected_last_hash(log: list[dict]) -> None:
    assert verify_messages(log[:-2]).ok  # the export alone cannot tell
    report = verify_messages(log[:-2], expect_last_hash=log[-1]["hash"])
    assert not report.ok and report.first_bad_position == 999


def test_swapped_lines_are_found(log: list[dict]) -> None:
    log[20], log[21] = log[21], log[20]
    report = verify_messages(log)
    assert report.first_bad_position == 21 and "missing" in report.reason


def test_a_repeated_line_is_found(log: list[dict]) -> None:
    log.insert(31, log[30])
    report = verify_messages(log)
    assert report.first_bad_position == 31 and "out of order" in report.reason


def test_a_malformed_line_is_a_break_at_its_position(log: list[dict], tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", log)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[700] = lines[700][:50] + b"\n"  # truncated JSON on line 701
    path.write_bytes(b"".join(lines))
    report = verify_messages(iter_jsonl(path))
    assert not report.ok
    assert report.first_bad_position == 701
    assert report.checked == 700
    assert report.reason.startswith("line 701: not valid JSON")


def test_iter_jsonl_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"position": 1}\n\n[1, 2]\n')
    lines = iter_jsonl(path)
    assert next(lines) == {"position": 1}
    with pytest.raises(MalformedExport) as caught:
        next(lines)
    assert caught.value.line == 3
    assert caught.value.as_dict()["code"] == "invalid_export"


def test_invalid_utf8_is_a_malformed_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"position": "\xff"}\n')
    report = verify_messages(iter_jsonl(path), start_position=1)
    assert (report.ok, report.first_bad_position) == (False, 1)


def test_a_message_without_position_is_a_break(log: list[dict]) -> None:
    del log[5]["position"]
    report = verify_messages(log)
    assert (report.ok, report.first_bad_position) == (False, 6)


def test_a_message_missing_a_hashed_field_is_a_break(log: list[dict]) -> None:
    del log[7]["recorded_at"]
    report = verify_messages(log)
    assert (report.ok, report.first_bad_position) == (False, 8)
    assert "cannot be hashed" in report.reason


def test_progress_is_reported(log: list[dict]) -> None:
    seen: list[tuple[int, int]] = []
    verify_messages(
        log, on_progress=lambda checked, at: seen.append((checked, at)), progress_every=300
    )
    assert seen == [(300, 300), (600, 600), (900, 900), (1000, 1000)]


def test_an_empty_log_is_intact() -> None:
    assert verify_messages([]) == ChainReport(True, 0, None, None, GENESIS_HASH)
