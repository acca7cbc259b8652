"""Handshake validation, as the RTMS server does it: pure functions from a raw frame to a verdict.

Rule 1: checks run in the order of rtms-protocol Appendix A: JSON, ``msg_type``,
``protocol_version == 1``, the product's id key, ``rtms_stream_id``, the signature (lowercase
hex), then (media only) the media type and params, all-versus-split and duplicates. The first
failing check decides the status; the profile turns it into the wire number of its table.

Rule 2: the raw JSON object is checked field by field here, because a status code names *which*
field is wrong; ``recorder.rtms.messages`` then parses the already-valid request.

No I/O, no trio: the server shell passes in what it knows (offered media, open connections).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

from recorder.rtms.messages import (
    AudioParams,
    ChatParams,
    ContentType,
    DeskshareParams,
    MediaParams,
    MediaType,
    MsgType,
    PayloadType,
    SampleRate,
    TranscriptParams,
    VideoParams,
)
from recorder.simulator.profiles import Status

#: Media names in bit order (rtms-protocol §6.1); ALL (32) is a separate flag.
MEDIA_BITS: Final[Mapping[str, int]] = {
    "audio": MediaType.AUDIO,
    "video": MediaType.VIDEO,
    "deskshare": MediaType.DESKSHARE,
    "transcript": MediaType.TRANSCRIPT,
    "chat": MediaType.CHAT,
}
_NOT_SUPPORTED: Final[Mapping[str, Status]] = {
    "audio": Status.AUDIO_NOT_SUPPORTED,
    "video": Status.VIDEO_NOT_SUPPORTED,
    "deskshare": Status.DESKSHARE_NOT_SUPPORTED,
    "transcript": Status.TRANSCRIPT_NOT_SUPPORTED,
    "chat": Status.CHAT_NOT_SUPPORTED,
}
_SIGNATURE_HEX: Final = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class Expected:
    """What a valid handshake for one engagement must carry."""

    id_key: str
    instance_id: str
    rtms_stream_id: str
    signature: str


def parse_frame(data: str | bytes) -> dict[str, Any] | None:
    """The JSON object in a text or binary frame (the SDK sends binary, §15), or None."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def _is_int(value: object) -> bool:
    return type(value) is int


def check_common(
    obj: dict[str, Any] | None,
    msg_type: MsgType,
    expected: Expected,
    *,
    check_signature: bool = True,
) -> Status:
    """Checks shared by msg 1 and msg 3, in Appendix A order. ``Status.OK`` when all pass."""
    if obj is None:
        return Status.INVALID_PAYLOAD
    if obj.get("msg_type") != msg_type or not _is_int(obj.get("msg_type")):
        return Status.INVALID_MESSAGE_TYPE
    if obj.get("protocol_version") != 1 or not _is_int(obj.get("protocol_version")):
        return Status.INVALID_PROTOCOL_VERSION
    sequence = obj.get("sequence")
    if sequence is not None and not _is_int(sequence):
        # The SDK sends a large clock-like integer (§15): "an integer" is all we ask.
        return Status.INVALID_PAYLOAD
    instance = obj.get(expected.id_key)
    if not isinstance(instance, str) or not instance:
        return Status.MISSING_INSTANCE_ID
    stream_id = obj.get("rtms_stream_id")
    if not isinstance(stream_id, str) or not stream_id:
        return Status.MISSING_STREAM_ID
    if instance != expected.instance_id or stream_id != expected.rtms_stream_id:
        return Status.UNKNOWN_STREAM
    if not check_signature:
        return Status.OK
    signature = obj.get("signature")
    if not isinstance(signature, str) or not signature:
        return Status.MISSING_SIGNATURE
    if len(signature) != 64 or not set(signature) <= _SIGNATURE_HEX:
        # Uppercase hex and base64 are refused: every implementation sends lowercase hex (§7.2).
        return Status.INVALID_SIGNATURE
    if not hmac.compare_digest(signature, expected.signature):
        return Status.INVALID_SIGNATURE
    return Status.OK


# --- media handshake -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MediaVerdict:
    status: Status
    #: The media names this socket carries (``audio``, ``transcript``...), when accepted.
    kinds: frozenset[str] = frozenset()
    #: True for a unified ``all`` socket (media_type 32).
    unified: bool = False
    #: The confirmed params for msg 4 (defaults filled in), when accepted.
    params: MediaParams | None = None


_AUDIO_DEFAULTS: Final = AudioParams()


def _int_field(sub: Mapping[str, Any], name: str, default: int) -> int | None:
    value = sub.get(name, int(default))
    return value if _is_int(value) else None


def confirm_audio(sub: object) -> tuple[Status, AudioParams | None]:
    """Validate audio ``media_params`` against the matrix of rtms-protocol §6.7."""
    if sub is None:
        return Status.OK, _AUDIO_DEFAULTS
    if not isinstance(sub, Mapping):
        return Status.INVALID_AUDIO_PARAMS, None
    content_type = _int_field(sub, "content_type", ContentType.RAW_AUDIO)
    rate = _int_field(sub, "sample_rate", SampleRate.SR_16K)
    channel = _int_field(sub, "channel", 1)
    codec = _int_field(sub, "codec", PayloadType.L16)
    data_opt = _int_field(sub, "data_opt", 1)
    send_rate = _int_field(sub, "send_rate", 20)
    if content_type not in (ContentType.RTP, ContentType.RAW_AUDIO):
        return Status.INVALID_AUDIO_CONTENT_TYPE, None
    if codec not in (PayloadType.L16, PayloadType.G711, PayloadType.G722, PayloadType.OPUS):
        return Status.INVALID_AUDIO_CODEC, None
    if rate not in (0, 1, 2, 3):
        return Status.INVALID_AUDIO_SAMPLE_RATE, None
    if channel not in (1, 2):
        return Status.INVALID_AUDIO_CHANNEL, None
    if data_opt not in (1, 2):
        return Status.INVALID_AUDIO_DATA_OPT, None
    if send_rate is None or send_rate < 20 or send_rate % 20:
        return Status.INVALID_AUDIO_SEND_RATE, None
    # The documented matrix: L16 (RAW only) any rate and layout; the codecs fix rate and layout.
    if codec == PayloadType.L16:
        if content_type != ContentType.RAW_AUDIO:
            return Status.INVALID_AUDIO_CONTENT_TYPE, None
        send_rate = min(send_rate, 1000)  # larger values are clamped, not refused (§5.3)
    else:
        required_rate = {
            PayloadType.OPUS: SampleRate.SR_48K,
            PayloadType.G711: SampleRate.SR_8K,
            PayloadType.G722: SampleRate.SR_16K,
        }[PayloadType(codec)]
        if rate != required_rate:
            return Status.INVALID_AUDIO_SAMPLE_RATE, None
        if channel == 2 and codec != PayloadType.OPUS:
            return Status.INVALID_AUDIO_CHANNEL, None
        if send_rate != 20:
            return Status.INVALID_AUDIO_SEND_RATE, None
    assert content_type is not None
    assert rate is not None
    assert channel is not None
    assert codec is not None
    assert data_opt is not None
    return Status.OK, AudioParams(
        content_type=content_type,
        sample_rate=rate,
        channel=channel,
        codec=codec,
        data_opt=data_opt,
        send_rate=send_rate,
    )


def confirm_video(name: str, sub: object) -> VideoParams | DeskshareParams | None:
    """Video / deskshare ``media_params`` (§5.3): raw video, JPG, PNG or H.264, 1..30 fps.
    Without a codec, or JPG/PNG above the low-fps limit, the server falls back to JPG
    (video: 5 fps, deskshare: 1 fps). The simulator streams only H.264 (``video.py``)."""
    if not isinstance(sub, dict):
        return None
    cls: type[VideoParams | DeskshareParams] = (
        DeskshareParams if name == "deskshare" else VideoParams
    )
    default = cls()
    fields = {}
    for key in ("content_type", "codec", "resolution", "fps"):
        value = sub.get(key, int(getattr(default, key)))
        if not _is_int(value):
            return None
        fields[key] = value
    if fields["content_type"] != ContentType.RAW_VIDEO or not 1 <= fields["fps"] <= 30:
        return None
    if fields["codec"] not in (PayloadType.JPG, PayloadType.PNG, PayloadType.H264):
        return None
    low_fps = 1 if name == "deskshare" else 5
    if fields["codec"] != PayloadType.H264 and fields["fps"] > low_fps:
        fields["codec"], fields["fps"] = PayloadType.JPG, low_fps
    if isinstance(default, VideoParams):
        data_opt = sub.get("data_opt", int(default.data_opt))
        if not _is_int(data_opt) or data_opt not in (3, 4):
            return None
        return VideoParams(data_opt=data_opt, **fields)
    return DeskshareParams(**fields)


def check_media(
    obj: dict[str, Any] | None,
    expected: Expected,
    *,
    url_kind: str,
    offered: Collection[str],
    open_kinds: Collection[str],
    unified_open: bool,
    check_signature: bool = True,
) -> MediaVerdict:
    """Validate DATA_HAND_SHAKE_REQ (3) on the media URL ``url_kind`` (``audio``... or ``all``).

    Args:
        offered: the media the scenario's app has scopes for.
        open_kinds: media names already carried by accepted, still-open media sockets.
        unified_open: an ``all`` socket is open.
    """
    status = check_common(
        obj, MsgType.DATA_HAND_SHAKE_REQ, expected, check_signature=check_signature
    )
    if status is not Status.OK:
        return MediaVerdict(status)
    assert obj is not None
    media_type = obj.get("media_type")
    if media_type is None:
        return MediaVerdict(Status.MISSING_MEDIA_TYPE)
    if not _is_int(media_type) or media_type <= 0:
        return MediaVerdict(Status.INVALID_MEDIA_TYPE)
    if media_type >= 64 or (media_type & MediaType.ALL and media_type != MediaType.ALL):
        # ALL is its own flag: 63 is not "all" (§13.4).
        return MediaVerdict(Status.MEDIA_TYPE_INVALID_VALUE)
    unified = media_type == MediaType.ALL
    if unified:
        kinds = frozenset(offered) & frozenset(MEDIA_BITS)
    else:
        kinds = frozenset(name for name, bit in MEDIA_BITS.items() if media_type & bit)
        for name in sorted(kinds, key=lambda n: MEDIA_BITS[n]):
            if name not in offered:
                return MediaVerdict(_NOT_SUPPORTED[name])
        if url_kind != "all" and kinds != {url_kind}:
            # A per-type URL carries its own media only.
            return MediaVerdict(Status.INVALID_MEDIA_TYPE)
    if (unified and open_kinds) or (not unified and unified_open):
        return MediaVerdict(Status.ALL_CONNECTION_EXISTS)
    if unified_open or kinds & frozenset(open_kinds):
        return MediaVerdict(Status.DUPLICATE_MEDIA_CONNECTION)
    raw_params = obj.get("media_params")
    if raw_params is not None and not isinstance(raw_params, dict):
        return MediaVerdict(Status.INVALID_MEDIA_PARAMS)
    params = raw_params or {}
    audio: AudioParams | None = None
    if "audio" in kinds:
        audio_status, audio = confirm_audio(params.get("audio"))
        if audio_status is not Status.OK:
            return MediaVerdict(audio_status)
    transcript: TranscriptParams | None = None
    if "transcript" in kinds:
        sub = params.get("transcript", {})
        if (
            not isinstance(sub, dict)
            or sub.get("content_type", ContentType.TEXT) != ContentType.TEXT
        ):
            return MediaVerdict(Status.INVALID_TRANSCRIPT_PARAMS)
        language = sub.get("src_language", sub.get("language", 9))
        if not _is_int(language):
            return MediaVerdict(Status.INVALID_TRANSCRIPT_PARAMS)
        enable_lid = sub.get("enable_lid", True)
        transcript = TranscriptParams(src_language=language, enable_lid=bool(enable_lid))
    video: VideoParams | None = None
    deskshare: DeskshareParams | None = None
    for name in ("video", "deskshare"):
        if name in kinds:
            confirmed = confirm_video(name, params.get(name, {}))
            if confirmed is None:
                return MediaVerdict(Status.INVALID_MEDIA_PARAMS)
            if isinstance(confirmed, DeskshareParams):
                deskshare = confirmed
            else:
                video = confirmed
    chat: ChatParams | None = None
    if "chat" in kinds:
        sub = params.get("chat", {})
        if (
            not isinstance(sub, dict)
            or sub.get("content_type", ContentType.TEXT) != ContentType.TEXT
        ):
            return MediaVerdict(Status.INVALID_CHAT_PARAMS)
        chat = ChatParams()
    return MediaVerdict(
        Status.OK,
        kinds=kinds,
        unified=unified,
        params=MediaParams(
            audio=audio, transcript=transcript, chat=chat, video=video, deskshare=deskshare
        ),
    )
