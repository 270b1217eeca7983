"""The auditors' commands on an operator's mistakes (issue 13, point 6): one line
naming the mistake and exit 2, never a traceback, never a made-up answer."""

from __future__ import annotations

from pathlib import Path

from .conftest import CliRunner, History


async def test_verify_of_a_missing_file_names_it(cli: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    run = await cli("verify", "--file", str(missing))
    assert run.rc == 2, run
    assert f"no export file at {missing}" in run.err
    assert "Traceback" not in run.err and "FileNotFoundError" not in run.err


async def test_replay_of_an_unknown_seller_is_refused_like_the_api(
    cli: CliRunner, history: History
) -> None:
    """The API answers 404; replay answered zeros and exit 0, a balance for a typo."""
    await history.seller(f"s-{history.tag}")
    run = await cli(
        "replay", "--as-of", "2030-01-01T00:00:00Z", "--seller", f"nobody-{history.tag}"
    )
    assert (run.rc, run.out) == (2, ""), run
    assert f"seller nobody-{history.tag} is not registered" in run.err
    run = await cli("replay", "--as-of", "2030-01-01T00:00:00Z", "--seller", f"s-{history.tag}")
    assert run.rc == 0 and f"s-{history.tag}" in run.out, run
