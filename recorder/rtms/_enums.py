"""RTMS enumerations and their classification helpers (rtms-protocol.md §6).

Every value is an integer on the wire. Numbers follow zoom/rtms ``src/rtms.h`` (MESSAGE_TYPE and
friends) and the 2026 "Data type definitions" page. Import them from ``recorder.rtms.messages``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

PROTOCOL_VERSION: Final = 1

# --- enums (rtms-protocol §4, §6) -------------------------------------------------------------


class MsgType(enum.IntEnum):
    """RTMS_MESSAGE_TYPE, zoom/rtms ``src/rtms.h`` MESSAGE_TYPE."""

    UNDEFINED = 0
    SIGNALING_HAND_SHAKE_REQ = 1
    SIGNALING_HAND_SHAKE_RESP = 2
    DATA_HAND_SHAKE_REQ = 3
    DATA_HAND_SHAKE_RESP = 4
    EVENT_SUBSCRIPTION = 5
    EVENT_UPDATE = 6
    CLIENT_READY_ACK = 7
    STREAM_STATE_UPDATE = 8
    SESSION_STATE_UPDATE = 9
    SESSION_STATE_REQ = 10
    SESSION_STATE_RESP = 11
    KEEP_ALIVE_REQ = 12
    KEEP_ALIVE_RESP = 13
    MEDIA_DATA_AUDIO = 14
    MEDIA_DATA_VIDEO = 15
    MEDIA_DATA_SHARE = 16
    MEDIA_DATA_TRANSCRIPT = 17
    MEDIA_DATA_CHAT = 18
    STREAM_STATE_REQ = 19
    STREAM_STATE_RESP = 20
    STREAM_CLOSE_REQ = 21
    STREAM_CLOSE_RESP = 22
    META_DATA_AUDIO = 23
    META_DATA_VIDEO = 24
    META_DATA_SHARE = 25
    META_DATA_TRANSCRIPT = 26
    META_DATA_CHAT = 27
    VIDEO_SUBSCRIPTION_REQ = 28
    VIDEO_SUBSCRIPTION_RESP = 29


class MediaType(enum.IntFlag):
    """MEDIA_DATA_TYPE bitmask. ``ALL`` (32) is its own flag, not the OR of the others (§13.4)."""

    UNDEFINED = 0
    AUDIO = 1
    VIDEO = 2
    DESKSHARE = 4
    TRANSCRIPT = 8
    CHAT = 16
    ALL = 32


#: ``media_params`` / ``server_urls`` key for each single media flag.
MEDIA_KEYS: Final[Mapping[MediaType, str]] = {
    MediaType.AUDIO: "audio",
    MediaType.VIDEO: "video",
    MediaType.DESKSHARE: "deskshare",
    MediaType.TRANSCRIPT: "transcript",
    MediaType.CHAT: "chat",
    MediaType.ALL: "all",
}


class ContentType(enum.IntEnum):
    UNDEFINED = 0
    RTP = 1
    RAW_AUDIO = 2
    RAW_VIDEO = 3
    FILE_STREAM = 4
    TEXT = 5


class PayloadType(enum.IntEnum):
    """MEDIA_PAYLOAD_TYPE (``codec``)."""

    UNDEFINED = 0
    L16 = 1
    G711 = 2  #: A-law (PCMA) only
    G722 = 3
    OPUS = 4
    JPG = 5
    PNG = 6
    H264 = 7


class SampleRate(enum.IntEnum):
    """AUDIO_SAMPLE_RATE: an enum index on the wire, never Hz."""

    SR_8K = 0
    SR_16K = 1
    SR_32K = 2
    SR_48K = 3

    @property
    def hz(self) -> int:
        return _RATE_HZ[self]

    @classmethod
    def from_hz(cls, hz: int) -> SampleRate:
        for member, value in _RATE_HZ.items():
            if value == hz:
                return member
        raise ValueError(f"no RTMS sample-rate index for {hz} Hz")


_RATE_HZ: Final[Mapping[SampleRate, int]] = {
    SampleRate.SR_8K: 8000,
    SampleRate.SR_16K: 16000,
    SampleRate.SR_32K: 32000,
    SampleRate.SR_48K: 48000,
}


def sample_rate_hz(index: int) -> int | None:
    """Hz for a wire sample-rate index, or None when the index is unknown."""
    try:
        return SampleRate(index).hz
    except ValueError:
        return None


class Channel(enum.IntEnum):
    MONO = 1
    STEREO = 2


class DataOption(enum.IntEnum):
    UNDEFINED = 0
    AUDIO_MIXED_STREAM = 1
    AUDIO_MULTI_STREAMS = 2
    VIDEO_SINGLE_ACTIVE_STREAM = 3
    VIDEO_SINGLE_INDIVIDUAL_STREAM = 4
    VIDEO_MIXED_GALLERY_VIEW = 5


class MediaResolution(enum.IntEnum):
    SD = 1
    HD = 2
    FHD = 3
    QHD = 4


class SessionState(enum.IntEnum):
    INACTIVE = 0
    INITIALIZE = 1
    STARTED = 2
    PAUSED = 3
    RESUMED = 4
    STOPPED = 5


class StreamState(enum.IntEnum):
    INACTIVE = 0
    ACTIVE = 1
    INTERRUPTED = 2
    TERMINATING = 3
    TERMINATED = 4
    PAUSED = 5
    RESUMED = 6


class StopReason(enum.IntEnum):
    """RTMS_STOP_REASON (§6.10); names without the ``STOP_BC_`` prefix."""

    UNDEFINED = 0
    HOST_TRIGGERED = 1
    USER_TRIGGERED = 2
    USER_LEFT = 3
    USER_EJECTED = 4
    HOST_DISABLED_APP = 5
    MEETING_ENDED = 6
    STREAM_CANCELED = 7
    STREAM_REVOKED = 8
    ALL_APPS_DISABLED = 9
    INTERNAL_EXCEPTION = 10
    CONNECTION_TIMEOUT = 11
    INSTANCE_CONNECTION_INTERRUPTED = 12
    SIGNAL_CONNECTION_INTERRUPTED = 13
    DATA_CONNECTION_INTERRUPTED = 14
    SIGNAL_CONNECTION_CLOSED_ABNORMALLY = 15
    DATA_CONNECTION_CLOSED_ABNORMALLY = 16
    EXIT_SIGNAL = 17
    AUTHENTICATION_FAILURE = 18
    AWAIT_RECONNECTION_TIMEOUT = 19
    RECEIVER_REQUEST_CLOSE = 20
    CUSTOMER_DISCONNECTED = 21
    AGENT_DISCONNECTED = 22
    ADMIN_DISABLED_APP = 23
    KEEP_ALIVE_TIMEOUT = 24
    MANUAL_API_TRIGGERED = 25
    STREAMING_NOT_SUPPORTED = 26


#: Legacy spellings seen in older docs and Zoom's mock.
_STOP_REASON_ALIASES: Final[Mapping[str, StopReason]] = {
    "APP_DISABLED_BY_HOST": StopReason.HOST_DISABLED_APP,
    "MEETING_CONNECTION_INTERRUPTED": StopReason.INSTANCE_CONNECTION_INTERRUPTED,
}


class StopClass(enum.Enum):
    """What a stop reason means for the recorder (§9.2)."""

    #: The stream ended on purpose; finalise, no reconnect.
    NORMAL = "normal"
    #: 10-19, 24: the stream id is dead; a full restart (new ``rtms_started``) is needed.
    ABNORMAL = "abnormal"
    #: 8: the recorded assets must be deleted (unless on legal hold).
    REVOKED = "revoked"


_ABNORMAL_REASONS: Final = frozenset({*range(10, 20), 24})


def classify_stop_reason(reason: int | None) -> StopClass:
    if reason == StopReason.STREAM_REVOKED:
        return StopClass.REVOKED
    if reason is not None and reason in _ABNORMAL_REASONS:
        return StopClass.ABNORMAL
    return StopClass.NORMAL


def stop_reason_name(reason: int | None) -> str:
    if reason is None:
        return "UNKNOWN"
    try:
        return StopReason(reason).name
    except ValueError:
        return f"STOP_REASON_{reason}"


def parse_stop_reason(value: object) -> int | None:
    """An integer, a numeric string, or a name with or without ``STOP_BC_`` (the mock)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip().upper()
        if text.lstrip("-").isdigit():
            return int(text)
        text = text.removeprefix("STOP_BC_")
        if text in StopReason.__members__:
            return int(StopReason[text])
        alias = _STOP_REASON_ALIASES.get(text)
        return int(alias) if alias is not None else None
    return None


class EventType(enum.IntEnum):
    """RTMS_EVENT_TYPE for meetings, webinars and Video SDK sessions."""

    UNDEFINED = 0
    FIRST_PACKET_TIMESTAMP = 1
    ACTIVE_SPEAKER_CHANGE = 2
    PARTICIPANT_JOIN = 3
    PARTICIPANT_LEAVE = 4
    SHARING_START = 5
    SHARING_STOP = 6
    MEDIA_CONNECTION_INTERRUPTED = 7
    PARTICIPANT_VIDEO_ON = 8
    PARTICIPANT_VIDEO_OFF = 9
    CHAT_GROUP_CREATE = 10
    CHAT_GROUP_DELETE = 11
    CHAT_GROUP_MEMBERS_ADD = 12
    CHAT_GROUP_MEMBERS_DELETE = 13
    CHAT_GROUP_MEMBER_STATUS_UPDATE = 14


class ZccEventType(enum.IntEnum):
    """RTMS_ZCC_VOICE_EVENT_TYPE. 8 and 9 collide with EventType: pick the namespace by product."""

    UNDEFINED = 0
    CONSUMER_ANSWERED = 8
    CONSUMER_END = 9
    USER_ANSWERED = 10
    USER_END = 11
    USER_HOLD = 12
    USER_UNHOLD = 13
    MONITOR_STARTED = 14
    MONITOR_TRANSITIONED = 15
    MONITOR_ENDED = 16
    TAKEOVER_STARTED = 17
    TRANSFER_INITIATED = 18
    TRANSFER_CANCELED = 19
    TRANSFER_ACCEPTED = 20
    TRANSFER_COMPLETED = 21
    TRANSFER_REJECTED = 22
    TRANSFER_TIMEOUT = 23
    CONFERENCE_CANCELED = 24
    CONFERENCE_PARTICIPANT_CANCELED = 25
    CONFERENCE_PARTICIPANT_INVITED = 26
    CONFERENCE_PARTICIPANT_REJECTED = 27
    CONFERENCE_PARTICIPANT_TIMEOUT = 28
    CONFERENCE_PARTICIPANT_LEFT = 29


def event_name(event_type: int, *, contact_center: bool) -> str:
    namespace: type[enum.IntEnum] = ZccEventType if contact_center else EventType
    # FIRST_PACKET_TIMESTAMP and MEDIA_CONNECTION_INTERRUPTED are automatic in both products.
    if contact_center and event_type in (1, 7):
        namespace = EventType
    try:
        return namespace(event_type).name
    except ValueError:
        return f"EVENT_{event_type}"


class StatusCode(enum.IntEnum):
    """RTMS_STATUS_CODE, table A (2026 docs, §6.14)."""

    OK = 0
    INVALID_MESSAGE_TYPE = 1
    INVALID_RTMS_STREAM_ID = 2
    INVALID_SIGNATURE = 3
    INVALID_PAYLOAD = 4
    INVALID_EVENTS = 5
    INVALID_EVENT_TYPE = 6
    INVALID_MEDIA_TYPE = 7
    DUPLICATE_SIGNAL_REQUEST = 8
    MEDIA_TYPE_AUDIO_NOT_SUPPORT = 9
    MEDIA_TYPE_VIDEO_NOT_SUPPORT = 10
    MEDIA_TYPE_DESKSHARE_NOT_SUPPORT = 11
    MEDIA_TYPE_TRANSCRIPT_NOT_SUPPORT = 12
    MEDIA_TYPE_CHAT_NOT_SUPPORT = 13
    MEDIA_TYPE_INVALID_VALUE = 14
    MEDIA_DATA_ALL_CONNECTION_EXIST = 15
    DUPLICATE_MEDIA_DATA_CONNECTION = 16
    INVALID_MEDIA_PARAMS = 17
    INVALID_MEDIA_AUDIO_PARAMS = 18
    INVALID_MEDIA_AUDIO_CONTENT_TYPE = 19
    INVALID_MEDIA_AUDIO_SAMPLE_RATE = 20
    INVALID_MEDIA_AUDIO_CHANNEL = 21
    INVALID_MEDIA_AUDIO_CODEC = 22
    INVALID_MEDIA_AUDIO_DATA_OPT = 23
    INVALID_MEDIA_AUDIO_SEND_RATE = 24
    INVALID_MEDIA_VIDEO_PARAMS = 25
    INVALID_MEDIA_VIDEO_CONTENT_TYPE = 26
    INVALID_MEDIA_VIDEO_CODEC = 27
    INVALID_MEDIA_VIDEO_RESOLUTION = 28
    INVALID_MEDIA_VIDEO_DATA_OPT = 29
    INVALID_MEDIA_VIDEO_FPS = 30
    INVALID_MEDIA_DESKSHARE_PARAMS = 31
    INVALID_MEDIA_DESKSHARE_CONTENT_TYPE = 32
    INVALID_MEDIA_DESKSHARE_CODEC = 33
    INVALID_MEDIA_DESKSHARE_RESOLUTION = 34
    INVALID_MEDIA_DESKSHARE_FPS = 35
    INVALID_MEDIA_TRANSCRIPT_PARAMS = 36
    INVALID_MEDIA_TRANSCRIPT_CONTENT_TYPE = 37
    INVALID_MEDIA_CHAT_PARAMS = 38
    INVALID_MEDIA_CHAT_CONTENT_TYPE = 39
    INVALID_RTMS_SESSION_ID = 40
    INVALID_CLIENT_READY_ACK = 41
    INVALID_EVENT_SUBSCRIBE = 42
    INVALID_MEDIA_TRANSCRIPT_SOURCE_LANGUAGE = 43
    DUPLICATE_VIDEO_SUBSCRIPTION = 44
    INTERNAL_EXCEPTION = 45
    INVALID_MEDIA_TRANSCRIPT_TARGET_LANGUAGE = 46
    CHAT_SESSION_KEY_NOT_AVAILABLE = 47


class LegacyStatusCode(enum.IntEnum):
    """RTMS_STATUS_CODE, table B (2025 docs, Zoom's mock): the entries the recorder acts on."""

    OK = 0
    CONNECTION_TIMEOUT = 1
    INVALID_JSON_MSG_SIZE = 2
    INVALID_JSON_MSG = 3
    INVALID_MESSAGE_TYPE = 4
    MSG_TYPE_NOT_EXIST = 5
    MSG_TYPE_NOT_UINT = 6
    MEETING_UUID_NOT_EXIST = 7
    MEETING_UUID_NOT_STRING = 8
    MEETING_UUID_IS_EMPTY = 9
    RTMS_STREAM_ID_NOT_EXIST = 10
    RTMS_STREAM_ID_NOT_STRING = 11
    RTMS_STREAM_ID_IS_EMPTY = 12
    SESSION_NOT_FOUND = 13
    SIGNATURE_NOT_EXIST = 14
    INVALID_SIGNATURE = 15
    INVALID_MEETING_OR_STREAM_ID = 16
    DUPLICATE_SIGNAL_REQUEST = 17
    EVENTS_NOT_EXIST = 18
    EVENTS_VALUE_NOT_ARRAY = 19
    EVENT_TYPE_NOT_EXIST = 20
    EVENT_TYPE_VALUE_NOT_UINT = 21
    MEDIA_TYPE_NOT_EXIST = 22
    MEDIA_TYPE_NOT_UINT = 23
    MEDIA_TYPE_AUDIO_NOT_SUPPORT = 24
    MEDIA_TYPE_VIDEO_NOT_SUPPORT = 25
    MEDIA_TYPE_DESKSHARE_NOT_SUPPORT = 26
    MEDIA_TYPE_TRANSCRIPT_NOT_SUPPORT = 27
    MEDIA_TYPE_CHAT_NOT_SUPPORT = 28
    MEDIA_TYPE_INVALID_VALUE = 29
    MEDIA_DATA_ALL_CONNECTION_EXIST = 30
    DUPLICATE_MEDIA_DATA_CONNECTION = 31
    MEDIA_PARAMS_NOT_EXIST = 32
    INVALID_MEDIA_PARAMS = 33
    NO_MEDIA_TYPE_SPECIFIED = 34
    INVALID_AUDIO_DATA_BUFFER = 72
    INVALID_VIDEO_DATA_BUFFER = 73
    POST_FIRST_PACKET_FAILURE = 74
    RTMS_SESSION_NOT_FOUND = 75


class Rejection(enum.Enum):
    """Why a handshake was refused, decided from ``reason`` text first, then the code (§6.14).

    What each kind leads to (retry, drop an optional socket, end) is decided by ``_refusals``.
    """

    SIGNATURE = "signature"
    #: Authentication failed for another reason than the signature (credentials, app disabled).
    AUTH = "auth"
    DUPLICATE_SIGNAL = "duplicate_signal"
    DUPLICATE_MEDIA = "duplicate_media"
    ALL_CONNECTION_EXISTS = "all_connection_exists"
    #: The stream does not offer this media ("media type transcript not support"): permanent.
    UNSUPPORTED = "unsupported"
    #: Anything else (45 INTERNAL_EXCEPTION, legacy 1 CONNECTION_TIMEOUT, 13 SESSION_NOT_FOUND
    #: after a reconnect, ...): possibly transient.
    OTHER = "other"
    #: No V1 answer at all: a binary frame that is not JSON (an RTMS V2 server, or garbage).
    #: Never produced by ``classify_rejection``; the engine reports it to the refusal ledger.
    UNREADABLE = "unreadable"

    @property
    def final(self) -> bool:
        """Retrying with the same credentials cannot succeed."""
        return self in (Rejection.SIGNATURE, Rejection.AUTH)


def is_success(status_code: int | None) -> bool:
    """Only an explicit 0 is success; the mock sends failures without any ``status_code``."""
    return status_code == 0


def classify_rejection(status_code: int | None, reason: str, *, signaling: bool) -> Rejection:
    """Classify a refused handshake by reason text, then by code in either table.

    ``signaling`` selects which codes are plausible: table A 15/16 are media-connection codes
    while table B 15 is INVALID_SIGNATURE, so the code alone only decides within its socket kind.
    """
    text = reason.lower().replace("_", " ")
    if "signature" in text:
        return Rejection.SIGNATURE
    if "authenticat" in text or "unauthori" in text:
        return Rejection.AUTH
    if "duplicate signal" in text:
        return Rejection.DUPLICATE_SIGNAL
    if "duplicate media" in text:
        return Rejection.DUPLICATE_MEDIA
    if "all connection" in text:
        return Rejection.ALL_CONNECTION_EXISTS
    if "not support" in text:
        return Rejection.UNSUPPORTED
    if signaling:
        # Zoom's 2026 helper stops on 14, 15, 16; table A's 14-16 are media-only codes, so on
        # signaling 14 and 15 are the legacy SIGNATURE_NOT_EXIST and INVALID_SIGNATURE.
        if status_code in (
            StatusCode.INVALID_SIGNATURE,
            LegacyStatusCode.INVALID_SIGNATURE,
            LegacyStatusCode.SIGNATURE_NOT_EXIST,
        ):
            return Rejection.SIGNATURE
        if status_code in (
            StatusCode.DUPLICATE_SIGNAL_REQUEST,
            LegacyStatusCode.DUPLICATE_SIGNAL_REQUEST,
        ):
            return Rejection.DUPLICATE_SIGNAL
        return Rejection.OTHER
    if status_code in (
        StatusCode.DUPLICATE_MEDIA_DATA_CONNECTION,
        LegacyStatusCode.DUPLICATE_MEDIA_DATA_CONNECTION,
    ):
        return Rejection.DUPLICATE_MEDIA
    if status_code in (
        StatusCode.MEDIA_DATA_ALL_CONNECTION_EXIST,
        LegacyStatusCode.MEDIA_DATA_ALL_CONNECTION_EXIST,
    ):
        return Rejection.ALL_CONNECTION_EXISTS
    if status_code == StatusCode.INVALID_SIGNATURE:
        return Rejection.SIGNATURE
    return Rejection.OTHER


class TranscriptLanguage(enum.IntEnum):
    """RTMS_TRANSCRIPT_LANGUAGE (``src_language``, transcript ``language``)."""

    NONE = -1
    ARABIC = 0
    BENGALI = 1
    CANTONESE = 2
    CATALAN = 3
    CHINESE_SIMPLIFIED = 4
    CHINESE_TRADITIONAL = 5
    CZECH = 6
    DANISH = 7
    DUTCH = 8
    ENGLISH = 9
    ESTONIAN = 10
    FINNISH = 11
    FRENCH_CANADA = 12
    FRENCH_FRANCE = 13
    GERMAN = 14
    HEBREW = 15
    HINDI = 16
    HUNGARIAN = 17
    INDONESIAN = 18
    ITALIAN = 19
    JAPANESE = 20
    KOREAN = 21
    MALAY = 22
    PERSIAN = 23
    POLISH = 24
    PORTUGUESE = 25
    ROMANIAN = 26
    RUSSIAN = 27
    SPANISH = 28
    SWEDISH = 29
    TAGALOG = 30
    TAMIL = 31
    TELUGU = 32
    THAI = 33
    TURKISH = 34
    UKRAINIAN = 35
    VIETNAMESE = 36


#: Handshake keys naming the instance, in the order the SDK looks for them (§7.1).
INSTANCE_KEYS: Final = ("meeting_uuid", "webinar_uuid", "session_id", "engagement_id")
