"""Media data messages 14-18 (server to client): the per-packet hot path lives here."""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

import msgspec

from recorder.rtms._enums import MsgType
from recorder.rtms._wire_fields import (
    JsonObject,
    _drop_none,
    _fail,
    _opt_id,
    _opt_int,
    _opt_str,
    _req_int,
    _req_str,
    _wire_id,
)


@dataclass(frozen=True, slots=True)
class _BinaryMedia:
    """Shared shape of 14, 15 and 16; ``data`` is the base64-decoded payload."""

    msg_type: ClassVar[MsgType]
    timestamp_ms: int
    data: bytes
    user_id: str | None = None
    user_name: str | None = None
    channel_id: str | None = None
    #: Emitted by ``encode`` as ``length`` (§5.15, 2026-04).
    with_length: bool = True

    def to_wire(self) -> JsonObject:
        content = _drop_none(
            {
                "user_id": None if self.user_id is None else _wire_id(self.user_id),
                "user_name": self.user_name,
                "channel_id": self.channel_id,
                "data": binascii.b2a_base64(self.data, newline=False).decode("ascii"),
                "length": len(self.data) if self.with_length else None,
                "timestamp": self.timestamp_ms,
            }
        )
        return {"msg_type": int(self.msg_type), "content": content}


@dataclass(frozen=True, slots=True)
class MediaAudio(_BinaryMedia):
    """MEDIA_DATA_AUDIO (14)."""

    msg_type: ClassVar[MsgType] = MsgType.MEDIA_DATA_AUDIO


@dataclass(frozen=True, slots=True)
class MediaVideo(_BinaryMedia):
    """MEDIA_DATA_VIDEO (15): camera video, one JPG/PNG image or an H.264 chunk."""

    msg_type: ClassVar[MsgType] = MsgType.MEDIA_DATA_VIDEO


@dataclass(frozen=True, slots=True)
class MediaShare(_BinaryMedia):
    """MEDIA_DATA_SHARE (16): screen share ("deskshare"), never 15."""

    msg_type: ClassVar[MsgType] = MsgType.MEDIA_DATA_SHARE


def binary_content(
    content: JsonObject, where: str
) -> tuple[int, bytes, str | None, str | None, str | None]:
    """``(timestamp_ms, payload, user_id, user_name, channel_id)`` of a 14/15/16 ``content``.

    The audio hot path calls this directly: one base64 decode, a few dict reads, one tuple.
    """
    encoded = content.get("data")
    if not isinstance(encoded, str):
        raise _fail(where, "content.data", "must be a base64 string")
    try:
        payload = binascii.a2b_base64(encoded, strict_mode=True)
    except ValueError as exc:
        raise _fail(where, "content.data", "is not valid base64") from exc
    length = content.get("length")
    if length is not None and length != len(payload):
        raise _fail(where, "content.length", f"is {length!r} but data decodes to {len(payload)}")
    timestamp = content.get("timestamp")
    if type(timestamp) is not int:
        raise _fail(where, "content.timestamp", "must be an integer")
    user_id = content.get("user_id")
    if user_id is not None and type(user_id) is not str:
        user_id = _opt_id(content, "user_id", where + " content")
    channel_id = content.get("channel_id")
    if channel_id is not None and type(channel_id) is not str:
        channel_id = _opt_id(content, "channel_id", where + " content")
    user_name = content.get("user_name")
    return (
        timestamp,
        payload,
        user_id,
        user_name if type(user_name) is str else None,
        channel_id,
    )


#: A 64-bit integer: bounded so that the fast path never meets an integer the stdlib parser
#: would refuse (over 4300 digits) or treat differently.
_Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class _FastAudioContent(msgspec.Struct):
    data: bytes  # msgspec decodes the base64 itself (perf-baseline §5)
    timestamp: _Int64
    length: _Int64 | None = None
    user_id: str | _Int64 | None = None
    user_name: str | None = None
    channel_id: str | _Int64 | None = None


class _FastAudioFrame(msgspec.Struct):
    msg_type: Literal[14]
    content: _FastAudioContent


#: Bytes of a fast-path frame besides its base64 payload: the documented fields take ~150.
_MAX_ENVELOPE = 1024

_fast_audio_decoder: msgspec.json.Decoder[_FastAudioFrame] = msgspec.json.Decoder(_FastAudioFrame)


def fast_audio_content(
    data: str | bytes,
) -> tuple[int, bytes, str | None, str | None, str | None] | None:
    """``binary_content`` of a msg 14 frame in exactly the documented shape, in one pass.

    The documented fields, with their documented types, JSON in UTF-8. Fields it does not know
    are skipped (the tolerant path ignores them too), so one new Zoom field does not send every
    frame down the slower path. Anything else (another ``msg_type``, a missing or oddly typed
    documented field, malformed JSON or base64, a ``length`` that does not match) returns None,
    and the tolerant decoder (``load_object`` and ``binary_content``) decides, so results and
    errors are those of the tolerant path.
    """
    try:
        content = _fast_audio_decoder.decode(data).content
    except Exception:  # malformed or unusual: the tolerant decoder has the final word
        return None
    payload = content.data
    if len(data) - 4 * ((len(payload) + 2) // 3) > _MAX_ENVELOPE:
        # Skipped unknown fields are not parsed, so values the tolerant parser refuses (an
        # integer of thousands of digits, nesting past its recursion limit) would pass here.
        # Both need kilobytes: such a frame goes to the tolerant path, which decides.
        return None
    length = content.length
    if length is not None and length != len(payload):
        return None
    user_id = content.user_id
    channel_id = content.channel_id
    return (
        content.timestamp,
        payload,
        user_id if user_id is None or type(user_id) is str else str(user_id),
        content.user_name,
        channel_id if channel_id is None or type(channel_id) is str else str(channel_id),
    )


def _content(obj: JsonObject, where: str) -> JsonObject:
    content = obj.get("content")
    if not isinstance(content, dict):
        raise _fail(where, "content", "must be an object")
    return content


_BinaryClass = type[MediaAudio] | type[MediaVideo] | type[MediaShare]


def _binary_parser(
    cls: _BinaryClass,
) -> Callable[[JsonObject, str], MediaAudio | MediaVideo | MediaShare]:
    def parse(obj: JsonObject, where: str) -> MediaAudio | MediaVideo | MediaShare:
        timestamp, payload, user_id, user_name, channel_id = binary_content(
            _content(obj, where), where
        )
        return cls(timestamp, payload, user_id, user_name, channel_id)

    return parse


@dataclass(frozen=True, slots=True)
class MediaTranscript:
    """MEDIA_DATA_TRANSCRIPT (17): ``data`` is plain UTF-8 text, not base64."""

    msg_type: ClassVar[MsgType] = MsgType.MEDIA_DATA_TRANSCRIPT
    timestamp_ms: int
    text: str
    user_id: str | None = None
    user_name: str | None = None
    channel_id: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    language: int | None = None
    attribute: int | None = None

    def to_wire(self) -> JsonObject:
        content = _drop_none(
            {
                "user_id": None if self.user_id is None else _wire_id(self.user_id),
                "user_name": self.user_name,
                "channel_id": self.channel_id,
                "start_time": self.start_ms,
                "end_time": self.end_ms,
                "timestamp": self.timestamp_ms,
                "language": self.language,
                "attribute": self.attribute,
                "data": self.text,
            }
        )
        return {"msg_type": int(self.msg_type), "content": content}


def _parse_transcript(obj: JsonObject, where: str) -> MediaTranscript:
    content = _content(obj, where)
    inner = where + " content"
    return MediaTranscript(
        timestamp_ms=_req_int(content, "timestamp", inner),
        text=_req_str(content, "data", inner),
        user_id=_opt_id(content, "user_id", inner),
        user_name=_opt_str(content, "user_name"),
        channel_id=_opt_id(content, "channel_id", inner),
        start_ms=_opt_int(content, "start_time", inner),
        end_ms=_opt_int(content, "end_time", inner),
        language=_opt_int(content, "language", inner),
        attribute=_opt_int(content, "attribute", inner),
    )


@dataclass(frozen=True, slots=True)
class MediaChat:
    """MEDIA_DATA_CHAT (18): ``text`` is plain text or the 2026 JSON string, verbatim."""

    msg_type: ClassVar[MsgType] = MsgType.MEDIA_DATA_CHAT
    timestamp_ms: int
    text: str
    user_id: str | None = None
    user_name: str | None = None

    def to_wire(self) -> JsonObject:
        content = _drop_none(
            {
                "user_id": None if self.user_id is None else _wire_id(self.user_id),
                "user_name": self.user_name,
                "timestamp": self.timestamp_ms,
                "data": self.text,
            }
        )
        return {"msg_type": int(self.msg_type), "content": content}


def _chat_sender(text: str) -> tuple[str | None, str | None]:
    """The 2026 JSON chat form names the sender inside ``data`` (§5.15)."""
    if not text.startswith("{"):
        return None, None
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return None, None
    sender = parsed.get("sender") if isinstance(parsed, dict) else None
    if not isinstance(sender, dict):
        return None, None
    user_id = sender.get("user_id")
    user_name = sender.get("user_name")
    return (
        str(user_id) if isinstance(user_id, str | int) and not isinstance(user_id, bool) else None,
        user_name if isinstance(user_name, str) else None,
    )


def _parse_chat(obj: JsonObject, where: str) -> MediaChat:
    content = _content(obj, where)
    inner = where + " content"
    data = content.get("data")
    if isinstance(data, dict | list):
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    elif isinstance(data, str):
        text = data
    else:
        raise _fail(inner, "data", "must be text or a JSON string")
    user_id = _opt_id(content, "user_id", inner)
    user_name = _opt_str(content, "user_name")
    if user_id is None:
        user_id, sender_name = _chat_sender(text)
        user_name = user_name or sender_name
    return MediaChat(_req_int(content, "timestamp", inner), text, user_id, user_name)
