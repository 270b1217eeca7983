"""The relay: committed log -> JetStream stream ``LEDGER``, in position order, resumable.

NATS is the transport, never the truth (DESIGN rule 7): everything here can
be rebuilt from PostgreSQL. The invariant the relay keeps is *stream sequence
== log position*. Each message is published with ``Nats-Msg-Id`` = position
(deduplicated by the server within the duplicate window, ADR-8 style) and
``Nats-Expected-Last-Sequence`` = position - 1, so the server itself refuses
a message that would land out of order or leave a hole. After any crash the
relay resumes from the stream's own last message, not from a checkpoint of
its own, so a crash between "published" and "checkpointed" neither loses nor
doubles an event. The PostgreSQL checkpoint is only used to notice a stream
that lost messages (deleted, or its tail gone): then the stream is recreated
and refilled from the log.

Because every message carries its expected last sequence, the stream only
ever holds a prefix of the log, each message at its own position: one the
server refuses (or never gets) leaves every later one refused too. So a page
asks for one acknowledgement, its last message's, and that ack at its own
position proves the whole page landed in order.

Exactly one relay is active: the leader holds a session-level PostgreSQL
advisory lock on its own connection; standbys try again every second, so a
standby takes over within about a second of the leader's connection dying.

A little over 400 lines (432): election, stream checks and the publish
window are one loop's states; the client's encoded publish is in
:mod:`ledger.relay.client`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
import nats
import nats.errors
import orjson
from nats.aio.msg import Msg
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from ledger.contract.messages import subject_for
from ledger.contract.servers import nats_servers
from ledger.relay.client import PublishClient
from ledger.store import LedgerStore
from ledger.store.connection import Connection
from ledger.store.schema import NOTIFY_CHANNEL

__all__ = ["Relay", "RelayConfig"]

log = logging.getLogger("omniledger.relay")

#: Advisory lock key of the relay election (any constant unique to this app).
RELAY_LOCK_KEY: Final = 7203012
_PAGE_EVENTS_MAX: Final = 1000
#: Pages published before the oldest one's ack is awaited: reading and
#: publishing the next page overlaps the server's acks of the earlier ones.
_WINDOW_PAGES: Final = 4
#: after unanswered or refused publishes, a pause that doubles while nothing
#: gets through: a cluster electing a leader refuses every publish at once, and
#: the relay must neither spin on it nor wait long after the election (4-9 s)
_UNANSWERED_PAUSE_S: Final = 0.25
_UNANSWERED_PAUSE_MAX_S: Final = 2.0


@dataclass(frozen=True, slots=True)
class RelayConfig:
    #: one URL, or a cluster's separated by commas
    nats_url: str
    stream_name: str = "LEDGER"
    subject_prefix: str = "ledger"
    max_age_s: int = 0
    max_bytes: int = -1
    replicas: int = 1
    duplicate_window_s: int = 300
    standby_poll_s: float = 1.0
    idle_poll_s: float = 1.0
    #: after a wake-up, wait this long for more commits: fewer, larger pages
    linger_s: float = 0.0
    #: how long a page's publish acknowledgement may take before the relay
    #: re-reads the stream's state
    ack_timeout_s: float = 10.0
    #: a JetStream API call (stream info, ...) unanswered for this long is asked
    #: again: in a cluster, a request that reached a node as it died never will be
    api_timeout_s: float = 2.0


async def _quiet_nats_error(error: Exception) -> None:
    # nats-py's default logs a traceback for every failed (re)connect
    log.warning("relay: NATS: %s", error or type(error).__name__)


class _StreamBehind(Exception):
    """The stream no longer matches the log: recreate it and refill from PostgreSQL."""


class _Unanswered(Exception):
    """Publishes went unacknowledged or were refused: read the stream's state again
    before going on (it says whether the stream really is behind)."""


class _Refused(Exception):
    """The stream refused a page's last message (its error, or "no responders")."""


class Relay:
    def __init__(self, pool: asyncpg.Pool, config: RelayConfig) -> None:
        self._pool = pool
        self._store = LedgerStore(pool)
        self._config = config
        self._wake = asyncio.Event()
        #: set when the NATS connection drops (replaced by each ``_lead``)
        self._link_lost = asyncio.Event()
        #: a page's ack future by its last position, answered by ``_on_ack``
        self._acks: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.published_position = 0
        self.is_leader = False

    async def run(self) -> None:
        """Elects itself (or waits as a standby), then relays until cancelled."""
        pause_s = 0.5
        while True:
            try:
                async with self._pool.acquire() as lock_conn:
                    if not await lock_conn.fetchval(
                        "SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY
                    ):
                        await asyncio.sleep(self._config.standby_poll_s)
                        continue
                    try:
                        self.is_leader = True
                        log.info("relay: elected leader")
                        await self._lead(lock_conn)
                    finally:
                        self.is_leader = False
                        with contextlib.suppress(Exception):
                            await lock_conn.execute("SELECT pg_advisory_unlock($1)", RELAY_LOCK_KEY)
            except asyncio.CancelledError:
                raise
            except nats.errors.Error as e:
                # NATS away (or not started yet): one line, a growing pause. Before
                # OSError: nats-py's timeout is a TimeoutError, hence an OSError too.
                pause_s = min(pause_s * 2, 30.0)
                log.warning("relay: NATS unavailable (%s); retrying in %.0f s", e, pause_s)
                await asyncio.sleep(pause_s)
                continue
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                log.warning("relay: database unavailable (%s); retrying", e)
                await asyncio.sleep(1)
            except Exception:
                log.exception("relay: failed; restarting in 1 s")
                await asyncio.sleep(1)
            pause_s = 0.5

    async def _lead(self, lock_conn: Connection) -> None:
        self._link_lost = asyncio.Event()

        async def on_disconnect() -> None:
            # what was sent to that server may never be answered: stop waiting
            self._link_lost.set()

        nc = PublishClient()
        await nc.connect(
            # a cluster: any node will do, and nats-py moves to another when one goes
            servers=nats_servers(self._config.nats_url),
            name="omniledger-relay",
            max_reconnect_attempts=-1,
            error_cb=_quiet_nats_error,
            disconnected_cb=on_disconnect,
        )
        listener = await self._pool.acquire()
        try:
            await listener.add_listener(NOTIFY_CHANNEL, self._on_notify)
            js = nc.jetstream(timeout=self._config.api_timeout_s)
            inbox = nc.new_inbox()
            await nc.subscribe(f"{inbox}.*", cb=self._on_ack)
            loop = asyncio.get_running_loop()
            pause_s, published = _UNANSWERED_PAUSE_S, self.published_position
            while True:
                tried_at = loop.time()
                try:
                    position = await self._prepare_stream(js)
                    await self._publish_from(nc, inbox.encode(), position, lock_conn)
                except (_Unanswered, nats.errors.TimeoutError) as e:
                    # A cluster electing a new stream leader answers nothing, or
                    # "no responders", for a few seconds: ask again, on the same
                    # connection (nats-py reconnects it to another node by itself).
                    await lock_conn.fetchval("SELECT 1")  # still the leader?
                    log.warning("relay: %s; reading the stream's state again", e or "timeout")
                    self._link_lost.clear()
                    if self.published_position > published:  # got through since
                        pause_s, published = _UNANSWERED_PAUSE_S, self.published_position
                    # a try that waited out a timeout has paused already: ask again
                    # at once, to resume as soon as the new leader answers
                    await asyncio.sleep(max(0.0, pause_s - (loop.time() - tried_at)))
                    pause_s = min(pause_s * 2, _UNANSWERED_PAUSE_MAX_S)
                except _StreamBehind as e:
                    # Deleting the stream is for the leader alone: a relay whose
                    # lock connection died is refused by the stream because a
                    # new leader publishes, and must step down, not delete.
                    await lock_conn.fetchval("SELECT 1")
                    log.warning("relay: %s; recreating stream from PostgreSQL", e)
                    with contextlib.suppress(NotFoundError):
                        await js.delete_stream(self._config.stream_name)
                    # The refill starts at position 1 again.
                    await self._store.set_relay_checkpoint(self._config.stream_name, 0)
        finally:
            self.is_leader = False  # at once: the clean-up below may take a while
            with contextlib.suppress(Exception):
                await listener.remove_listener(NOTIFY_CHANNEL, self._on_notify)
            await self._pool.release(listener)
            with contextlib.suppress(Exception):
                # drain waits for outstanding publish acks; after a failure they
                # may never come (nats-py's own bound is 30 s)
                await asyncio.wait_for(nc.drain(), timeout=2)
            if not nc.is_closed:
                with contextlib.suppress(Exception):
                    await nc.close()

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    async def _on_ack(self, msg: Msg) -> None:
        """Answers the ack future of the page whose last position ends the subject."""
        future = self._acks.pop(int(msg.subject.rpartition(".")[2]), None)
        if future is None or future.done():
            return  # a page given up on (its acks are read from the stream's state)
        status = (msg.headers or {}).get("Status")
        if status:
            # 503: no responders (a cluster between two stream leaders, no stream)
            future.set_exception(_Refused(f"status {status} {msg.headers}"))
            return
        try:
            answer = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            answer = {"error": {"description": f"not an ack: {msg.data[:80]!r}"}}
        if not isinstance(answer, dict) or "error" in answer:
            error = answer.get("error") if isinstance(answer, dict) else answer
            future.set_exception(_Refused(str(error)))
        else:
            future.set_result(answer)

    def _stream_config(self) -> js_api.StreamConfig:
        c = self._config
        return js_api.StreamConfig(
            name=c.stream_name,
            subjects=[f"{c.subject_prefix}.>"],
            storage=js_api.StorageType.FILE,
            retention=js_api.RetentionPolicy.LIMITS,
            max_age=float(c.max_age_s) if c.max_age_s else None,
            max_bytes=c.max_bytes,
            num_replicas=c.replicas,
            duplicate_window=float(c.duplicate_window_s),
        )

    async def _prepare_stream(self, js: Any) -> int:
        """Creates the stream if needed; returns the last position it holds."""
        checkpoint = await self._store.relay_checkpoint(self._config.stream_name)
        try:
            info = await js.stream_info(self._config.stream_name)
        except NotFoundError:
            info = await js.add_stream(self._stream_config())
            log.info("relay: created stream %s", self._config.stream_name)
        last_seq = info.state.last_seq or 0
        head, _ = await self._store.head()
        if last_seq > head:
            raise _StreamBehind(f"stream holds {last_seq} messages but the log only {head}")
        if last_seq < checkpoint:
            raise _StreamBehind(f"stream ends at {last_seq}, but {checkpoint} were published")
        if last_seq > 0:
            try:
                msg = await js.get_msg(self._config.stream_name, seq=last_seq)
            except NotFoundError:
                # Aged out (max age or bytes) or purged: its sequence still
                # counts, and only this relay publishes to the stream, each
                # message at the sequence after the last. Resume after it.
                log.info(
                    "relay: stream %s no longer holds its last message (seq %d); resuming after it",
                    self._config.stream_name,
                    last_seq,
                )
            else:
                body = orjson.loads(msg.data or b"{}")
                expected = await self._store.read_log(last_seq - 1, 1)
                if not expected or body.get("hash") != expected[0]["hash"]:
                    raise _StreamBehind(f"stream message {last_seq} does not match the log")
        self.published_position = last_seq
        return last_seq

    async def _publish_from(
        self, nc: PublishClient, inbox: bytes, position: int, lock_conn: Connection
    ) -> None:
        """Publishes pages in a window: the next page goes out while earlier ones await acks.

        Up to ``_WINDOW_PAGES`` pages are in flight; the oldest is settled
        (its ack checked, checkpoint written) before the window takes another,
        so the checkpoint only moves over positions the stream acknowledged,
        in order. Order on the stream is still the log's: every message is
        sent on the one connection, after the one before it, and the server
        refuses any that does not follow its expected last sequence.
        """
        loop = asyncio.get_running_loop()
        checked = loop.time()
        window: collections.deque[_Page] = collections.deque()
        try:
            while True:
                self._wake.clear()
                if loop.time() - checked >= self._config.idle_poll_s:
                    # The leader's lock lives as long as its connection: a dead one
                    # means a standby may lead now. Checked idle or busy, so that
                    # a busy leader steps down within about a poll interval too.
                    await lock_conn.fetchval("SELECT 1")
                    checked = loop.time()
                events = []
                if len(window) < _WINDOW_PAGES:
                    events = await self._read_page(position, linger=not window)
                if events:
                    window.append(await self._publish_page(nc, inbox, events))
                    position = events[-1]["position"]
                    continue
                if window:
                    await self._settle(window.popleft())
                    # pages already answered: one checkpoint for them all
                    while window and window[0].future.done():
                        await self._settle(window.popleft())
                    await self._store.set_relay_checkpoint(
                        self._config.stream_name, self.published_position
                    )
                    continue
                await lock_conn.fetchval("SELECT 1")
                checked = loop.time()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._config.idle_poll_s)
        finally:
            for page in window:  # given up: their acks are read from the stream's state
                page.future.cancel()
            self._acks.clear()

    async def _read_page(self, position: int, *, linger: bool) -> list[dict[str, Any]]:
        events = await self._store.read_log(position, _PAGE_EVENTS_MAX)
        if linger and events and self._config.linger_s and len(events) < _PAGE_EVENTS_MAX:
            # nothing else in flight: wait a little for more commits, fewer pages
            await asyncio.sleep(self._config.linger_s)
            events += await self._store.read_log(
                events[-1]["position"], _PAGE_EVENTS_MAX - len(events)
            )
        return events

    async def _publish_page(
        self, nc: PublishClient, inbox: bytes, events: list[dict[str, Any]]
    ) -> _Page:
        """Publishes a page; only its last message asks for an acknowledgement.

        Every message carries ``Nats-Expected-Last-Sequence`` = position - 1
        (and ``Nats-Expected-Stream``), so the server stores message ``p`` only
        at sequence ``p``, right after ``p - 1``, and refuses every later one
        once it refused one: the last message's ack at its own position proves
        the whole page (module docstring). An ack a message was a reply, a
        future and a JSON parse each: about half of the relay's CPU.
        """
        prefix = self._config.subject_prefix
        stream = self._config.stream_name.encode()
        header = b"NATS/1.0\r\nNats-Msg-Id: %d\r\nNats-Expected-Last-Sequence: %d\r\n"
        header += b"Nats-Expected-Stream: " + stream + b"\r\n\r\n"
        subjects: dict[str, bytes] = {}
        reply = b""
        last = events[-1]["position"]
        for message in events:
            pos = message["position"]
            event_type = message["type"]
            subject = subjects.get(event_type)
            if subject is None:
                subject = subjects[event_type] = subject_for(event_type, prefix).encode()
            if pos == last:
                reply = inbox + b".%d" % pos
            await nc.publish_encoded(subject, header % (pos, pos - 1), orjson.dumps(message), reply)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._acks[last] = future
        await nc.flush_pending()
        return _Page(events[0]["position"], last, future)

    async def _settle(self, page: _Page) -> None:
        """Waits for a page's ack (its last message's) and checks it landed at its position.

        Stops waiting as soon as the connection is lost: publishes that went to
        a node as it died are never answered, and the relay reads where the
        stream stands from the node it reconnects to instead of waiting out
        ``ack_timeout_s``.
        """
        lost = asyncio.ensure_future(self._link_lost.wait())
        try:
            await asyncio.wait(
                (page.future, lost),
                timeout=self._config.ack_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            lost.cancel()
        if not page.future.done():
            page.future.cancel()
            reason = (
                "the NATS connection was lost"
                if self._link_lost.is_set()
                else f"not acknowledged within {self._config.ack_timeout_s} s"
            )
            raise _Unanswered(f"positions {page.first}-{page.last}: {reason}")
        try:
            ack = page.future.result()
        except _Refused as e:
            # A wrong expected sequence, a missing stream, a cluster between two
            # stream leaders: where the stream stands says which (_prepare_stream
            # recreates a stream that is gone or behind, resumes after one that
            # is not). Deleting it here would empty a stream that was only
            # briefly unavailable.
            raise _Unanswered(f"publish refused: {e}") from e
        if ack.get("seq") != page.last or ack.get("stream") != self._config.stream_name:
            raise _StreamBehind(f"position {page.last} landed at {ack}")
        self.published_position = page.last


@dataclass(slots=True)
class _Page:
    """Published messages (positions ``first`` to ``last``) and the last one's ack."""

    first: int
    last: int
    future: asyncio.Future[dict[str, Any]]
