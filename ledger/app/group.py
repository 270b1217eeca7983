"""One request's batch of decisions, answered together: a slot per decision, one future.

A batch of N events used to be N coroutines, N tasks (``asyncio.gather``),
N futures and N shields: about a fifth of the API process's CPU under
batched load (issue 12). The writer still decides, commits, retries and
answers each decision on its own (per-event results and idempotency are as
before); only the waiting is shared. A ``Slot`` is the part of a future the
writer uses (``done``, ``set_result``, ``set_exception``, a done callback);
the group's one future is set when its last slot is answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ledger.app.answers import Recorded

__all__ = ["Group", "Slot", "waitable"]

Outcome = Recorded | BaseException


class Group:
    """The outcomes of one request's decisions, in the order sent."""

    __slots__ = ("future", "outcomes", "remaining")

    def __init__(self, size: int, loop: asyncio.AbstractEventLoop) -> None:
        self.outcomes: list[Outcome | None] = [None] * size
        #: slots handed out and not answered yet
        self.remaining = 0
        self.future: asyncio.Future[None] = loop.create_future()

    def slot(self, index: int) -> Slot:
        self.remaining += 1
        return Slot(self, index)

    def seal(self) -> None:
        """No more slots: a group that has none is answered now."""
        if self.remaining == 0 and not self.future.done():
            self.future.set_result(None)


class Slot:
    """One decision's answer, kept in its group."""

    __slots__ = ("_callbacks", "_done", "_group", "_index", "_waiter")

    def __init__(self, group: Group, index: int) -> None:
        self._group = group
        self._index = index
        self._done = False
        self._callbacks: list[Callable[[Any], object]] = []
        #: a future for a later copy of the same key, made only when one waits
        self._waiter: asyncio.Future[Recorded] | None = None

    def done(self) -> bool:
        return self._done

    def set_result(self, result: Recorded) -> None:
        self._settle(result)

    def set_exception(self, error: BaseException) -> None:
        self._settle(error)

    def add_done_callback(self, fn: Callable[[Any], object]) -> None:
        self._callbacks.append(fn)

    def waiter(self) -> asyncio.Future[Recorded]:
        """A future with this slot's outcome, for a copy of its key that waits."""
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
            if self._done:
                self._copy_to(self._waiter)
        return self._waiter

    def _copy_to(self, future: asyncio.Future[Recorded]) -> None:
        outcome = self._group.outcomes[self._index]
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            assert outcome is not None
            future.set_result(outcome)

    def _settle(self, outcome: Outcome) -> None:
        if self._done:
            raise asyncio.InvalidStateError("this decision is answered already")
        self._done = True
        group = self._group
        group.outcomes[self._index] = outcome
        group.remaining -= 1
        if self._waiter is not None:
            self._copy_to(self._waiter)
        for fn in self._callbacks:
            fn(self)
        if group.remaining == 0 and not group.future.done():
            group.future.set_result(None)


def waitable(answer: asyncio.Future[Recorded] | Slot) -> asyncio.Future[Recorded]:
    """What a later copy of a key in flight awaits: the first copy's answer."""
    return answer.waiter() if isinstance(answer, Slot) else answer
