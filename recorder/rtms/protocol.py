"""Sans-IO RTMS connections: ``SignalingConnection`` and ``MediaConnection`` (h11/wsproto style).

No trio, no clock, no logging in here. The shell feeds each decoded WebSocket message with
``receive_message(data)`` (``None`` when the transport is gone), calls ``tick(now)`` for the
liveness watchdog, sends every string from ``data_to_send()`` and acts on ``events()``.

Rules:

1. Local misuse (calling a method the state forbids) raises ``LocalProtocolError``.
2. Peer garbage never raises and never corrupts state: it becomes a ``ProtocolViolation`` event.
   Only an unreadable or refused handshake answer is fatal; the machine then sits in ``ERROR``
   and ignores everything the peer sends (fail closed).
3. A keep-alive request is answered at once, on the same socket, echoing exactly what it carried.
4. Any inbound frame, of any type, feeds the watchdog (keep-alives pause while data flows, §0.4).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from recorder.errors import (
    HandshakeRejected,
    LocalProtocolError,
    RemoteProtocolError,
    UnsupportedProtocolVersion,
)
from recorder.rtms._enums import (
    ContentType,
    EventType,
    MsgType,
    SessionState,
    StopReason,
    StreamState,
    classify_rejection,
    event_name,
    sample_rate_hz,
    stop_reason_name,
)
from recorder.rtms._protocol_events import (
    ConnectionEnded,
    ConnState,
    HandshakeRefused,
    IgnoredMessage,
    KeepAliveAnswered,
    MediaInterruption,
    MediaReady,
    PauseChanged,
    ProtocolEvent,
    ProtocolViolation,
    SignalingInterruptionNotice,
    SignalingReady,
    StateReport,
    StreamTerminated,
    VideoFrame,
    VideoSubscriptionResult,
)
from recorder.rtms.events import (
    MIXED_TRACK,
    AudioCodec,
    AudioFormat,
    ChatMessage,
    ContactCenterEvent,
    FirstPacketTimestamp,
    Participant,
    ParticipantEvent,
    StreamStateChanged,
    TranscriptMessage,
    audio_packet,
)
from recorder.rtms.messages import (
    AudioParams,
    ClientReadyAck,
    DataHandshakeRequest,
    DataHandshakeResponse,
    EventSubscription,
    EventUpdate,
    KeepAliveRequest,
    MediaChat,
    MediaParams,
    MediaShare,
    MediaTranscript,
    MediaVideo,
    Message,
    MetadataMessage,
    SessionStateRequest,
    SessionStateResponse,
    SessionStateUpdate,
    SignalingHandshakeRequest,
    SignalingHandshakeResponse,
    StreamCloseRequest,
    StreamCloseResponse,
    StreamStateRequest,
    StreamStateResponse,
    StreamStateUpdate,
    UnknownMessage,
    VideoSubscriptionRequest,
    VideoSubscriptionResponse,
    binary_content,
    decode_object,
    encode,
    fast_audio_content,
    load_object,
)
from recorder.rtms.rtp import l16_to_little_endian, rtp_payload

#: No inbound frame of any type for this long means the socket is dead (§9.1).
DEFAULT_WATCHDOG_S: Final = 65.0

#: STREAM_STATE_UPDATE 2 (INTERRUPTED) reasons that name a media connection: redo only media
#: (§9.2 case 3). Those naming signaling or the instance wait for ``rtms_interrupted`` or the
#: socket's own loss; any other reason (keep-alive timeout, exceptions, unknown) names no socket
#: and is only reported, never acted upon: a wrong guess would tear down healthy media.
_MEDIA_INTERRUPTION_REASONS: Final = frozenset(
    {StopReason.DATA_CONNECTION_INTERRUPTED, StopReason.DATA_CONNECTION_CLOSED_ABNORMALLY}
)

#: Sent automatically; subscribing to them is an error (§5.6).
_AUTOMATIC_EVENTS: Final = frozenset({EventType.FIRST_PACKET_TIMESTAMP, 7})

_TRANSITIONS: Final[Mapping[ConnState, frozenset[ConnState]]] = {
    ConnState.IDLE: frozenset({ConnState.HANDSHAKING, ConnState.CLOSED, ConnState.ERROR}),
    ConnState.HANDSHAKING: frozenset({ConnState.OPEN, ConnState.CLOSED, ConnState.ERROR}),
    ConnState.OPEN: frozenset({ConnState.CLOSING, ConnState.CLOSED, ConnState.ERROR}),
    ConnState.CLOSING: frozenset({ConnState.CLOSED, ConnState.ERROR}),
    ConnState.CLOSED: frozenset(),
    ConnState.ERROR: frozenset(),
}

_ENDED: Final = frozenset({ConnState.CLOSED, ConnState.ERROR})


class _Connection:
    """What both sockets share: state, queues, keep-alive, watchdog, stream/session states."""

    _handshake_response_type: int = MsgType.UNDEFINED

    def __init__(self, *, contact_center: bool, watchdog_s: float) -> None:
        self._state = ConnState.IDLE
        self._events: list[ProtocolEvent] = []
        self._outbox: list[str] = []
        self._contact_center = contact_center
        self.watchdog_s = watchdog_s
        self._last_inbound: float | None = None
        self._inbound_since_tick = False
        #: Latest RTMS timestamp seen, the stand-in for messages that carry none.
        self._last_rtms_ms = 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} state={self._state.name}>"

    @property
    def state(self) -> ConnState:
        return self._state

    def events(self) -> list[ProtocolEvent]:
        out, self._events = self._events, []
        return out

    def has_data_to_send(self) -> bool:
        return bool(self._outbox)

    def data_to_send(self) -> list[str]:
        out, self._outbox = self._outbox, []
        return out

    def _set_state(self, new: ConnState) -> None:
        if new is self._state:
            return
        if new not in _TRANSITIONS[self._state]:
            raise LocalProtocolError(f"{self!r}: cannot move to {new.name}")
        self._state = new

    def _require(self, *states: ConnState) -> None:
        if self._state not in states:
            allowed = "/".join(s.name for s in states)
            raise LocalProtocolError(f"{self!r}: only allowed in {allowed}")

    def _send(self, msg: Message) -> None:
        self._outbox.append(encode(msg))

    def _begin(self, request: Message, now: float) -> None:
        self._require(ConnState.IDLE)
        self._send(request)
        self._last_inbound = now
        self._set_state(ConnState.HANDSHAKING)

    def _fail(self, event: ProtocolEvent) -> None:
        self._events.append(event)
        self._set_state(ConnState.ERROR)

    # --- inbound -----------------------------------------------------------------------------

    def receive_message(self, data: str | bytes | None, now: float | None = None) -> None:
        """Feed one WebSocket message (text or binary), or ``None`` when the transport is gone.

        ``now`` refreshes the watchdog precisely; without it the next ``tick`` counts the frame.
        """
        if self._state in _ENDED:
            return
        if data is None:
            during = self._state in (ConnState.IDLE, ConnState.HANDSHAKING)
            self._events.append(ConnectionEnded("transport", during_handshake=during))
            self._set_state(ConnState.CLOSED)
            return
        if now is None:
            self._inbound_since_tick = True
        else:
            self._last_inbound = now
        try:
            obj = load_object(data)
        except UnsupportedProtocolVersion as exc:
            # A V2 (Protobuf) frame where the handshake answer is due: fail closed, by name (the
            # engine retries a few times, in case it was one garbage frame).
            if self._state is ConnState.HANDSHAKING:
                self._fail(ProtocolViolation(exc, fatal=True))
            else:
                self._events.append(ProtocolViolation(exc))
            return
        except RemoteProtocolError as exc:
            self._events.append(ProtocolViolation(exc))
            return
        type_code: int = obj["msg_type"]
        if type_code == MsgType.MEDIA_DATA_AUDIO:
            self._receive_audio(obj)
            return
        try:
            msg = decode_object(obj)
        except RemoteProtocolError as exc:
            if type_code == self._handshake_response_type and self._state is ConnState.HANDSHAKING:
                self._fail(ProtocolViolation(exc, fatal=True))
            else:
                self._events.append(ProtocolViolation(exc))
            return
        if isinstance(msg, KeepAliveRequest):
            self._send(msg.response())
            self._events.append(KeepAliveAnswered())
            return
        self._dispatch(msg)

    def _receive_audio(self, obj: dict[str, Any]) -> None:
        self._events.append(IgnoredMessage(MsgType.MEDIA_DATA_AUDIO))

    def _dispatch(self, msg: Message) -> None:
        if isinstance(msg, StreamStateUpdate):
            self._stream_state(msg)
        elif isinstance(msg, SessionStateUpdate):
            self._session_state(msg)
        else:
            self._events.append(IgnoredMessage(_type_code(msg)))

    def _stream_state(self, msg: StreamStateUpdate) -> None:
        if msg.timestamp_ms is not None:
            self._last_rtms_ms = msg.timestamp_ms
        self._events.append(
            StreamStateChanged(
                timestamp_ms=msg.timestamp_ms,
                scope="stream",
                state=msg.state,
                state_name=_name(StreamState, msg.state),
                reason=msg.reason,
                reason_name=None if msg.reason is None else stop_reason_name(msg.reason),
                rtms_session_id=None,
            )
        )
        detail = f"stream state {msg.state} reason {msg.reason}"
        if msg.state == StreamState.INTERRUPTED:
            if msg.reason in _MEDIA_INTERRUPTION_REASONS:
                self._events.append(MediaInterruption(0, detail))
            else:
                self._events.append(SignalingInterruptionNotice(detail))
        elif msg.state == StreamState.TERMINATED:
            self._events.append(StreamTerminated(msg.reason, msg.timestamp_ms, "stream"))
        elif msg.state == StreamState.PAUSED:
            self._events.append(PauseChanged(True, msg.timestamp_ms))
        elif msg.state == StreamState.RESUMED:
            self._events.append(PauseChanged(False, msg.timestamp_ms))

    def _session_state(self, msg: SessionStateUpdate) -> None:
        if msg.timestamp_ms is not None:
            self._last_rtms_ms = msg.timestamp_ms
        reason = msg.stop_reason if msg.state == SessionState.STOPPED else None
        self._events.append(
            StreamStateChanged(
                timestamp_ms=msg.timestamp_ms,
                scope="session",
                state=msg.state,
                state_name=_name(SessionState, msg.state),
                reason=reason,
                reason_name=None if reason is None else stop_reason_name(reason),
                rtms_session_id=msg.rtms_session_id,
            )
        )
        if msg.state == SessionState.PAUSED:
            self._events.append(PauseChanged(True, msg.timestamp_ms))
        elif msg.state == SessionState.RESUMED:
            self._events.append(PauseChanged(False, msg.timestamp_ms))
        elif msg.state == SessionState.STOPPED:
            self._events.append(StreamTerminated(reason, msg.timestamp_ms, "session"))

    def _refused(self, status_code: int | None, reason: str, *, signaling: bool) -> None:
        rejection = classify_rejection(status_code, reason, signaling=signaling)
        self._fail(HandshakeRefused(HandshakeRejected(status_code, reason), rejection))

    # --- time --------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Run the liveness watchdog: no inbound frame for ``watchdog_s`` ends the connection."""
        if self._state in _ENDED or self._state is ConnState.IDLE:
            return
        if self._inbound_since_tick or self._last_inbound is None:
            self._inbound_since_tick = False
            self._last_inbound = now
            return
        if now - self._last_inbound >= self.watchdog_s:
            during = self._state is ConnState.HANDSHAKING
            silent = now - self._last_inbound
            self._events.append(
                ConnectionEnded("watchdog", during_handshake=during, detail=f"silent {silent:.1f}s")
            )
            self._set_state(ConnState.CLOSED)

    def deadline(self) -> float | None:
        """When ``tick`` should next be called, or None when the watchdog is not armed."""
        if self._state in _ENDED or self._last_inbound is None:
            return None
        return self._last_inbound + self.watchdog_s

    def close(self) -> None:
        """Forget the conversation locally (the shell closes the socket itself)."""
        if self._state not in _ENDED:
            self._set_state(ConnState.CLOSED)


def _type_code(msg: Message) -> int:
    if isinstance(msg, MetadataMessage | UnknownMessage):
        return msg.type_code
    return int(msg.msg_type)


def _name(enum_type: Any, value: int) -> str:
    try:
        return str(enum_type(value).name)
    except ValueError:
        return f"STATE_{value}"


class SignalingConnection(_Connection):
    """The signaling socket: handshake (1/2), subscriptions, events, states, close, video subs."""

    _handshake_response_type = MsgType.SIGNALING_HAND_SHAKE_RESP

    def __init__(
        self,
        *,
        rtms_stream_id: str,
        instance_id: str,
        instance_key: str,
        signature: str,
        contact_center: bool = False,
        event_code: bool = False,
        subscribe_events: tuple[int, ...] = (),
        buffer_data: bool = True,
        sequence: int = 1,
        watchdog_s: float = DEFAULT_WATCHDOG_S,
    ) -> None:
        super().__init__(contact_center=contact_center, watchdog_s=watchdog_s)
        #: Zoom Phone sends ``event_code`` only (rtms-protocol §16); on the V1 products that form
        #: is RTMS V2, refused by name.
        self._event_code = event_code
        self._request = SignalingHandshakeRequest(
            rtms_stream_id=rtms_stream_id,
            signature=signature,
            instance_id=instance_id,
            instance_key=instance_key,
            sequence=sequence,
            buffer_data=buffer_data,
        )
        self._rtms_stream_id = rtms_stream_id
        self._subscribe = tuple(e for e in subscribe_events if e not in _AUTOMATIC_EVENTS)
        self.server_urls: Mapping[str, str] = {}

    def initiate(self, now: float) -> None:
        """Queue SIGNALING_HAND_SHAKE_REQ (1)."""
        self._begin(self._request, now)

    def client_ready(self) -> None:
        """Queue CLIENT_READY_ACK (7): call after every successful media handshake."""
        self._require(ConnState.OPEN)
        self._send(ClientReadyAck(self._rtms_stream_id))

    def request_close(self) -> None:
        """Queue STREAM_CLOSE_REQ (21); RTMS ends the stream after answering with 22."""
        self._require(ConnState.OPEN)
        self._send(StreamCloseRequest(self._rtms_stream_id))
        self._set_state(ConnState.CLOSING)

    def request_stream_state(self) -> None:
        self._require(ConnState.OPEN)
        self._send(StreamStateRequest(self._rtms_stream_id))

    def request_session_state(self, rtms_session_id: str) -> None:
        self._require(ConnState.OPEN)
        self._send(SessionStateRequest(rtms_session_id))

    def subscribe_video(self, user_id: str, subscribe: bool, timestamp_ms: int) -> None:
        """VIDEO_SUBSCRIPTION_REQ (28); needs video ``data_opt`` 4."""
        self._require(ConnState.OPEN)
        self._send(VideoSubscriptionRequest(user_id, subscribe, timestamp_ms))

    def _dispatch(self, msg: Message) -> None:
        if isinstance(msg, SignalingHandshakeResponse):
            self._handshake_answer(msg)
        elif self._state is ConnState.HANDSHAKING:
            # Nothing but keep-alives is meaningful before the handshake is answered.
            self._events.append(IgnoredMessage(_type_code(msg)))
        elif isinstance(msg, EventUpdate):
            self._event_update(msg)
        elif isinstance(msg, StreamCloseResponse):
            self._events.append(StreamTerminated(20, msg.timestamp_ms, "close"))
            self._set_state(ConnState.CLOSED)
        elif isinstance(msg, SessionStateResponse):
            self._events.append(StateReport("session", msg.state, msg.timestamp_ms))
        elif isinstance(msg, StreamStateResponse):
            self._events.append(StateReport("stream", msg.state, msg.timestamp_ms))
        elif isinstance(msg, VideoSubscriptionResponse):
            self._events.append(VideoSubscriptionResult(msg.user_id, msg.status_code, msg.reason))
        else:
            super()._dispatch(msg)

    def _handshake_answer(self, msg: SignalingHandshakeResponse) -> None:
        if self._state is not ConnState.HANDSHAKING:
            self._events.append(IgnoredMessage(MsgType.SIGNALING_HAND_SHAKE_RESP))
            return
        if not msg.ok:
            self._refused(msg.status_code, msg.reason, signaling=True)
            return
        self.server_urls = dict(msg.server_urls)
        self._set_state(ConnState.OPEN)
        self._events.append(SignalingReady(self.server_urls))
        if self._subscribe:
            self._send(EventSubscription(tuple((e, True) for e in self._subscribe)))

    def _event_update(self, msg: EventUpdate) -> None:
        if msg.event_code_only and not self._event_code:
            self._events.append(
                ProtocolViolation(
                    UnsupportedProtocolVersion(
                        "msg 6 event: 'event_code' without 'event_type' is the RTMS V2 event form"
                    )
                )
            )
            return
        timestamp = msg.timestamp_ms
        if timestamp is not None:
            self._last_rtms_ms = timestamp
        else:
            timestamp = self._last_rtms_ms
        if msg.event_type == EventType.FIRST_PACKET_TIMESTAMP:
            self._events.append(FirstPacketTimestamp(timestamp))
        elif msg.event_type == EventType.MEDIA_CONNECTION_INTERRUPTED:
            media_type = msg.extra.get("media_type")
            self._events.append(
                MediaInterruption(media_type if type(media_type) is int else 0, "event 7")
            )
        elif self._contact_center:
            self._events.append(_contact_center_event(msg, timestamp))
        else:
            participants = msg.participants
            if not participants and msg.user_id is not None:
                participants = (Participant(msg.user_id, msg.user_name),)
            self._events.append(
                ParticipantEvent(
                    timestamp_ms=timestamp,
                    event_type=msg.event_type,
                    name=event_name(msg.event_type, contact_center=False),
                    participants=participants,
                )
            )


_ZCC_FIELDS: Final = ("channel_id", "participant_mode", "queue_id", "queue_name", "display_name")


def _contact_center_event(msg: EventUpdate, timestamp: int) -> ContactCenterEvent:
    info: dict[str, Any] = dict(msg.participant_info or {})
    values: dict[str, str | None] = {}
    for key in (*_ZCC_FIELDS, "user_id"):
        value = info.pop(key, None)
        values[key] = str(value) if isinstance(value, str | int) else None
    extra: dict[str, object] = {**dict(msg.extra), **info}
    # Zoom Phone may name its event_code instead of numbering it (see messages._event_type).
    code = msg.extra.get("event_code")
    if isinstance(code, str) and not code.strip().isdigit():
        name = code.strip().upper()
    else:
        name = event_name(msg.event_type, contact_center=True)
    return ContactCenterEvent(
        timestamp_ms=timestamp,
        event_type=msg.event_type,
        name=name,
        channel_id=values["channel_id"],
        participant_mode=values["participant_mode"],
        queue_id=values["queue_id"],
        queue_name=values["queue_name"],
        user_id=values["user_id"] or msg.user_id,
        display_name=values["display_name"],
        extra=extra,
    )


def audio_format(params: AudioParams) -> AudioFormat | None:
    """The decoder's view of confirmed audio params; None when the codec or rate is unknown."""
    try:
        codec = AudioCodec(params.codec)
    except ValueError:
        return None
    hz = sample_rate_hz(params.sample_rate)
    if hz is None:
        return None
    return AudioFormat(
        codec=codec,
        sample_rate=hz,
        channels=params.channel,
        packet_ms=params.send_rate,
        data_opt=params.data_opt,
        content_type=params.content_type,
    )


class MediaConnection(_Connection):
    """One media socket (one media type, or ``all``): handshake (3/4) and media frames 14-18."""

    _handshake_response_type = MsgType.DATA_HAND_SHAKE_RESP

    def __init__(
        self,
        *,
        rtms_stream_id: str,
        instance_id: str,
        instance_key: str,
        signature: str,
        media_type: int,
        media_params: MediaParams | None,
        contact_center: bool = False,
        sequence: int = 1,
        watchdog_s: float = DEFAULT_WATCHDOG_S,
    ) -> None:
        super().__init__(contact_center=contact_center, watchdog_s=watchdog_s)
        self.media_type = media_type
        self._request = DataHandshakeRequest(
            rtms_stream_id=rtms_stream_id,
            signature=signature,
            instance_id=instance_id,
            instance_key=instance_key,
            media_type=media_type,
            media_params=media_params,
            sequence=sequence,
        )
        self._requested = media_params or MediaParams()
        self.media_params: MediaParams | None = None
        self.audio_format: AudioFormat | None = None
        #: Audio frames the one-pass decoder could not take (an unusual shape, or malformed),
        #: decoded by the tolerant path instead, since the last ``take_slow_path_count`` (which
        #: hands them to metrics). Read-only outside: a look costs less than the call.
        self.slow_path_frames = 0

    def take_slow_path_count(self) -> int:
        count, self.slow_path_frames = self.slow_path_frames, 0
        return count

    def initiate(self, now: float) -> None:
        """Queue DATA_HAND_SHAKE_REQ (3)."""
        self._begin(self._request, now)

    def _dispatch(self, msg: Message) -> None:
        if isinstance(msg, DataHandshakeResponse):
            self._handshake_answer(msg)
        elif self._state is not ConnState.OPEN:
            self._events.append(IgnoredMessage(_type_code(msg)))
        elif isinstance(msg, MediaTranscript):
            self._last_rtms_ms = msg.timestamp_ms
            self._events.append(
                TranscriptMessage(
                    timestamp_ms=msg.timestamp_ms,
                    text=msg.text,
                    user_id=msg.user_id,
                    user_name=msg.user_name,
                    channel_id=msg.channel_id,
                    start_ms=msg.start_ms,
                    end_ms=msg.end_ms,
                    language=msg.language,
                )
            )
        elif isinstance(msg, MediaChat):
            self._events.append(ChatMessage(msg.timestamp_ms, msg.text, msg.user_id, msg.user_name))
        elif isinstance(msg, MediaVideo | MediaShare):
            kind = "video" if isinstance(msg, MediaVideo) else "deskshare"
            self._events.append(VideoFrame(kind, msg.timestamp_ms, msg.data, msg.user_id))
        else:
            super()._dispatch(msg)

    def _handshake_answer(self, msg: DataHandshakeResponse) -> None:
        if self._state is not ConnState.HANDSHAKING:
            self._events.append(IgnoredMessage(MsgType.DATA_HAND_SHAKE_RESP))
            return
        if not msg.ok:
            self._refused(msg.status_code, msg.reason, signaling=False)
            return
        confirmed = msg.media_params or self._requested
        audio = confirmed.audio or self._requested.audio
        self.media_params = confirmed
        self.audio_format = None if audio is None else audio_format(audio)
        if self.audio_format is None and self._requested.audio is not None:
            # Unknown codec/rate in the answer: decode as requested rather than not at all.
            self.audio_format = audio_format(self._requested.audio)
        self._set_state(ConnState.OPEN)
        self._events.append(MediaReady(confirmed, self.audio_format, msg.payload_encrypted))

    def receive_message(self, data: str | bytes | None, now: float | None = None) -> None:
        # The hot path (perf §5, §7): a msg 14 frame of the documented shape is decoded in one
        # msgspec pass; anything else takes the tolerant path, which decides alone.
        if data is not None and self._state is ConnState.OPEN:
            fmt = self.audio_format
            if fmt is not None:
                fast = fast_audio_content(data)
                if fast is not None:
                    if now is None:
                        self._inbound_since_tick = True
                    else:
                        self._last_inbound = now
                    self._audio_packet(fmt, fast)
                    return
        super().receive_message(data, now)

    def _receive_audio(self, obj: dict[str, Any]) -> None:
        """One base64 decode and one ``AudioPacket`` per message."""
        fmt = self.audio_format
        if self._state is not ConnState.OPEN or fmt is None:
            self._events.append(IgnoredMessage(MsgType.MEDIA_DATA_AUDIO))
            return
        self.slow_path_frames += 1
        content = obj.get("content")
        if type(content) is not dict:
            self._events.append(
                ProtocolViolation(RemoteProtocolError("msg 14: field 'content' must be an object"))
            )
            return
        try:
            decoded = binary_content(content, "14")
        except RemoteProtocolError as exc:
            self._events.append(ProtocolViolation(exc))
            return
        self._audio_packet(fmt, decoded)

    def _audio_packet(
        self,
        fmt: AudioFormat,
        decoded: tuple[int, bytes, str | None, str | None, str | None],
    ) -> None:
        """``decoded`` is ``binary_content``'s tuple, passed whole: a ``*`` call costs more."""
        timestamp, payload, user_id, user_name, channel_id = decoded
        if fmt.content_type == ContentType.RTP:
            try:
                payload = rtp_payload(payload)
                if fmt.codec is AudioCodec.L16:
                    payload = l16_to_little_endian(payload)
            except RemoteProtocolError as exc:
                self._events.append(ProtocolViolation(exc))
                return
        if channel_id is not None:
            track = "channel-" + channel_id
        elif user_id is None or user_id == "0" or fmt.data_opt == 1:
            track = MIXED_TRACK
        else:
            track = "user-" + user_id
        self._events.append(
            audio_packet(track, timestamp, payload, fmt, user_id, user_name, channel_id)
        )


__all__ = [
    "DEFAULT_WATCHDOG_S",
    "ConnState",
    "ConnectionEnded",
    "HandshakeRefused",
    "IgnoredMessage",
    "KeepAliveAnswered",
    "MediaConnection",
    "MediaInterruption",
    "MediaReady",
    "PauseChanged",
    "ProtocolEvent",
    "ProtocolViolation",
    "SignalingConnection",
    "SignalingInterruptionNotice",
    "SignalingReady",
    "StateReport",
    "StreamTerminated",
    "VideoFrame",
    "VideoSubscriptionResult",
    "audio_format",
]
