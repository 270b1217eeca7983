"""A request's group of decisions: each slot keeps its own answer, one future for all."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from ledger.app.answers import Recorded
from ledger.app.group import Group, waitable
from ledger.domain.errors import UnknownSeller


def _recorded(position: int) -> Recorded:
    return Recorded("recorded", position, uuid.uuid4(), 1, f"k{position}")


async def test_the_group_is_answered_when_its_last_slot_is() -> None:
    group = Group(3, asyncio.get_running_loop())
    first, second = group.slot(0), group.slot(2)
    group.seal()
    refused = UnknownSeller("no such seller", field="seller_id")
    first.set_result(_recorded(1))
    assert not group.future.done()
    second.set_exception(refused)
    assert group.future.done()
    assert isinstance(group.outcomes[0], Recorded) and group.outcomes[0].position == 1
    assert group.outcomes[1] is None  # not a slot: the caller fills it in
    assert group.outcomes[2] is refused


async def test_an_empty_group_is_answered_when_sealed() -> None:
    group = Group(2, asyncio.get_running_loop())
    group.seal()
    assert group.future.done()


async def test_a_copy_waits_for_its_first_slot_before_or_after_it_is_answered() -> None:
    group = Group(2, asyncio.get_running_loop())
    early, late = group.slot(0), group.slot(1)
    group.seal()
    early_waiter = waitable(early)
    answer = _recorded(7)
    early.set_result(answer)
    assert await early_waiter is answer
    late.set_exception(UnknownSeller("no such seller", field="seller_id"))
    with pytest.raises(UnknownSeller):
        await waitable(late)


async def test_a_slot_is_answered_once_and_calls_back_at_once() -> None:
    group = Group(1, asyncio.get_running_loop())
    slot = group.slot(0)
    called: list[object] = []
    slot.add_done_callback(called.append)
    slot.set_result(_recorded(1))
    assert called == [slot] and slot.done()
    with pytest.raises(asyncio.InvalidStateError):
        slot.set_result(_recorded(2))
