"""The trio RTMS client: what a stream owner opens, configures and steers.

``open_rtms_stream(target, config)`` connects signaling and media for one ``rtms_stream_id``
and yields an ``RtmsStream``: a bounded channel of capture events plus the controls the webhook
ingress calls (``failover``, ``signaling_interrupted``, ``stopped``, ``close``). The connection
engine, with its recovery rules (rtms-protocol.md §9.2, Appendix B), is in ``_engine``.
"""

from __future__ import annotations

import collections
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final, Protocol

import trio

from recorder.errors import ConfigError
from recorder.rtms._engine import Engine
from recorder.rtms._enums import EventType, MediaType, ZccEventType
from recorder.rtms._outlet import EventOutlet, InlineSlot
from recorder.rtms._video_outlet import VideoEvent, VideoOutlet
from recorder.rtms.events import AudioCodec, CaptureEvent
from recorder.rtms.messages import (
    AudioParams,
    DataOption,
    DeskshareParams,
    PayloadType,
    SampleRate,
    TranscriptParams,
    VideoParams,
)
from recorder.rtms.signature import Product, instance_id_key
from recorder.rtms.urls import DEFAULT_ALLOWED_HOSTS, SocketLayout, check_url

logger = logging.getLogger(__name__)

#: RTMS video keyframes and FHD JPEGs exceed trio-websocket's 1 MiB default (§5.15.1).
MAX_MESSAGE_SIZE: Final = 16 * 2**20
#: Bytes asked of the media socket per read. Below glibc's 128 KiB mmap threshold on purpose:
#: ``recv(256 KiB)`` allocates (mmap) and frees (munmap) a fresh buffer on every call, about
#: 18 µs more per 20 ms message than ``recv(64 KiB)`` on this machine kind; a bigger message
#: (video) simply takes several reads.
MEDIA_RECEIVE_BUFFER: Final = 64 * 2**10  # 64 KiB

#: Meeting events worth recording (1 and 7 arrive without subscribing, §5.6).
DEFAULT_MEETING_EVENTS: Final = (
    EventType.ACTIVE_SPEAKER_CHANGE,
    EventType.PARTICIPANT_JOIN,
    EventType.PARTICIPANT_LEAVE,
    EventType.SHARING_START,
    EventType.SHARING_STOP,
    EventType.PARTICIPANT_VIDEO_ON,
    EventType.PARTICIPANT_VIDEO_OFF,
)
DEFAULT_CONTACT_CENTER_EVENTS: Final = tuple(int(e) for e in ZccEventType if e != 0)


@dataclass(frozen=True, slots=True)
class StreamTarget:
    """Everything a ``*.rtms_started`` webhook (plus the app credentials) tells the client."""

    product: Product
    instance_id: str
    rtms_stream_id: str
    #: The webhook's comma-separated ``server_urls``, already split (``urls.split_server_urls``).
    server_urls: tuple[str, ...]
    #: Client ID, or the SDK key for Video SDK sessions.
    client_id: str
    client_secret: str = field(repr=False)
    #: Key naming the instance in handshakes; None = the product's webhook key (§14.1).
    handshake_instance_key: str | None = None

    @property
    def instance_key(self) -> str:
        return self.handshake_instance_key or instance_id_key(self.product)


def audio_params(
    codec: AudioCodec,
    sample_rate_hz: int,
    channels: int = 1,
    *,
    per_speaker: bool = False,
    send_rate_ms: int = 20,
) -> AudioParams:
    """Audio ``media_params`` checked against the supported matrix (§6.7)."""
    allowed: dict[AudioCodec, tuple[set[int], set[int]]] = {
        AudioCodec.L16: ({8000, 16000, 32000, 48000}, {1, 2}),
        AudioCodec.G711: ({8000}, {1}),
        AudioCodec.G722: ({16000}, {1}),
        AudioCodec.OPUS: ({48000}, {1, 2}),
    }
    rates, channel_counts = allowed[codec]
    if sample_rate_hz not in rates or channels not in channel_counts:
        raise ConfigError(
            f"RTMS does not offer {codec.name} at {sample_rate_hz} Hz with {channels} channel(s)"
        )
    max_send_rate = 1000 if codec is AudioCodec.L16 else 20
    if send_rate_ms % 20 or not 20 <= send_rate_ms <= max_send_rate:
        raise ConfigError(
            f"send_rate {send_rate_ms} ms is not a multiple of 20 up to {max_send_rate}"
        )
    return AudioParams(
        content_type=2,
        sample_rate=SampleRate.from_hz(sample_rate_hz),
        channel=channels,
        codec=PayloadType(int(codec)),
        data_opt=DataOption.AUDIO_MULTI_STREAMS if per_speaker else DataOption.AUDIO_MIXED_STREAM,
        send_rate=send_rate_ms,
    )


#: Media recorded by ``recorder.video`` rather than the audio capture.
_VIDEO = MediaType.VIDEO | MediaType.DESKSHARE


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """How to connect: media, socket layout, timers and the URL policy. Units are in the names."""

    audio: bool = True
    transcript: bool = False
    chat: bool = False
    video: bool = False
    deskshare: bool = False
    layout: SocketLayout = SocketLayout.PER_TYPE
    audio_params: AudioParams = field(default_factory=AudioParams)
    transcript_params: TranscriptParams = field(default_factory=TranscriptParams)
    video_params: VideoParams = field(default_factory=VideoParams)
    deskshare_params: DeskshareParams = field(default_factory=DeskshareParams)
    #: With video ``data_opt`` 4: the participant whose camera is subscribed (msg 28) each time
    #: a video socket becomes ready; empty = none (active speaker).
    video_user_id: str = ""
    #: EVENT_SUBSCRIPTION event types; None = a per-product default.
    subscribe_events: tuple[int, ...] | None = None
    #: No inbound frame of any kind for this long = the socket is dead (§9.1).
    watchdog_s: float = 65.0
    backoff_initial_s: float = 3.0
    backoff_max_s: float = 30.0
    #: DUPLICATE_SIGNAL_REQUEST rejections in a row retried before giving up.
    duplicate_retry_limit: int = 3
    #: Refusals in a row with the same other status (45, legacy 1, 13...) retried before an
    #: essential socket ends the stream or an optional one is dropped (``_refusals``).
    refusal_retry_limit: int = 5
    #: An interruption not recovered within this long ends the stream (RTMS itself gives up
    #: after about 60-65 s, §9.1).
    give_up_after_s: float = 180.0
    connect_timeout_s: float = 10.0
    handshake_timeout_s: float = 10.0
    close_timeout_s: float = 5.0
    #: Media triggers (event 7, state 2/14) for a socket younger than this are duplicates.
    media_trigger_guard_s: float = 1.0
    allowed_hosts: tuple[str, ...] = DEFAULT_ALLOWED_HOSTS
    #: Accept ws:// and loopback hosts: tests and ``recorder demo`` only.
    allow_insecure_loopback: bool = False
    #: Media events queued for the consumer before dropping (counted) starts.
    event_buffer: int = 500
    #: Control events waiting behind a full channel before informational ones are dropped
    #: (counted and surfaced); events that shape the audio record are never dropped (_outlet).
    control_event_buffer: int = 1000
    #: Keep ``buffer_data`` true: audio buffered before the connection is delivered (§5.1).
    buffer_data: bool = True
    max_message_size: int = MAX_MESSAGE_SIZE
    media_receive_buffer: int = MEDIA_RECEIVE_BUFFER
    #: Drive each socket's WebSocket state from the one task that reads it (``_direct``): one
    #: task step less per message (``recorder bench fullpath`` compares both). False: trio-
    #: websocket's reader task per socket. That driver's readers live in the stream's nursery,
    #: so a cancelled engagement (a drain) loses them and each close waits ``close_timeout_s``
    #: for a close frame nobody reads; the direct driver's closer reads it itself.
    single_task_sockets: bool = True
    #: With ``single_task_sockets``, read a TLS socket's bytes through ``_direct.ReadWhenReady``
    #: (wait for readability, then read). False: trio's own ``SocketStream`` under the SSL
    #: stream (``recorder bench fullpath --tls`` compares both).
    tls_read_when_ready: bool = True
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)
    #: Seconds since the epoch, for ``*_wall_ms`` in events; injectable for tests.
    wall_clock: Callable[[], float] = field(default=time.time, compare=False, repr=False)

    def wanted_media(self, product: Product) -> MediaType:
        wanted = MediaType.UNDEFINED
        if self.audio:
            wanted |= MediaType.AUDIO
        if self.transcript:
            wanted |= MediaType.TRANSCRIPT
        if not product.is_voice_call:
            # ZCC and Zoom Phone offer audio and transcript only (§2.3, §16).
            if self.chat:
                wanted |= MediaType.CHAT
            if self.video:
                wanted |= MediaType.VIDEO
            if self.deskshare:
                wanted |= MediaType.DESKSHARE
        return wanted

    def events_for(self, product: Product) -> tuple[int, ...]:
        if self.subscribe_events is not None:
            return self.subscribe_events
        if product.is_voice_call:
            # Zoom Phone's call events use the voice numbers too (the SDK's EVENT_USER_HOLD
            # is documented "for phone calls").
            return DEFAULT_CONTACT_CENTER_EVENTS
        return tuple(int(e) for e in DEFAULT_MEETING_EVENTS)


@dataclass(slots=True)
class RtmsStats:
    """Counters of one stream, for metrics and tests."""

    #: Inbound frames by kind: audio, transcript, chat, video, deskshare, keep_alive, control.
    frames: collections.Counter[str] = field(default_factory=collections.Counter)
    #: Frames not handed on, by cause: backpressure, malformed, ignored, video_not_recorded,
    #: control_backlog (informational control events behind a full backlog), after_end.
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)
    reconnects: int = 0
    keepalives_answered: int = 0
    signaling_connects: int = 0
    media_connects: int = 0
    open_signaling: int = 0
    max_open_signaling: int = 0
    #: Optional (non-audio) media sockets given up after refusals.
    media_sockets_dropped: int = 0
    #: Audio frames decoded by the tolerant path because the one-pass decoder could not take
    #: them (an odd shape, or malformed): a rising count means Zoom changed the frame format.
    audio_slow_path: int = 0


class RtmsStream:
    """One live RTMS stream. Read ``events``; call the controls from the webhook ingress."""

    def __init__(
        self,
        engine: _EngineLike,
        outlet: EventOutlet,
        stats: RtmsStats,
        video: VideoOutlet | None = None,
    ) -> None:
        self._engine = engine
        self._outlet = outlet
        self.stats = stats
        self.events: trio.MemoryReceiveChannel[CaptureEvent] = outlet.receive_channel
        #: Video and screen-share frames (``recorder.video.capture``); None when neither is
        #: requested. Closed by ``end_video`` or when the stream block exits.
        self._video = video
        self.video_events: trio.MemoryReceiveChannel[VideoEvent] | None = (
            video.receive_channel if video is not None else None
        )
        #: The consumer's synchronous fast path (``run_capture(inline=stream.inline)``).
        self.inline: InlineSlot = outlet.inline

    def end_video(self) -> None:
        """No more video is read (the audio capture ended): the video recorder seals."""
        if self._video is not None:
            self._video.close()

    @property
    def ended(self) -> bool:
        return self._engine.ended

    async def failover(self, server_urls: tuple[str, ...]) -> None:
        """Scenario 1: a new ``rtms_started`` for this stream. Reconnect to these URLs now."""
        await self._engine.failover(server_urls)

    def signaling_interrupted(
        self, server_urls: tuple[str, ...] = (), *, event_ts_ms: int | None = None
    ) -> None:
        """Scenario 2: ``*.rtms_interrupted``. Redo signaling and media after backoff.

        ``server_urls``: the webhook's, when it carries any (they replace the stored ones).
        ``event_ts_ms``: its ``event_ts``; one older than the live connection is ignored.
        """
        self._engine.signaling_interrupted(server_urls, event_ts_ms=event_ts_ms)

    def stopped(self, reason: int | None) -> None:
        """``*.rtms_stopped``: finish after reading what the media sockets still hold (bounded
        by ``close_timeout_s``); never reconnect."""
        self._engine.stopped(reason)

    async def close(self, *, graceful: bool = True) -> None:
        """End the stream; ``graceful`` asks RTMS to close it (STREAM_CLOSE_REQ) first."""
        await self._engine.close(graceful=graceful)

    async def subscribe_video(self, user_id: str, subscribe: bool = True) -> bool:
        """Individual video (needs video ``data_opt`` 4); False when signaling is down."""
        return await self._engine.subscribe_video(user_id, subscribe)


@asynccontextmanager
async def open_rtms_stream(
    target: StreamTarget, config: ClientConfig, *, event_buffer: int | None = None
) -> AsyncIterator[RtmsStream]:
    """Connect to one RTMS stream for the lifetime of the block.

    Raises ``UrlNotAllowed`` before connecting when a webhook URL breaks the URL policy. Every
    later failure is reported in the event stream, ending with ``StreamEnded``.
    """
    for url in target.server_urls:
        check_url(
            url,
            allowed_hosts=config.allowed_hosts,
            allow_insecure_loopback=config.allow_insecure_loopback,
        )
    if not target.server_urls:
        raise ConfigError("StreamTarget.server_urls is empty")

    def wall_ms() -> int:
        return int(config.wall_clock() * 1000)

    stats = RtmsStats()
    outlet = EventOutlet(
        config.event_buffer if event_buffer is None else event_buffer,
        wall_ms,
        stats.dropped,
        control_capacity=config.control_event_buffer,
    )
    try:
        async with trio.open_nursery() as nursery:
            engine = Engine(target, config, outlet, stats, wall_ms, nursery)
            video = VideoOutlet() if config.wanted_media(target.product) & _VIDEO else None
            engine.video_outlet = video
            engine.video_subscription = config.video_user_id if video is not None else ""
            nursery.start_soon(outlet.run_flusher)
            nursery.start_soon(engine.run)
            try:
                yield RtmsStream(engine, outlet, stats, video)
            finally:
                if video is not None:
                    video.close()
                engine.shutdown()
                # Let the sockets finish their closing handshakes (their readers live in this
                # nursery), bounded, even when the caller is being cancelled.
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + 2 * config.close_timeout_s
                    await engine.wait_finished()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise _single(group) from None


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """Callers see the one plain exception, as with trio-websocket's ``open_websocket``."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


class _EngineLike(Protocol):
    """The engine's surface as ``RtmsStream`` uses it (implemented by ``_engine.Engine``)."""

    @property
    def ended(self) -> bool: ...

    async def failover(self, server_urls: tuple[str, ...]) -> None: ...

    def signaling_interrupted(
        self, server_urls: tuple[str, ...] = (), *, event_ts_ms: int | None = None
    ) -> None: ...

    def stopped(self, reason: int | None) -> None: ...

    async def close(self, *, graceful: bool) -> None: ...

    async def subscribe_video(self, user_id: str, subscribe: bool) -> bool: ...


__all__ = [
    "MAX_MESSAGE_SIZE",
    "ClientConfig",
    "RtmsStats",
    "RtmsStream",
    "SocketLayout",
    "StreamTarget",
    "audio_params",
    "open_rtms_stream",
]
