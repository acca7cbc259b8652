"""Client-to-server RTMS messages (what the recorder sends; the simulator decodes them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from recorder.rtms._enums import INSTANCE_KEYS, PROTOCOL_VERSION, MsgType
from recorder.rtms._wire_fields import (
    EchoValue,
    JsonObject,
    MediaParams,
    _drop_none,
    _fail,
    _opt_bool,
    _opt_int,
    _opt_object,
    _opt_str,
    _req_int,
    _req_str,
    _wire_id,
)

# --- client -> server ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignalingHandshakeRequest:
    """SIGNALING_HAND_SHAKE_REQ (1)."""

    msg_type: ClassVar[MsgType] = MsgType.SIGNALING_HAND_SHAKE_REQ
    rtms_stream_id: str
    signature: str
    instance_id: str
    #: ``meeting_uuid``, ``webinar_uuid``, ``session_id`` or ``engagement_id`` (§14.1).
    instance_key: str = "meeting_uuid"
    sequence: int | None = 1
    protocol_version: int | None = PROTOCOL_VERSION
    #: None = omitted (the server default is true, §5.1).
    buffer_data: bool | None = True
    client_agent: str | None = None

    def to_wire(self) -> JsonObject:
        return _drop_none(
            {
                "msg_type": int(self.msg_type),
                "protocol_version": self.protocol_version,
                "sequence": self.sequence,
                self.instance_key: self.instance_id,
                "rtms_stream_id": self.rtms_stream_id,
                "signature": self.signature,
                "buffer_data": self.buffer_data,
                "rtms_client_agent": self.client_agent,
            }
        )


def _instance(obj: JsonObject, where: str) -> tuple[str, str]:
    for key in INSTANCE_KEYS:
        value = obj.get(key)
        if isinstance(value, str):
            return key, value
    raise _fail(where, "meeting_uuid", "(or webinar_uuid/session_id/engagement_id) is missing")


def _parse_signaling_request(obj: JsonObject, where: str) -> SignalingHandshakeRequest:
    key, instance_id = _instance(obj, where)
    return SignalingHandshakeRequest(
        rtms_stream_id=_req_str(obj, "rtms_stream_id", where),
        signature=_req_str(obj, "signature", where),
        instance_id=instance_id,
        instance_key=key,
        sequence=_opt_int(obj, "sequence", where),
        protocol_version=_opt_int(obj, "protocol_version", where),
        buffer_data=_opt_bool(obj, "buffer_data", where),
        client_agent=_opt_str(obj, "rtms_client_agent"),
    )


@dataclass(frozen=True, slots=True)
class DataHandshakeRequest:
    """DATA_HAND_SHAKE_REQ (3), sent on each media socket with the same signature."""

    msg_type: ClassVar[MsgType] = MsgType.DATA_HAND_SHAKE_REQ
    rtms_stream_id: str
    signature: str
    instance_id: str
    media_type: int
    instance_key: str = "meeting_uuid"
    media_params: MediaParams | None = None
    payload_encryption: bool | None = False
    sequence: int | None = 1
    protocol_version: int | None = PROTOCOL_VERSION

    def to_wire(self) -> JsonObject:
        return _drop_none(
            {
                "msg_type": int(self.msg_type),
                "protocol_version": self.protocol_version,
                "sequence": self.sequence,
                self.instance_key: self.instance_id,
                "rtms_stream_id": self.rtms_stream_id,
                "signature": self.signature,
                "media_type": int(self.media_type),
                "payload_encryption": self.payload_encryption,
                "media_params": None if self.media_params is None else self.media_params.to_wire(),
            }
        )


def _parse_data_request(obj: JsonObject, where: str) -> DataHandshakeRequest:
    key, instance_id = _instance(obj, where)
    params = _opt_object(obj, "media_params", where)
    return DataHandshakeRequest(
        rtms_stream_id=_req_str(obj, "rtms_stream_id", where),
        signature=_req_str(obj, "signature", where),
        instance_id=instance_id,
        instance_key=key,
        media_type=_req_int(obj, "media_type", where),
        media_params=None if params is None else MediaParams.from_wire(params, where),
        payload_encryption=_opt_bool(obj, "payload_encryption", where),
        sequence=_opt_int(obj, "sequence", where),
        protocol_version=_opt_int(obj, "protocol_version", where),
    )


@dataclass(frozen=True, slots=True)
class EventSubscription:
    """EVENT_SUBSCRIPTION (5): ``(event_type, subscribe)`` pairs, documented object form."""

    msg_type: ClassVar[MsgType] = MsgType.EVENT_SUBSCRIPTION
    events: tuple[tuple[int, bool], ...]
    rtms_stream_id: str | None = None

    def to_wire(self) -> JsonObject:
        return _drop_none(
            {
                "msg_type": int(self.msg_type),
                "rtms_stream_id": self.rtms_stream_id,
                "events": [{"event_type": int(t), "subscribe": s} for t, s in self.events],
            }
        )


def _parse_subscription(obj: JsonObject, where: str) -> EventSubscription:
    raw = obj.get("events")
    if not isinstance(raw, list):
        raise _fail(where, "events", "must be a list")
    pairs: list[tuple[int, bool]] = []
    for item in raw:
        # The ZCC sample sends a plain list of ints (§5.6); accept it as "subscribe".
        if type(item) is int:
            pairs.append((item, True))
        elif isinstance(item, dict):
            subscribe = _opt_bool(item, "subscribe", where)
            pairs.append((_req_int(item, "event_type", where), subscribe is not False))
        else:
            raise _fail(where, "events", "items must be objects or integers")
    return EventSubscription(tuple(pairs), _opt_str(obj, "rtms_stream_id"))


@dataclass(frozen=True, slots=True)
class ClientReadyAck:
    """CLIENT_READY_ACK (7), on the signaling socket after each successful media handshake."""

    msg_type: ClassVar[MsgType] = MsgType.CLIENT_READY_ACK
    rtms_stream_id: str | None = None

    def to_wire(self) -> JsonObject:
        return _drop_none({"msg_type": int(self.msg_type), "rtms_stream_id": self.rtms_stream_id})


@dataclass(frozen=True, slots=True)
class SessionStateRequest:
    msg_type: ClassVar[MsgType] = MsgType.SESSION_STATE_REQ
    rtms_session_id: str | None = None

    def to_wire(self) -> JsonObject:
        return _drop_none({"msg_type": int(self.msg_type), "rtms_session_id": self.rtms_session_id})


@dataclass(frozen=True, slots=True)
class KeepAliveResponse:
    """KEEP_ALIVE_RESP (13): echoes exactly what the request carried, omitting what it lacked."""

    msg_type: ClassVar[MsgType] = MsgType.KEEP_ALIVE_RESP
    timestamp: EchoValue | None = None
    sequence: EchoValue | None = None

    def to_wire(self) -> JsonObject:
        return _drop_none(
            {"msg_type": int(self.msg_type), "sequence": self.sequence, "timestamp": self.timestamp}
        )


@dataclass(frozen=True, slots=True)
class StreamStateRequest:
    msg_type: ClassVar[MsgType] = MsgType.STREAM_STATE_REQ
    rtms_stream_id: str | None = None

    def to_wire(self) -> JsonObject:
        return _drop_none({"msg_type": int(self.msg_type), "rtms_stream_id": self.rtms_stream_id})


@dataclass(frozen=True, slots=True)
class StreamCloseRequest:
    """STREAM_CLOSE_REQ (21): ask RTMS to end the stream (then stop reason 20)."""

    msg_type: ClassVar[MsgType] = MsgType.STREAM_CLOSE_REQ
    rtms_stream_id: str | None = None

    def to_wire(self) -> JsonObject:
        return _drop_none({"msg_type": int(self.msg_type), "rtms_stream_id": self.rtms_stream_id})


@dataclass(frozen=True, slots=True)
class VideoSubscriptionRequest:
    msg_type: ClassVar[MsgType] = MsgType.VIDEO_SUBSCRIPTION_REQ
    user_id: str
    subscribe: bool = True
    timestamp_ms: int | None = None

    def to_wire(self) -> JsonObject:
        return _drop_none(
            {
                "msg_type": int(self.msg_type),
                "user_id": _wire_id(self.user_id),
                "subscribe": self.subscribe,
                "timestamp": self.timestamp_ms,
            }
        )
