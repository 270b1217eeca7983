"""Verifying the hash chain of recorded events (DESIGN rule 6), and reading exports.

What lives here: the pure check behind ``omniledger verify`` - recompute
``hash = SHA-256(prev_hash || canonical)`` with :func:`ledger.contract.messages.chain_hash`
over messages in position order - and :func:`iter_jsonl`, which streams the
messages of a JSON Lines export one line at a time.

What must not: SQL, HTTP, asyncio. The caller feeds messages from the live
log (``ledger.store``) or from a file; either way the check runs in constant
memory and stops at the first break, because everything after a break is
unverifiable by construction (each hash covers the one before).

A message is accepted when, in this order:

1. it is an object whose ``position`` is an integer;
2. its position is exactly one more than the previous message's (no gap,
   no repeat, no reordering); the first message's position is checked only
   when the caller says which one to expect (``start_position``);
3. its ``prev_hash`` equals the previous message's ``hash`` (``start_prev_hash``
   for the first: 64 zeros from the genesis, or the hash of the event just
   before an ``--after N`` window);
4. its ``hash`` equals the hash recomputed from its content.

The reported ``first_bad_position`` is the first position at which the chain
does not hold: the altered message itself, or for a deleted message the
position that is missing. Deleting the *last* messages of an export cannot
be seen from the export alone; compare ``last_hash`` with the live log's hash
at that position (``expect_last_hash``) to close that hole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from os import PathLike
from typing import Any, Final

import orjson

from ledger.contract.messages import GENESIS_HASH, chain_hash
from ledger.domain.errors import ValidationError

__all__ = ["ChainReport", "MalformedExport", "iter_jsonl", "verify_messages"]

#: How often ``on_progress`` is called, in messages.
PROGRESS_EVERY: Final[int] = 10_000

#: A line longer than this is refused before parsing: an event is at most a
#: few KiB (metadata is capped at 4 KiB), so this only guards memory.
LINE_BYTES_MAX: Final[int] = 1 << 20


_END: Final = object()


class MalformedExport(ValidationError):
    """A line of an export is not one JSON object; carries its 1-based ``line``."""

    code = "invalid_export"

    def __init__(self, message: str, *, line: int) -> None:
        super().__init__(message, line=line)
        self.line = line


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The outcome of a verification.

    ``checked`` counts the messages found good before the first break;
    ``last_hash`` is the hash of the last good message (``start_prev_hash`` if
    none), i.e. where a later verification of the following window starts.
    """

    ok: bool
    checked: int
    first_bad_position: int | None
    reason: str | None
    last_hash: str


def iter_jsonl(path: str | PathLike[str]) -> Iterator[dict[str, Any]]:
    """Streams the objects of a JSON Lines file, one per line; blank lines are skipped.

    Raises :class:`MalformedExport` naming the line on anything that is not a
    JSON object (bad JSON, invalid UTF-8, an array, an over-long line).
    :func:`verify_messages` turns that into a break at the expected position.
    """
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            if len(line) > LINE_BYTES_MAX:
                raise MalformedExport(
                    f"line {number}: longer than {LINE_BYTES_MAX} bytes", line=number
                )
            if not line.strip():
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                raise MalformedExport(f"line {number}: not valid JSON ({e})", line=number) from e
            if not isinstance(value, dict):
                raise MalformedExport(
                    f"line {number}: a JSON {type(value).__name__}, not an event object",
                    line=number,
                )
            yield value


def verify_messages(
    messages: Iterable[dict[str, Any]],
    *,
    start_prev_hash: str = GENESIS_HASH,
    start_position: int | None = None,
    expect_last_hash: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    progress_every: int = PROGRESS_EVERY,
) -> ChainReport:
    """Recomputes the chain over ``messages`` (in position order) and stops at the first break.

    ``start_position``: the position the first message must have (``1`` for a
    whole log, ``N + 1`` after ``--after N``); ``None`` accepts any.
    ``expect_last_hash``: if given, the chain must end on this hash, which
    detects messages cut off the end.
    ``on_progress(checked, position)`` is called every ``progress_every`` messages.
    """
    running = start_prev_hash
    expected = start_position
    checked = 0
    position: int | None = None

    def broken(at: int | None, reason: str) -> ChainReport:
        return ChainReport(False, checked, at, reason, running)

    iterator = iter(messages)
    while True:
        try:
            message = next(iterator, _END)
        except MalformedExport as e:
            # the line cannot be read, so its position is the one we expected
            return broken(expected, e.message)
        if message is _END:
            break
        if not isinstance(message, dict):
            return broken(expected, f"message after {checked} good ones is not an object")
        position = message.get("position")
        if type(position) is not int:
            return broken(expected, f"message after {checked} good ones has no integer position")
        if expected is not None and position != expected:
            if position > expected:
                return broken(expected, f"position {expected} is missing (next is {position})")
            return broken(position, f"position {position} out of order (expected {expected})")
        if message.get("prev_hash") != running:
            return broken(position, f"prev_hash at {position} does not link to the previous hash")
        try:
            recomputed = chain_hash(running, message)
        except (KeyError, TypeError, ValueError, orjson.JSONEncodeError) as e:
            return broken(position, f"message at {position} cannot be hashed: {e!r}")
        if message.get("hash") != recomputed:
            return broken(position, f"hash at {position} does not match its content")
        running = recomputed
        expected = position + 1
        checked += 1
        if on_progress is not None and checked % progress_every == 0:
            on_progress(checked, position)

    if expect_last_hash is not None and running != expect_last_hash:
        after = position + 1 if position is not None else start_position
        return broken(after, "the chain ends before the expected last hash: messages cut off")
    if on_progress is not None and checked % progress_every != 0:
        on_progress(checked, position if position is not None else 0)
    return ChainReport(True, checked, None, None, running)
