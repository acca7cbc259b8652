"""What a simulated engagement did, counted so that tests can wait on it instead of sleeping.

Rule: every counter is updated by the engagement's own tasks, then ``Observed.changed()`` wakes
whoever waits in ``wait_for(predicate)``. Waking costs nothing when nobody waits, so the media hot
path can call it once per packet.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import trio


@dataclass(slots=True)
class TrackStats:
    """Packets sent on one track (``mixed``, ``user-<id>``, ``channel-<id>``, ``transcript``...)."""

    packets: int = 0
    first_timestamp_ms: int | None = None
    last_timestamp_ms: int | None = None
    #: Packets re-sent from the buffer after a (re)connect, with their original timestamps.
    replayed: int = 0

    def record(self, timestamp_ms: int, *, replayed: bool) -> None:
        self.packets += 1
        if replayed:
            self.replayed += 1
        if self.first_timestamp_ms is None:
            self.first_timestamp_ms = timestamp_ms
        self.last_timestamp_ms = timestamp_ms


@dataclass(slots=True)
class WebhookRecord:
    event: str
    event_ts: int
    #: 1 for the first delivery, 2.. for Zoom-style retries and scripted duplicates.
    attempt: int
    #: HTTP status, or None when the request failed or timed out.
    http_status: int | None
    body: bytes


@dataclass(slots=True)
class EngagementStats:
    signaling_open: int = 0
    signaling_max_open: int = 0
    signaling_accepted: int = 0
    media_open: int = 0
    media_max_open: int = 0
    media_accepted: int = 0
    #: (``signaling`` | ``media``, status_code) -> count; status_code None = the mock's form.
    rejected: Counter[tuple[str, int | None]] = field(default_factory=Counter)
    #: Connections the server closed because of the duplicate policy ``kick-old``.
    kicked: int = 0
    ready_acks: int = 0
    #: CLIENT_READY_ACKs with a wrong stream id or no media socket waiting for one.
    invalid_ready_acks: int = 0
    #: EVENT_SUBSCRIPTIONs that could not be parsed (ignored, like Zoom answers nothing).
    invalid_subscriptions: int = 0
    #: Socket handlers that failed with an unexpected error (a simulator bug; tests assert 0).
    handler_errors: int = 0
    keepalives_sent: int = 0
    keepalives_answered: int = 0
    keepalives_missed: int = 0
    #: KEEP_ALIVE_REQs that could not even be written within an interval (stalled consumer).
    keepalive_sends_stalled: int = 0
    #: Seconds (trio clock) between a KEEP_ALIVE_REQ and its answer, in order.
    keepalive_latencies_s: list[float] = field(default_factory=list)
    #: Garbage / oversized frames the scenario injected.
    garbage_sent: int = 0
    #: Audio packets sent with a broken timestamp (``timestamp_fault`` steps).
    timestamp_faults_sent: int = 0
    frames_sent: int = 0
    tracks: dict[str, TrackStats] = field(default_factory=dict)
    #: Audio frames buffered while no audio socket was ready, not yet delivered.
    buffered_frames: int = 0
    #: Audio frames dropped because the 60 s buffer overflowed (or buffer_data false).
    buffer_dropped_frames: int = 0
    #: Audio frames a ``drop_media`` step with ``lose_s`` discarded (never delivered).
    lost_frames: int = 0
    transcripts_sent: int = 0
    chats_sent: int = 0
    events_sent: Counter[int] = field(default_factory=Counter)
    #: msg 8 / msg 9 states sent, in order: (msg_type, state, reason).
    state_updates: list[tuple[int, int, int | str | None]] = field(default_factory=list)
    #: Messages the client sent on signaling after the handshake, by msg_type.
    client_messages: Counter[int] = field(default_factory=Counter)
    webhooks: list[WebhookRecord] = field(default_factory=list)
    interruptions: int = 0
    failovers: int = 0
    reconnects: int = 0
    stop_reason: int | None = None

    def track(self, name: str) -> TrackStats:
        stats = self.tracks.get(name)
        if stats is None:
            stats = self.tracks[name] = TrackStats()
        return stats


class Observed:
    """A ``trio.Event`` that is re-armed on every change, created only while someone waits."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: trio.Event | None = None

    def changed(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Return as soon as ``predicate()`` holds (checked after every change)."""
        while not predicate():
            if self._event is None:
                self._event = trio.Event()
            await self._event.wait()
