"""Server profiles: which status table, which timers and which quirks the simulator follows.

Rule: every difference between "the 2026 docs", "the 2025 docs" and "Zoom's old mock server"
lives here as data (rtms-protocol §6.14, §9.1, §11/§13.28). The server asks the profile; it never
branches on a profile's name.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final

from recorder.errors import ConfigError


class Status(enum.Enum):
    """What went wrong, independent of any table. ``Profile.code()`` gives the wire number."""

    OK = "ok"
    INVALID_PAYLOAD = "invalid_payload"
    INVALID_MESSAGE_TYPE = "invalid_message_type"
    INVALID_PROTOCOL_VERSION = "invalid_protocol_version"
    MISSING_INSTANCE_ID = "missing_instance_id"
    MISSING_STREAM_ID = "missing_stream_id"
    UNKNOWN_STREAM = "unknown_stream"
    MISSING_SIGNATURE = "missing_signature"
    INVALID_SIGNATURE = "invalid_signature"
    DUPLICATE_SIGNAL_REQUEST = "duplicate_signal_request"
    MISSING_MEDIA_TYPE = "missing_media_type"
    INVALID_MEDIA_TYPE = "invalid_media_type"
    MEDIA_TYPE_INVALID_VALUE = "media_type_invalid_value"
    AUDIO_NOT_SUPPORTED = "audio_not_supported"
    VIDEO_NOT_SUPPORTED = "video_not_supported"
    DESKSHARE_NOT_SUPPORTED = "deskshare_not_supported"
    TRANSCRIPT_NOT_SUPPORTED = "transcript_not_supported"
    CHAT_NOT_SUPPORTED = "chat_not_supported"
    ALL_CONNECTION_EXISTS = "all_connection_exists"
    DUPLICATE_MEDIA_CONNECTION = "duplicate_media_connection"
    INVALID_MEDIA_PARAMS = "invalid_media_params"
    INVALID_AUDIO_PARAMS = "invalid_audio_params"
    INVALID_AUDIO_CONTENT_TYPE = "invalid_audio_content_type"
    INVALID_AUDIO_SAMPLE_RATE = "invalid_audio_sample_rate"
    INVALID_AUDIO_CHANNEL = "invalid_audio_channel"
    INVALID_AUDIO_CODEC = "invalid_audio_codec"
    INVALID_AUDIO_DATA_OPT = "invalid_audio_data_opt"
    INVALID_AUDIO_SEND_RATE = "invalid_audio_send_rate"
    INVALID_TRANSCRIPT_PARAMS = "invalid_transcript_params"
    INVALID_CHAT_PARAMS = "invalid_chat_params"
    INVALID_CLIENT_READY_ACK = "invalid_client_ready_ack"
    INVALID_EVENTS = "invalid_events"
    INVALID_EVENT_TYPE = "invalid_event_type"
    DUPLICATE_VIDEO_SUBSCRIPTION = "duplicate_video_subscription"
    #: A server-side failure that clears on retry (fault injection).
    INTERNAL_EXCEPTION = "internal_exception"


#: Table A, the 2026 docs (rtms-protocol §6.14 A). Protocol version and missing-field problems
#: are INVALID_PAYLOAD there; wrong ids are INVALID_RTMS_STREAM_ID (Appendix A's order).
TABLE_A: Final[Mapping[Status, tuple[int, str]]] = {
    Status.OK: (0, ""),
    Status.INVALID_MESSAGE_TYPE: (1, "invalid message type"),
    Status.UNKNOWN_STREAM: (2, "invalid rtms stream id"),
    Status.MISSING_STREAM_ID: (2, "invalid rtms stream id"),
    Status.INVALID_SIGNATURE: (3, "invalid signature"),
    Status.MISSING_SIGNATURE: (3, "invalid signature"),
    Status.INVALID_PAYLOAD: (4, "invalid payload"),
    Status.INVALID_PROTOCOL_VERSION: (4, "invalid payload: protocol_version"),
    Status.MISSING_INSTANCE_ID: (4, "invalid payload: instance id"),
    Status.INVALID_EVENTS: (5, "invalid events"),
    Status.INVALID_EVENT_TYPE: (6, "invalid event type"),
    Status.MISSING_MEDIA_TYPE: (7, "invalid media type"),
    Status.INVALID_MEDIA_TYPE: (7, "invalid media type"),
    Status.DUPLICATE_SIGNAL_REQUEST: (8, "duplicate signal request"),
    Status.AUDIO_NOT_SUPPORTED: (9, "media type audio not support"),
    Status.VIDEO_NOT_SUPPORTED: (10, "media type video not support"),
    Status.DESKSHARE_NOT_SUPPORTED: (11, "media type deskshare not support"),
    Status.TRANSCRIPT_NOT_SUPPORTED: (12, "media type transcript not support"),
    Status.CHAT_NOT_SUPPORTED: (13, "media type chat not support"),
    Status.MEDIA_TYPE_INVALID_VALUE: (14, "media type invalid value"),
    Status.ALL_CONNECTION_EXISTS: (15, "media data all connection exist"),
    Status.DUPLICATE_MEDIA_CONNECTION: (16, "duplicate media data connection"),
    Status.INVALID_MEDIA_PARAMS: (17, "invalid media params"),
    Status.INVALID_AUDIO_PARAMS: (18, "invalid media audio params"),
    Status.INVALID_AUDIO_CONTENT_TYPE: (19, "invalid media audio content type"),
    Status.INVALID_AUDIO_SAMPLE_RATE: (20, "invalid media audio sample rate"),
    Status.INVALID_AUDIO_CHANNEL: (21, "invalid media audio channel"),
    Status.INVALID_AUDIO_CODEC: (22, "invalid media audio codec"),
    Status.INVALID_AUDIO_DATA_OPT: (23, "invalid media audio data opt"),
    Status.INVALID_AUDIO_SEND_RATE: (24, "invalid media audio send rate"),
    Status.INVALID_TRANSCRIPT_PARAMS: (36, "invalid media transcript params"),
    Status.INVALID_CHAT_PARAMS: (38, "invalid media chat params"),
    Status.INVALID_CLIENT_READY_ACK: (41, "invalid client ready ack"),
    Status.DUPLICATE_VIDEO_SUBSCRIPTION: (44, "duplicate video subscription"),
    Status.INTERNAL_EXCEPTION: (45, "internal exception"),
}

#: Table B, the 2025 docs and Zoom's mock (rtms-protocol §6.14 B). The legacy table itemises
#: audio parameter errors as 35-47 without published names per code, so they map to 33.
TABLE_B: Final[Mapping[Status, tuple[int, str]]] = {
    Status.OK: (0, ""),
    Status.INVALID_PAYLOAD: (3, "invalid json msg"),
    Status.INVALID_PROTOCOL_VERSION: (3, "invalid json msg: protocol_version"),
    Status.INVALID_MESSAGE_TYPE: (4, "invalid message type"),
    Status.MISSING_INSTANCE_ID: (7, "meeting uuid not exist"),
    Status.MISSING_STREAM_ID: (10, "rtms stream id not exist"),
    Status.MISSING_SIGNATURE: (14, "signature not exist"),
    Status.INVALID_SIGNATURE: (15, "invalid signature"),
    Status.UNKNOWN_STREAM: (16, "invalid meeting or stream id"),
    Status.DUPLICATE_SIGNAL_REQUEST: (17, "duplicate signal request"),
    Status.INVALID_EVENTS: (19, "events value not array"),
    Status.INVALID_EVENT_TYPE: (21, "event type value not uint"),
    Status.MISSING_MEDIA_TYPE: (22, "media type not exist"),
    Status.INVALID_MEDIA_TYPE: (23, "media type not uint"),
    Status.AUDIO_NOT_SUPPORTED: (24, "media type audio not support"),
    Status.VIDEO_NOT_SUPPORTED: (25, "media type video not support"),
    Status.DESKSHARE_NOT_SUPPORTED: (26, "media type deskshare not support"),
    Status.TRANSCRIPT_NOT_SUPPORTED: (27, "media type transcript not support"),
    Status.CHAT_NOT_SUPPORTED: (28, "media type chat not support"),
    Status.MEDIA_TYPE_INVALID_VALUE: (29, "media type invalid value"),
    Status.ALL_CONNECTION_EXISTS: (30, "media data all connection exist"),
    Status.DUPLICATE_MEDIA_CONNECTION: (31, "duplicate media data connection"),
    Status.INVALID_MEDIA_PARAMS: (33, "invalid media params"),
    Status.INVALID_AUDIO_PARAMS: (33, "invalid media params: audio"),
    Status.INVALID_AUDIO_CONTENT_TYPE: (33, "invalid media params: audio content type"),
    Status.INVALID_AUDIO_SAMPLE_RATE: (33, "invalid media params: audio sample rate"),
    Status.INVALID_AUDIO_CHANNEL: (33, "invalid media params: audio channel"),
    Status.INVALID_AUDIO_CODEC: (33, "invalid media params: audio codec"),
    Status.INVALID_AUDIO_DATA_OPT: (33, "invalid media params: audio data opt"),
    Status.INVALID_AUDIO_SEND_RATE: (33, "invalid media params: audio send rate"),
    Status.INVALID_TRANSCRIPT_PARAMS: (33, "invalid media params: transcript"),
    Status.INVALID_CHAT_PARAMS: (33, "invalid media params: chat"),
    Status.INVALID_CLIENT_READY_ACK: (3, "invalid json msg: client ready ack"),
    Status.DUPLICATE_VIDEO_SUBSCRIPTION: (3, "invalid json msg: video subscription"),
    Status.INTERNAL_EXCEPTION: (1, "connection timeout"),
}


class DuplicatePolicy(enum.StrEnum):
    #: A second signaling handshake for a live stream gets DUPLICATE_SIGNAL_REQUEST (§9.3).
    REJECT_NEW = "reject-new"
    #: The second handshake wins; the first connection is closed ("kicks out", S17).
    KICK_OLD = "kick-old"
    #: Zoom's mock: any number of signaling connections (§9.3).
    ALLOW = "allow"


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    table: Mapping[Status, tuple[int, str]]
    #: Seconds between KEEP_ALIVE_REQs on a socket.
    keepalive_interval_s: float = 10.0
    #: Consecutive unanswered KEEP_ALIVE_REQs that break a socket.
    keepalive_misses: int = 3
    #: KEEP_ALIVE_REQs are skipped on a media socket while media flows on it (2025 docs wording).
    keepalive_suppressed_while_streaming: bool = False
    #: Send keep-alives on media sockets too (the mock only pings signaling).
    keepalive_on_media: bool = True
    #: KEEP_ALIVE_REQ carries ``sequence`` (what the official SDK needs, §15) and ``timestamp``.
    keepalive_sequence: bool = True
    keepalive_timestamp: bool = True
    #: How long the server waits for a reconnect after a signaling / media interruption.
    signaling_grace_s: float = 60.0
    media_grace_s: float = 65.0
    duplicate_policy: DuplicatePolicy = DuplicatePolicy.REJECT_NEW
    #: Send DATA_HAND_SHAKE_RESP (the mock never does).
    sends_media_handshake_resp: bool = True
    #: Failures carry ``status_code`` (the mock sends only ``reason``).
    failure_status_code: bool = True
    #: Stop reasons as names (``STOP_BC_...``) instead of integers (the mock).
    string_stop_reasons: bool = False
    #: Validate the media handshake's signature (the mock authenticates no media socket).
    validate_media_signature: bool = True
    #: After missed keep-alives: interrupt and wait the grace (docs), or end the stream at once
    #: (Zoom's mock ``terminate()``s the socket, rtms-protocol §9.1).
    keepalive_failure_grace: bool = True
    #: Close code when the server ends a stream.
    stop_close_code: int = 1000

    def code(self, status: Status) -> tuple[int, str]:
        """The wire ``(status_code, reason)`` for ``status`` in this profile's table."""
        return self.table[status]

    def with_timers(
        self,
        *,
        keepalive_interval_s: float | None = None,
        keepalive_misses: int | None = None,
        signaling_grace_s: float | None = None,
        media_grace_s: float | None = None,
    ) -> Profile:
        """A copy with some timers changed (tests use small values or a MockClock)."""
        return replace(
            self,
            keepalive_interval_s=self.keepalive_interval_s
            if keepalive_interval_s is None
            else keepalive_interval_s,
            keepalive_misses=self.keepalive_misses
            if keepalive_misses is None
            else keepalive_misses,
            signaling_grace_s=self.signaling_grace_s
            if signaling_grace_s is None
            else signaling_grace_s,
            media_grace_s=self.media_grace_s if media_grace_s is None else media_grace_s,
        )


DOC_2026: Final = Profile(name="doc-2026", table=TABLE_A)
LEGACY_2025: Final = Profile(
    name="legacy-2025",
    table=TABLE_B,
    media_grace_s=30.0,
    keepalive_suppressed_while_streaming=True,
)
ZOOM_MOCK: Final = Profile(
    name="zoom-mock",
    table=TABLE_B,
    keepalive_interval_s=5.0,
    keepalive_on_media=False,
    keepalive_sequence=False,
    keepalive_timestamp=False,
    media_grace_s=30.0,
    duplicate_policy=DuplicatePolicy.ALLOW,
    sends_media_handshake_resp=False,
    failure_status_code=False,
    string_stop_reasons=True,
    validate_media_signature=False,
    keepalive_failure_grace=False,
)

PROFILES: Final[Mapping[str, Profile]] = {p.name: p for p in (DOC_2026, LEGACY_2025, ZOOM_MOCK)}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(
            f"unknown simulator profile {name!r}; choose from {sorted(PROFILES)}"
        ) from None
