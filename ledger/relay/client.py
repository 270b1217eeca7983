"""The relay's NATS client: nats-py's, with a publish whose header block is
already encoded (the relay's hot path: one call per event)."""

from __future__ import annotations

import nats.errors
from nats.aio.client import Client as NATS

__all__ = ["PublishClient"]


class PublishClient(NATS):
    """nats-py's client with a publish whose header block comes encoded.

    ``publish`` encodes a headers dict for every message (a regular expression,
    a strip and an encode per header); the relay's three headers differ only by
    two numbers, so it formats the block itself. The checks are ``publish``'s.
    """

    async def publish_encoded(
        self, subject: bytes, header: bytes, payload: bytes, reply: bytes = b""
    ) -> None:
        """Queues one ``HPUB``; sent with the next flush (``flush`` sends it at once)."""
        if self.is_closed:
            raise nats.errors.ConnectionClosedError
        if self.is_draining_pubs:
            raise nats.errors.ConnectionDrainingError
        size = len(header) + len(payload)
        if size > self._max_payload:
            raise nats.errors.MaxPayloadError
        if not self.is_connected and (
            self._max_pending_size <= 0 or size + self._pending_data_size > self._max_pending_size
        ):
            raise nats.errors.OutboundBufferLimitError
        await self._send_command(
            b"HPUB %b %b %d %d\r\n%b%b\r\n" % (subject, reply, len(header), size, header, payload)
        )

    async def flush_pending(self) -> None:
        """Wakes the writer for what is queued, as ``publish`` does after each message
        (``flush`` would also wait for a PONG)."""
        if self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()
