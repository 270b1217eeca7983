"""The stdlib verifier printed in docs/auditing.md, run as written against a real export.

The block is taken from the page itself, so the page cannot drift from the
formula the ledger hashes with; it runs with ``python -I -S`` (no site
packages: the standard library alone, as an auditor would have it).
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import orjson

from .conftest import CliRunner, History, head
from .test_verify_live import write_history

DOC = Path(__file__).resolve().parents[3] / "docs" / "auditing.md"


def verifier_source() -> str:
    text = DOC.read_text(encoding="utf-8")
    marker = text.index("test_auditing_doc.py")
    block = re.search(r"```python\n(.*?)```", text[marker:], re.S)
    assert block is not None, "docs/auditing.md lost its verifier"
    return block.group(1)


async def run_verifier(script: Path, export: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-S", str(script), str(export),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, (out + err).decode()


async def test_the_documented_verifier_checks_a_real_export(
    cli: CliRunner, history: History, apool, tmp_path: Path
) -> None:
    source = verifier_source()
    assert len(source.strip().splitlines()) <= 22, "the page promises about twenty lines"
    written = await write_history(history)
    await history.ledger.register_seller(  # text the canonical form must not escape
        seller_id=f"s3-{history.tag}",
        name="Warung Daeng Tata \u2014 caf\u00e9 \u2028 \U0001f35c",
        district="Ujung Pandang",
        nib=None,
        channels={},
        occurred_at="2026-11-02T09:00:00+08:00",
        fingerprint=b"s3",
    )
    export = tmp_path / "events.jsonl"
    run = await cli("export", stdout_path=export)
    assert run.rc == 0, run.err
    script = tmp_path / "verify_chain.py"
    script.write_text(source, encoding="utf-8")

    position, last_hash = await head(apool)
    assert position > written.head
    rc, out = await run_verifier(script, export)
    assert (rc, out.strip()) == (0, f"ok: {position} events, last hash {last_hash}")

    lines = export.read_bytes().splitlines()
    altered = orjson.loads(lines[written.capture - 1])
    altered["data"]["amount"] = "1.00"
    changed = tmp_path / "changed.jsonl"
    changed.write_bytes(b"\n".join([*lines[: written.capture - 1], orjson.dumps(altered),
                                    *lines[written.capture :]]) + b"\n")  # fmt: skip
    rc, out = await run_verifier(script, changed)
    assert rc == 1 and f"broken at position {written.capture}: the event was altered" in out

    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(b"\n".join(lines[:2] + lines[3:]) + b"\n")
    rc, out = await run_verifier(script, cut)
    assert rc == 1 and "broken at position 3: it is missing" in out
