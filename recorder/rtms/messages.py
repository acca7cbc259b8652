"""RTMS wire messages: one frozen value per message type, both directions, and the JSON codec.

Both directions are modelled because the client encodes what it sends and the simulator decodes
it, and the other way round. The enums live in ``_enums`` and are re-exported here.

Rules of the codec (rtms-protocol.md §3, §5, §12.4, §15):

* ``encode`` writes compact JSON with every enum as an integer.
* ``decode`` accepts text and binary frames (the official SDK sends pretty-printed JSON in binary
  frames), ignores unknown fields, turns unknown ``msg_type`` values into ``UnknownMessage`` and
  raises only ``RemoteProtocolError``, naming the field, for malformed input.
* Known wire variants are normalised here, once: stop reasons as names, keep-alives without a
  timestamp, ``stop_reason``/``reason``, ``session_id``/``rtms_session_id``, the ZCC
  ``paticipant_info`` typo, integer or string user ids, chat data as text or JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from recorder.errors import RemoteProtocolError, UnsupportedProtocolVersion
from recorder.rtms._enums import (
    INSTANCE_KEYS,
    MEDIA_KEYS,
    PROTOCOL_VERSION,
    Channel,
    ContentType,
    DataOption,
    EventType,
    LegacyStatusCode,
    MediaResolution,
    MediaType,
    MsgType,
    PayloadType,
    Rejection,
    SampleRate,
    SessionState,
    StatusCode,
    StopClass,
    StopReason,
    StreamState,
    TranscriptLanguage,
    ZccEventType,
    classify_rejection,
    classify_stop_reason,
    event_name,
    is_success,
    parse_stop_reason,
    sample_rate_hz,
    stop_reason_name,
)
from recorder.rtms._wire_fields import (
    AudioParams,
    ChatParams,
    DeskshareParams,
    EchoValue,
    JsonObject,
    MediaParams,
    TranscriptParams,
    VideoParams,
    _drop_none,
    _fail,
    _opt_bool,
    _opt_echo,
    _opt_id,
    _opt_int,
    _opt_object,
    _opt_str,
    _req_int,
    _wire_id,
)
from recorder.rtms._wire_media import (
    MediaAudio,
    MediaChat,
    MediaShare,
    MediaTranscript,
    MediaVideo,
    _binary_parser,
    _parse_chat,
    _parse_transcript,
    binary_content,
    fast_audio_content,
)
from recorder.rtms._wire_requests import (
    ClientReadyAck,
    DataHandshakeRequest,
    EventSubscription,
    KeepAliveResponse,
    SessionStateRequest,
    SignalingHandshakeRequest,
    StreamCloseRequest,
    StreamStateRequest,
    VideoSubscriptionRequest,
    _parse_data_request,
    _parse_signaling_request,
    _parse_subscription,
)
from recorder.rtms.events import Participant

# --- server -> client ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignalingHandshakeResponse:
    """SIGNALING_HAND_SHAKE_RESP (2). ``status_code`` None = the mock's failure form."""

    msg_type: ClassVar[MsgType] = MsgType.SIGNALING_HAND_SHAKE_RESP
    status_code: int | None
    reason: str = ""
    #: ``media_server.server_urls``: media key (audio, video, transcript, all, ...) -> URL.
    server_urls: Mapping[str, str] = field(default_factory=dict)
    sequence: int | None = 0
    protocol_version: int | None = PROTOCOL_VERSION

    @property
    def ok(self) -> bool:
        return is_success(self.status_code)

    def to_wire(self) -> JsonObject:
        out = _drop_none(
            {
                "msg_type": int(self.msg_type),
                "protocol_version": self.protocol_version,
                "sequence": self.sequence,
                "status_code": self.status_code,
                "reason": self.reason,
            }
        )
        if self.server_urls:
            out["media_server"] = {"server_urls": dict(self.server_urls)}
        return out


#: Handshake answer fields only RTMS V2 sends (SRT transport for data connections, §16).
_V2_ONLY_FIELDS: Final = ("srt_passphrase", "srt_pbkey_length")


def _refuse_v2(obj: JsonObject, where: str) -> None:
    """A V2 handshake answer is refused by name: its media would not be V1 JSON (§16)."""
    version = obj.get("protocol_version")
    if type(version) is int and version != PROTOCOL_VERSION:
        raise UnsupportedProtocolVersion(
            f"msg {where}: protocol_version {version}; this client speaks version "
            f"{PROTOCOL_VERSION} (JSON) only"
        )
    for key in _V2_ONLY_FIELDS:
        if key in obj:
            raise UnsupportedProtocolVersion(
                f"msg {where}: field {key!r} belongs to RTMS V2 (SRT), which is not supported"
            )


def _parse_signaling_response(obj: JsonObject, where: str) -> SignalingHandshakeResponse:
    _refuse_v2(obj, where)
    urls: dict[str, str] = {}
    media_server = _opt_object(obj, "media_server", where)
    if media_server is not None:
        raw_urls = _opt_object(media_server, "server_urls", where + " media_server")
        for key, url in (raw_urls or {}).items():
            if not isinstance(url, str):
                raise _fail(where, f"media_server.server_urls.{key}", "must be a string")
            urls[key] = url
    return SignalingHandshakeResponse(
        status_code=_opt_int(obj, "status_code", where),
        reason=_opt_str(obj, "reason") or "",
        server_urls=urls,
        sequence=_opt_int(obj, "sequence", where),
        protocol_version=_opt_int(obj, "protocol_version", where),
    )


@dataclass(frozen=True, slots=True)
class DataHandshakeResponse:
    """DATA_HAND_SHAKE_RESP (4) with the *confirmed* media params."""

    msg_type: ClassVar[MsgType] = MsgType.DATA_HAND_SHAKE_RESP
    status_code: int | None
    reason: str = ""
    media_params: MediaParams | None = None
    payload_encrypted: bool = False
    sequence: int | None = 0
    protocol_version: int | None = PROTOCOL_VERSION

    @property
    def ok(self) -> bool:
        return is_success(self.status_code)

    def to_wire(self) -> JsonObject:
        return _drop_none(
            {
                "msg_type": int(self.msg_type),
                "protocol_version": self.protocol_version,
                "sequence": self.sequence,
                "status_code": self.status_code,
                "reason": self.reason,
                "payload_encrypted": self.payload_encrypted,
                "media_params": None if self.media_params is None else self.media_params.to_wire(),
            }
        )


def _parse_data_response(obj: JsonObject, where: str) -> DataHandshakeResponse:
    _refuse_v2(obj, where)
    params = _opt_object(obj, "media_params", where)
    # The doc JSON says payload_encrypted, its field table payload_encryption (§13.6).
    encrypted = _opt_bool(obj, "payload_encrypted", where)
    if encrypted is None:
        encrypted = _opt_bool(obj, "payload_encryption", where)
    return DataHandshakeResponse(
        status_code=_opt_int(obj, "status_code", where),
        reason=_opt_str(obj, "reason") or "",
        media_params=None if params is None else MediaParams.from_wire(params, where),
        payload_encrypted=bool(encrypted),
        sequence=_opt_int(obj, "sequence", where),
        protocol_version=_opt_int(obj, "protocol_version", where),
    )


@dataclass(frozen=True, slots=True)
class EventUpdate:
    """EVENT_UPDATE (6). ``event_type`` is read in the namespace of the product (§13.13)."""

    msg_type: ClassVar[MsgType] = MsgType.EVENT_UPDATE
    event_type: int
    timestamp_ms: int | None = None
    user_id: str | None = None
    user_name: str | None = None
    participants: tuple[Participant, ...] = ()
    #: ZCC ``participant_info`` (or the ``paticipant_info`` typo), verbatim.
    participant_info: Mapping[str, Any] | None = None
    #: Any other field of the ``event`` object, verbatim (and emitted by ``encode``).
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: ZCC events use ``event_ts``, meeting events ``timestamp``.
    timestamp_key: str = "timestamp"
    #: The event came with ``event_code`` and no ``event_type``: Zoom Phone's form, and the RTMS
    #: V2 form everywhere else (the connection, which knows its product, decides).
    event_code_only: bool = False

    def to_wire(self) -> JsonObject:
        event: JsonObject = dict(self.extra)
        if not self.event_code_only:
            event["event_type"] = int(self.event_type)
        if self.timestamp_ms is not None:
            event[self.timestamp_key] = self.timestamp_ms
        if self.user_id is not None:
            event["user_id"] = _wire_id(self.user_id)
        if self.user_name is not None:
            event["user_name"] = self.user_name
        if self.participants:
            event["participants"] = [
                _drop_none({"user_id": _wire_id(p.user_id), "user_name": p.user_name})
                for p in self.participants
            ]
        if self.participant_info is not None:
            event["participant_info"] = dict(self.participant_info)
        return {"msg_type": int(self.msg_type), "event": event}


_EVENT_KNOWN_KEYS: Final = frozenset(
    {
        "event_type",
        "timestamp",
        "event_ts",
        "user_id",
        "user_name",
        "participants",
        "participant_info",
        "paticipant_info",
    }
)


def _event_type(event: JsonObject, where: str) -> int:
    """``event_type``, or Zoom Phone's ``event_code`` (rtms-protocol §16: Phone sends
    ``event_code`` only; its values are not published). A numeric code is read in the voice
    namespace like ``event_type``; a named code gives 0 (UNDEFINED) and stays verbatim in
    ``extra`` (``event_code``), where the voice-event parser takes its name from."""
    if "event_type" in event or "event_code" not in event:
        return _req_int(event, "event_type", where)
    code = event["event_code"]
    if type(code) is int:
        return code
    if isinstance(code, str) and code.strip():
        text = code.strip()
        return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else 0
    raise _fail(where, "event_code", "must be an integer or a name")


def _parse_event(obj: JsonObject, where: str) -> EventUpdate:
    event = _opt_object(obj, "event", where)
    if event is None:
        raise _fail(where, "event", "is missing")
    where = f"{where} event"
    timestamp_key = "timestamp" if "timestamp" in event else "event_ts"
    participants: list[Participant] = []
    raw_participants = event.get("participants")
    if raw_participants is not None:
        if not isinstance(raw_participants, list):
            raise _fail(where, "participants", "must be a list")
        for item in raw_participants:
            if not isinstance(item, dict):
                raise _fail(where, "participants", "items must be objects")
            user_id = _opt_id(item, "user_id", where + " participants")
            if user_id is not None:
                participants.append(Participant(user_id, _opt_str(item, "user_name")))
    info = _opt_object(event, "participant_info", where)
    if info is None:
        info = _opt_object(event, "paticipant_info", where)
    return EventUpdate(
        event_type=_event_type(event, where),
        timestamp_ms=_opt_int(event, timestamp_key, where),
        user_id=_opt_id(event, "user_id", where),
        user_name=_opt_str(event, "user_name"),
        participants=tuple(participants),
        participant_info=info,
        extra={k: v for k, v in event.items() if k not in _EVENT_KNOWN_KEYS},
        timestamp_key=timestamp_key,
        event_code_only="event_type" not in event and "event_code" in event,
    )


@dataclass(frozen=True, slots=True)
class StreamStateUpdate:
    """STREAM_STATE_UPDATE (8). ``reason`` is a stop reason, given as int or name on the wire."""

    msg_type: ClassVar[MsgType] = MsgType.STREAM_STATE_UPDATE
    state: int
    reason: int | None = None
    timestamp_ms: int | None = None
    rtms_stream_id: str | None = None

    def to_wire(self) -> JsonObject:
        return _drop_none(
            {
                "msg_type": int(self.msg_type),
                "rtms_stream_id": self.rtms_stream_id,
                "state": int(self.state),
                "reason": None if self.reason is None else int(self.reason),
                "timestamp": self.timestamp_ms,
            }
        )


def _parse_stream_state(obj: JsonObject, where: str) -> StreamStateUpdate:
    return StreamStateUpdate(
        state=_req_int(obj, "state", where),
        reason=parse_stop_reason(obj.get("reason", obj.get("stop_reason"))),
        timestamp_ms=_opt_int(obj, "timestamp", where),
        rtms_stream_id=_opt_str(obj, "rtms_stream_id"),
    )


@dataclass(frozen=True, slots=True)
class SessionStateUpdate:
    """SESSION_STATE_UPDATE (9): started, paused, resumed, stopped."""

    msg_type: ClassVar[MsgType] = MsgType.SESSION_STATE_UPDATE
    state: int
    stop_reason: int | None = None
    timestamp_ms: int | None = None
    rtms_session_id: str | None = None

    def to_wire(self) -> JsonObject:
        return _drop_none(
            {
                "msg_type": int(self.msg_type),
                "state": int(self.state),
                "stop_reason": None if self.stop_reason is None else int(self.stop_reason),
                "timestamp": self.timestamp_ms,
                "rtms_session_id": self.rtms_session_id,
            }
        )


def _session_id(obj: JsonObject) -> str | None:
    return _opt_str(obj, "rtms_session_id") or _opt_str(obj, "session_id")


def _parse_session_state(obj: JsonObject, where: str) -> SessionStateUpdate:
    return SessionStateUpdate(
        state=_req_int(obj, "state", where),
        stop_reason=parse_stop_reason(obj.get("stop_reason", obj.get("reason"))),
        timestamp_ms=_opt_int(obj, "timestamp", where),
        rtms_session_id=_session_id(obj),
    )


@dataclass(frozen=True, slots=True)
class SessionStateResponse:
    msg_type: ClassVar[MsgType] = MsgType.SESSION_STATE_RESP
    state: int
    rtms_session_id: str | None = None
    timestamp_ms: int | None = None

    def to_wire(self) -> JsonObject:
        return _drop_none(
            {
                "msg_type": int(self.msg_type),
                "rtms_session_id": self.rtms_session_id,
                "state": int(self.state),
                "timestamp": self.timestamp_ms,
            }
        )


@dataclass(frozen=True, slots=True)
class KeepAliveRequest:
    """KEEP_ALIVE_REQ (12), on both sockets. Either field may be absent (§5.11, §15)."""

    msg_type: ClassVar[MsgType] = MsgType.KEEP_ALIVE_REQ
    timestamp: EchoValue | None = None
    sequence: EchoValue | None = None

    def to_wire(self) -> JsonObject:
        return _drop_none(
            {"msg_type": int(self.msg_type), "sequence": self.sequence, "timestamp": self.timestamp}
        )

    def response(self) -> KeepAliveResponse:
        return KeepAliveResponse(timestamp=self.timestamp, sequence=self.sequence)


@dataclass(frozen=True, slots=True)
class StreamStateResponse:
    msg_type: ClassVar[MsgType] = MsgType.STREAM_STATE_RESP
    state: int
    rtms_stream_id: str | None = None
    timestamp_ms: int | None = None

    def to_wire(self) -> JsonObject:
        return _drop_none(
            {
                "msg_type": int(self.msg_type),
                "rtms_stream_id": self.rtms_stream_id,
                "state": int(self.state),
                "timestamp": self.timestamp_ms,
            }
        )


@dataclass(frozen=True, slots=True)
class StreamCloseResponse:
    msg_type: ClassVar[MsgType] = MsgType.STREAM_CLOSE_RESP
    status_code: int | None
    reason: str = ""
    rtms_stream_id: str | None = None
    timestamp_ms: int | None = None

    def to_wire(self) -> JsonObject:
        return _drop_none(
            {
                "msg_type": int(self.msg_type),
                "rtms_stream_id": self.rtms_stream_id,
                "status_code": self.status_code,
                "reason": self.reason,
                "timestamp": self.timestamp_ms,
            }
        )


@dataclass(frozen=True, slots=True)
class VideoSubscriptionResponse:
    msg_type: ClassVar[MsgType] = MsgType.VIDEO_SUBSCRIPTION_RESP
    user_id: str | None
    status_code: int | None
    reason: str = ""
    timestamp_ms: int | None = None

    def to_wire(self) -> JsonObject:
        return _drop_none(
            {
                "msg_type": int(self.msg_type),
                "user_id": None if self.user_id is None else _wire_id(self.user_id),
                "status_code": self.status_code,
                "reason": self.reason,
                "timestamp": self.timestamp_ms,
            }
        )


@dataclass(frozen=True, slots=True)
class MetadataMessage:
    """META_DATA_* (23-27): undocumented payloads, kept verbatim and ignored by the client."""

    type_code: int
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_wire(self) -> JsonObject:
        return {**self.fields, "msg_type": self.type_code}


@dataclass(frozen=True, slots=True)
class UnknownMessage:
    """A ``msg_type`` this codec does not know: logged by the caller and ignored (§3)."""

    type_code: int
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_wire(self) -> JsonObject:
        return {**self.fields, "msg_type": self.type_code}


Message = (
    SignalingHandshakeRequest
    | SignalingHandshakeResponse
    | DataHandshakeRequest
    | DataHandshakeResponse
    | EventSubscription
    | EventUpdate
    | ClientReadyAck
    | StreamStateUpdate
    | SessionStateUpdate
    | SessionStateRequest
    | SessionStateResponse
    | KeepAliveRequest
    | KeepAliveResponse
    | MediaAudio
    | MediaVideo
    | MediaShare
    | MediaTranscript
    | MediaChat
    | StreamStateRequest
    | StreamStateResponse
    | StreamCloseRequest
    | StreamCloseResponse
    | VideoSubscriptionRequest
    | VideoSubscriptionResponse
    | MetadataMessage
    | UnknownMessage
)


# --- codec -----------------------------------------------------------------------------------


def encode(msg: Message) -> str:
    """Compact JSON text with integer enums, ready for a WebSocket text frame."""
    return json.dumps(msg.to_wire(), separators=(",", ":"), ensure_ascii=False)


def load_object(data: str | bytes | bytearray) -> JsonObject:
    """Parse one frame (text or binary) into a JSON object with an integer ``msg_type``.

    A binary frame that is not JSON is what RTMS V2 sends (Protobuf, §16): it raises
    ``UnsupportedProtocolVersion`` (a ``RemoteProtocolError``) so that it is named as such.
    """
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        if isinstance(data, bytes | bytearray):
            raise UnsupportedProtocolVersion(
                "binary frame is not JSON (an RTMS V2 Protobuf frame?)", explicit=False
            ) from exc
        raise RemoteProtocolError("frame is not valid JSON") from exc
    if not isinstance(obj, dict):
        raise RemoteProtocolError(f"frame is JSON {type(obj).__name__}, expected an object")
    if type(obj.get("msg_type")) is not int:
        raise RemoteProtocolError("frame field 'msg_type' is missing or not an integer")
    return obj


def _simple(
    cls: Callable[..., Message], *spec: tuple[str, str]
) -> Callable[[JsonObject, str], Message]:
    """A parser for flat messages: ``spec`` pairs a wire key with its kind and constructor arg."""

    def parse(obj: JsonObject, where: str) -> Message:
        values: dict[str, Any] = {}
        for key, kind in spec:
            name = {"timestamp": "timestamp_ms"}.get(key, key)
            if kind == "int":
                values[name] = _req_int(obj, key, where)
            elif kind == "opt_int":
                values[name] = _opt_int(obj, key, where)
            elif kind == "id":
                values[name] = _opt_id(obj, key, where)
            elif kind == "str":
                values[name] = _opt_str(obj, key) or ""
            else:
                values[name] = _opt_str(obj, key)
        return cls(**values)

    return parse


def _keep_alive(cls: type[KeepAliveRequest] | type[KeepAliveResponse]) -> Callable[..., Message]:
    def parse(obj: JsonObject, where: str) -> Message:
        return cls(timestamp=_opt_echo(obj, "timestamp"), sequence=_opt_echo(obj, "sequence"))

    return parse


def _parse_video_subscription(obj: JsonObject, where: str) -> VideoSubscriptionRequest:
    user_id = _opt_id(obj, "user_id", where)
    if user_id is None:
        raise _fail(where, "user_id", "is missing")
    subscribe = _opt_bool(obj, "subscribe", where)
    return VideoSubscriptionRequest(
        user_id, subscribe is not False, _opt_int(obj, "timestamp", where)
    )


def _parse_session_response(obj: JsonObject, where: str) -> SessionStateResponse:
    return SessionStateResponse(
        state=_req_int(obj, "state", where),
        rtms_session_id=_session_id(obj),
        timestamp_ms=_opt_int(obj, "timestamp", where),
    )


def _parse_session_request(obj: JsonObject, where: str) -> SessionStateRequest:
    return SessionStateRequest(_session_id(obj))


_PARSERS: Final[Mapping[int, Callable[[JsonObject, str], Message]]] = {
    MsgType.SIGNALING_HAND_SHAKE_REQ: _parse_signaling_request,
    MsgType.SIGNALING_HAND_SHAKE_RESP: _parse_signaling_response,
    MsgType.DATA_HAND_SHAKE_REQ: _parse_data_request,
    MsgType.DATA_HAND_SHAKE_RESP: _parse_data_response,
    MsgType.EVENT_SUBSCRIPTION: _parse_subscription,
    MsgType.EVENT_UPDATE: _parse_event,
    MsgType.CLIENT_READY_ACK: _simple(ClientReadyAck, ("rtms_stream_id", "opt_str")),
    MsgType.STREAM_STATE_UPDATE: _parse_stream_state,
    MsgType.SESSION_STATE_UPDATE: _parse_session_state,
    MsgType.SESSION_STATE_REQ: _parse_session_request,
    MsgType.SESSION_STATE_RESP: _parse_session_response,
    MsgType.KEEP_ALIVE_REQ: _keep_alive(KeepAliveRequest),
    MsgType.KEEP_ALIVE_RESP: _keep_alive(KeepAliveResponse),
    MsgType.MEDIA_DATA_AUDIO: _binary_parser(MediaAudio),
    MsgType.MEDIA_DATA_VIDEO: _binary_parser(MediaVideo),
    MsgType.MEDIA_DATA_SHARE: _binary_parser(MediaShare),
    MsgType.MEDIA_DATA_TRANSCRIPT: _parse_transcript,
    MsgType.MEDIA_DATA_CHAT: _parse_chat,
    MsgType.STREAM_STATE_REQ: _simple(StreamStateRequest, ("rtms_stream_id", "opt_str")),
    MsgType.STREAM_STATE_RESP: _simple(
        StreamStateResponse,
        ("state", "int"),
        ("rtms_stream_id", "opt_str"),
        ("timestamp", "opt_int"),
    ),
    MsgType.STREAM_CLOSE_REQ: _simple(StreamCloseRequest, ("rtms_stream_id", "opt_str")),
    MsgType.STREAM_CLOSE_RESP: _simple(
        StreamCloseResponse,
        ("status_code", "opt_int"),
        ("reason", "str"),
        ("rtms_stream_id", "opt_str"),
        ("timestamp", "opt_int"),
    ),
    MsgType.VIDEO_SUBSCRIPTION_REQ: _parse_video_subscription,
    MsgType.VIDEO_SUBSCRIPTION_RESP: _simple(
        VideoSubscriptionResponse,
        ("user_id", "id"),
        ("status_code", "opt_int"),
        ("reason", "str"),
        ("timestamp", "opt_int"),
    ),
}

_METADATA_TYPES: Final = frozenset(range(MsgType.META_DATA_AUDIO, MsgType.META_DATA_CHAT + 1))


def decode_object(obj: JsonObject) -> Message:
    """Turn a parsed frame (see ``load_object``) into its message value."""
    type_code: int = obj["msg_type"]
    parser = _PARSERS.get(type_code)
    if parser is None:
        fields = {k: v for k, v in obj.items() if k != "msg_type"}
        if type_code in _METADATA_TYPES:
            return MetadataMessage(type_code, fields)
        return UnknownMessage(type_code, fields)
    return parser(obj, str(type_code))


def decode(data: str | bytes | bytearray) -> Message:
    """Decode one text or binary frame. Raises only ``RemoteProtocolError``."""
    return decode_object(load_object(data))


__all__ = [
    "INSTANCE_KEYS",
    "MEDIA_KEYS",
    "PROTOCOL_VERSION",
    "AudioParams",
    "Channel",
    "ChatParams",
    "ClientReadyAck",
    "ContentType",
    "DataHandshakeRequest",
    "DataHandshakeResponse",
    "DataOption",
    "DeskshareParams",
    "EchoValue",
    "EventSubscription",
    "EventType",
    "EventUpdate",
    "KeepAliveRequest",
    "KeepAliveResponse",
    "LegacyStatusCode",
    "MediaAudio",
    "MediaChat",
    "MediaParams",
    "MediaResolution",
    "MediaShare",
    "MediaTranscript",
    "MediaType",
    "MediaVideo",
    "Message",
    "MetadataMessage",
    "MsgType",
    "Participant",
    "PayloadType",
    "Rejection",
    "SampleRate",
    "SessionState",
    "SessionStateRequest",
    "SessionStateResponse",
    "SessionStateUpdate",
    "SignalingHandshakeRequest",
    "SignalingHandshakeResponse",
    "StatusCode",
    "StopClass",
    "StopReason",
    "StreamCloseRequest",
    "StreamCloseResponse",
    "StreamState",
    "StreamStateRequest",
    "StreamStateResponse",
    "StreamStateUpdate",
    "TranscriptLanguage",
    "TranscriptParams",
    "UnknownMessage",
    "VideoParams",
    "VideoSubscriptionRequest",
    "VideoSubscriptionResponse",
    "ZccEventType",
    "binary_content",
    "classify_rejection",
    "classify_stop_reason",
    "decode",
    "decode_object",
    "encode",
    "event_name",
    "fast_audio_content",
    "is_success",
    "load_object",
    "parse_stop_reason",
    "sample_rate_hz",
    "stop_reason_name",
]
