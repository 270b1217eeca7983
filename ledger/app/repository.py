"""The aggregate repository: load, cache, replay, and new events as rows.

Like the eventsourcing library's ``Repository``, an aggregate is rebuilt by
replaying its stored events through the library's own ``Mapper``, so what we
write is what the library reads (``tests/api/test_library_reads.py``). Writing
goes the other way at orjson's speed: ``_encode_state`` is held byte-equal to
the library's transcoder by ``tests/unit/domain/test_stored_state.py``.

Aggregates are cached between batches. With several ``serve`` processes a
cached aggregate can be stale; the store then drops the unit under its lock
and the writer evicts it and decides again on fresh state.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Final
from uuid import UUID

import orjson
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    UUIDAsHex,
)
from eventsourcing.utils import get_topic

from ledger.contract.messages import event_data
from ledger.domain.catalog import TYPE_BY_TOPIC
from ledger.store import LedgerStore
from ledger.store.connection import Connection
from ledger.store.log import StoredRow
from ledger.store.units import NewEvent, Unit

__all__ = ["Created", "Repository", "created", "new_events", "unit_of"]

#: Aggregates kept between batches. Orders are hot for minutes (placed, paid,
#: maybe refunded) then cold; a miss costs one batched read. Bounded so that a
#: long run keeps a flat memory profile (loadtests/soak.sh).
_CACHE_AGGREGATES_MAX: Final = 10_000


def _make_mapper() -> Mapper[UUID]:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DatetimeAsISO(), DecimalAsStr()):
        transcoder.register(transcoding)
    return Mapper(transcoder=transcoder)


class Repository:
    """The writer's aggregates: cached, or replayed from the log on a miss."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store
        self._mapper = _make_mapper()
        self._cache: OrderedDict[UUID, Aggregate | Created] = OrderedDict()

    async def load(self, stream_id: UUID, conn: Connection | None) -> Aggregate | None:
        cached = self._cache.get(stream_id)
        if cached is not None:
            self._cache.move_to_end(stream_id)
            if isinstance(cached, Created):
                cached = self._cache[stream_id] = cached.aggregate()
            return cached
        streams = await self.store.load_streams([stream_id], conn)
        aggregate = self.replay(streams.get(stream_id, []))
        if aggregate is not None:
            self.put(aggregate)
        return aggregate

    def missing(self, stream_ids: set[UUID]) -> list[UUID]:
        """The streams a batch will need that are not cached: the writer loads
        them with the batch's key look-up, in one query (``absorb``)."""
        return [s for s in stream_ids if s not in self._cache]

    def absorb(self, missing: list[UUID], streams: dict[UUID, list[StoredRow]]) -> set[UUID]:
        """Replays and caches the streams loaded for a batch; returns those of
        ``missing`` that do not exist."""
        absent: set[UUID] = set()
        for stream_id in missing:
            aggregate = self.replay(streams.get(stream_id, []))
            if aggregate is None:
                absent.add(stream_id)
            else:
                self.put(aggregate)
        return absent

    def replay(self, rows: list[StoredRow]) -> Aggregate | None:
        aggregate: Aggregate | None = None
        for row in rows:
            domain_event = self._mapper.to_domain_event(
                StoredEvent(
                    originator_id=row.stream_id,
                    originator_version=row.version,
                    topic=row.topic,
                    state=bytes(row.state),
                )
            )
            aggregate = domain_event.mutate(aggregate)  # type: ignore[attr-defined]
        return aggregate

    async def read_stream(self, stream_id: UUID) -> tuple[Aggregate | None, list[dict[str, Any]]]:
        """A fresh replay from the database and the stream's messages, in one query:
        for readers, never the writer's cache, which may hold a decision whose
        transaction has not committed yet."""
        rows = await self.store.stream_rows(stream_id)
        return self.replay([row for _, row in rows]), [message for message, _ in rows]

    def put(self, aggregate: Aggregate | Created) -> None:
        self._cache[aggregate.id] = aggregate
        self._cache.move_to_end(aggregate.id)
        while len(self._cache) > _CACHE_AGGREGATES_MAX:
            self._cache.popitem(last=False)

    def evict(self, stream_ids: Iterable[UUID]) -> None:
        for stream_id in stream_ids:
            self._cache.pop(stream_id, None)

    def clear(self) -> None:
        self._cache.clear()


@functools.cache
def _topic_of(cls: Any) -> str:
    return get_topic(cls)


def _encode_state(state: dict[str, Any]) -> bytes:
    """The library's stored state, byte for byte what its ``JSONTranscoder``
    writes for our events, at orjson's speed.

    Our events hold only JSON-native values besides the library's own
    ``timestamp``, which its ``DatetimeAsISO`` transcoding wraps as below.
    ``tests/unit/domain/test_stored_state.py`` holds the two encoders equal.
    """
    timestamp = state["timestamp"]
    encoded = dict(state, timestamp={"_type_": "datetime_iso", "_data_": timestamp.isoformat()})
    return orjson.dumps(encoded)


def _new_event(stream_id: UUID, version: int, topic: str, state: dict[str, Any]) -> NewEvent:
    """One event as a row to append: its state encoded once, its contract data."""
    return NewEvent(
        stream_id=stream_id,
        version=version,
        topic=topic,
        state=_encode_state(state),
        type=TYPE_BY_TOPIC[topic],
        data=event_data(state),
        occurred_at=state["occurred_at"],
        seller_id=state.get("seller_id"),
    )


def new_events(aggregates: list[Aggregate]) -> list[NewEvent]:
    """The aggregates' pending events, collected, as rows to append."""
    out: list[NewEvent] = []
    for aggregate in aggregates:
        for domain_event in aggregate.collect_events():
            state = dict(vars(domain_event))
            stream_id = state.pop("originator_id")
            version = state.pop("originator_version")
            # the library types events as a protocol without __hash__; classes hash
            topic = _topic_of(type(domain_event))  # type: ignore[arg-type]
            out.append(_new_event(stream_id, version, topic, state))
    return out


class Created:
    """A new aggregate held as its first event until a decision reads it.

    Building the library's aggregate (its metaclass call, argument coercion,
    the generated ``__init__``) cost more than the rest of an ``order.placed``
    decision: ~13% of the writer's CPU under batched load (issue 12). Most new
    orders are not read again by the writer while cached; when one is (a
    capture), :meth:`aggregate` builds it as the library's replay does, from
    the same event state, without the JSON.
    """

    __slots__ = ("_event_class", "_state", "id", "version")

    def __init__(self, event_class: type[Any], stream_id: UUID, state: dict[str, Any]) -> None:
        self._event_class = event_class
        self._state = state
        self.id = stream_id
        self.version = 1

    def aggregate(self) -> Aggregate:
        """The library's aggregate, as ``Repository.replay`` would make it."""
        domain_event = object.__new__(self._event_class)
        state = dict(self._state, originator_id=self.id, originator_version=1)
        object.__setattr__(domain_event, "__dict__", state)
        made: Aggregate = domain_event.mutate(None)
        return made


def created(
    event_class: type[Any], aggregate_class: type[Aggregate], stream_id: UUID, **fields: Any
) -> tuple[Created, NewEvent]:
    """A new aggregate's first event, as the library would store it (the state
    of ``aggregate_class(**fields)``'s created event), without building it.

    ``fields`` are the aggregate's ``__init__`` arguments, all of them, in
    their order; ``tests/unit/app/test_created.py`` holds the two equal.
    """
    state = {
        "timestamp": event_class.create_timestamp(),
        "originator_topic": _topic_of(aggregate_class),
        **fields,
    }
    topic = _topic_of(event_class)  # type: ignore[arg-type]  # a class: hashable
    return Created(event_class, stream_id, state), _new_event(stream_id, 1, topic, state)


def unit_of(aggregates: list[Aggregate]) -> Unit:
    """One decision's events, and the stream versions it was decided on."""
    events = new_events(aggregates)
    # The version each stream had before *this* unit: what the database
    # must still hold if the unit is committed on its own.
    base_versions = {a.id: a.version for a in aggregates}
    for ev in events:
        base_versions[ev.stream_id] = min(base_versions[ev.stream_id], ev.version - 1)
    return Unit(events=events, base_versions=base_versions)
