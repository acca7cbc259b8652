"""One accepted RTMS socket on the simulator side: sending, closing and keep-alive bookkeeping.

Rule: a connection never raises on a dead peer. Sending on a closed socket marks it ``closed``
and returns; the engagement decides what a dead socket means (interruption, grace, stop).
Keep-alive bookkeeping (``KeepAlive``) is pure: the trio shell passes ``now``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from recorder.simulator.handshake import parse_frame

if TYPE_CHECKING:
    from recorder.simulator.media import SocketAudio

logger = logging.getLogger(__name__)

#: Bound on a close handshake, so a stalled client cannot hold the simulator.
CLOSE_TIMEOUT_S: Final = 2.0


@dataclass(slots=True)
class KeepAlive:
    """KEEP_ALIVE_REQ/RESP bookkeeping for one socket (rtms-protocol §5.11, §9.1).

    A request may carry ``sequence`` (what the SDK echoes), ``timestamp`` (the docs' form), both,
    or neither (Zoom's mock); an answer matches a request on whichever of the two it echoes.
    """

    #: Outstanding requests: (sequence, timestamp, time sent).
    outstanding: list[tuple[int | None, int | None, float]] = field(default_factory=list)
    #: Unanswered requests in a row.
    consecutive_misses: int = 0
    sequence: int = 0
    last_timestamp_ms: int = 0

    def next_request(
        self, *, now: float, timestamp_ms: int, with_sequence: bool, with_timestamp: bool
    ) -> dict[str, Any]:
        """The next KEEP_ALIVE_REQ (call ``count_misses`` first)."""
        self.sequence += 1
        # Unique per request, so that an echoed timestamp alone identifies it.
        timestamp_ms = max(timestamp_ms, self.last_timestamp_ms + 1)
        self.last_timestamp_ms = timestamp_ms
        msg: dict[str, Any] = {"msg_type": 12}
        if with_sequence:
            msg["sequence"] = self.sequence
        if with_timestamp:
            msg["timestamp"] = timestamp_ms
        if not with_sequence and not with_timestamp:
            # Zoom's mock form: nothing to echo, so any KEEP_ALIVE_RESP answers it.
            msg.update({"protocol_version": 1, "status_code": 0})
        self.outstanding.append((msg.get("sequence"), msg.get("timestamp"), now))
        return msg

    def count_misses(self) -> int:
        """Called before sending a new request: the ones still outstanding are misses."""
        missed = len(self.outstanding)
        if missed:
            self.consecutive_misses += missed
            self.outstanding.clear()
        return missed

    def answer(self, msg: Mapping[str, Any], *, now: float) -> float | None:
        """Match a KEEP_ALIVE_RESP; return the latency in seconds, or None if it matched nothing."""
        sequence, timestamp = msg.get("sequence"), msg.get("timestamp")
        for index, (sent_sequence, sent_timestamp, sent_at) in enumerate(self.outstanding):
            echoed = (sequence is not None and sequence == sent_sequence) or (
                timestamp is not None and timestamp == sent_timestamp
            )
            if echoed or (sent_sequence is None and sent_timestamp is None):
                del self.outstanding[index]
                self.consecutive_misses = 0
                return now - sent_at
        return None


class Connection:
    """An accepted signaling or media WebSocket."""

    def __init__(
        self, ws: WebSocketConnection, *, kind: str, generation: int, binary: bool
    ) -> None:
        #: ``signaling`` or a media URL kind (``audio``, ``transcript``, ``chat``, ``all``...).
        self.kind = kind
        self.generation = generation
        self.ws = ws
        self._binary = binary
        self.closed = False
        #: The server closed it on purpose (fault step, stop, kick): not an interruption.
        self.closed_by_server = False
        #: The socket missed too many keep-alives and was closed for it.
        self.keepalive_failed = False
        #: How this socket carries audio, once its handshake asked for audio.
        self.audio: SocketAudio | None = None
        self.keepalive = KeepAlive()
        #: Media names this socket carries (media sockets only).
        self.media: frozenset[str] = frozenset()
        #: CLIENT_READY_ACK received for this media socket.
        self.ready = trio.Event()
        #: Set when the connection is over (closed by either side).
        self.done = trio.Event()
        #: trio time of the last media packet sent (keep-alive suppression).
        self.last_media_at = float("-inf")

    async def send_text(self, text: str) -> bool:
        """Send one frame; False (and ``closed``) when the peer is gone."""
        if self.closed:
            return False
        try:
            await self.ws.send_message(text.encode("utf-8") if self._binary else text)
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
            self.mark_closed()
            return False
        return True

    async def send_raw(self, data: str | bytes) -> bool:
        """Send exactly ``data`` (garbage injection)."""
        if self.closed:
            return False
        try:
            await self.ws.send_message(data)
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
            self.mark_closed()
            return False
        return True

    async def send(self, msg: Mapping[str, Any]) -> bool:
        return await self.send_text(json.dumps(msg, separators=(",", ":")))

    async def receive_first(self) -> tuple[bool, dict[str, Any] | None]:
        """The handshake frame: (received, JSON object or None when it is not one)."""
        try:
            data = await self.ws.get_message()
        except ConnectionClosed:
            self.mark_closed()
            return False, None
        return True, parse_frame(data)

    async def receive(self) -> dict[str, Any] | None:
        """The next JSON object, skipping frames that are not JSON objects; None when closed."""
        while not self.closed:
            try:
                data = await self.ws.get_message()
            except ConnectionClosed:
                self.mark_closed()
                return None
            obj = parse_frame(data)
            if obj is not None:
                return obj
            logger.debug("ignored a non-JSON frame from the client on %s", self.kind)
        return None

    def mark_closed(self) -> None:
        self.closed = True
        self.done.set()

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close with ``code``, bounded and shielded: closing is part of every fault step."""
        was_closed = self.closed
        self.mark_closed()
        if was_closed and self.ws.closed is not None:
            return
        with (
            trio.CancelScope(shield=True),
            trio.move_on_after(CLOSE_TIMEOUT_S),
            contextlib.suppress(
                ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError
            ),
        ):
            await self.ws.aclose(code, reason)
