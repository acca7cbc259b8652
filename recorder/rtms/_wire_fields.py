"""Field readers and media params shared by the RTMS message classes (see ``messages``).

Every reader raises ``RemoteProtocolError`` naming the message and the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from recorder.errors import RemoteProtocolError
from recorder.rtms._enums import (
    Channel,
    ContentType,
    DataOption,
    MediaResolution,
    PayloadType,
    SampleRate,
)

EchoValue = int | float | str

JsonObject = dict[str, Any]

_MEDIA_KIND_KEYS: Final = ("audio", "video", "deskshare", "transcript", "chat")


# --- field readers: every failure names the field -------------------------------------------


def _fail(where: str, key: str, problem: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"msg {where}: field {key!r} {problem}")


def _req_int(obj: JsonObject, key: str, where: str) -> int:
    value = obj.get(key)
    if type(value) is not int:
        if value is None:
            raise _fail(where, key, "is missing")
        raise _fail(where, key, f"must be an integer, got {type(value).__name__}")
    return value


def _opt_int(obj: JsonObject, key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not int:
        raise _fail(where, key, f"must be an integer, got {type(value).__name__}")
    return value


def _opt_bool(obj: JsonObject, key: str, where: str) -> bool | None:
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise _fail(where, key, f"must be a boolean, got {type(value).__name__}")


def _opt_str(obj: JsonObject, key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) else None


def _req_str(obj: JsonObject, key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        if value is None:
            raise _fail(where, key, "is missing")
        raise _fail(where, key, f"must be a string, got {type(value).__name__}")
    return value


def _opt_id(obj: JsonObject, key: str, where: str) -> str | None:
    """Ids are uint32 in meetings and strings in ZCC (§3): normalise to str."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if type(value) is int:
        return str(value)
    raise _fail(where, key, f"must be an integer or string id, got {type(value).__name__}")


def _opt_object(obj: JsonObject, key: str, where: str) -> JsonObject | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fail(where, key, f"must be an object, got {type(value).__name__}")
    return value


def _opt_echo(obj: JsonObject, key: str) -> EchoValue | None:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    return value


def _wire_id(value: str) -> int | str:
    """Meeting user ids go back out as integers, ZCC ids stay strings."""
    return int(value) if value.isdigit() and len(value) <= 10 else value


def _drop_none(obj: JsonObject) -> JsonObject:
    return {k: v for k, v in obj.items() if v is not None}


# --- media params --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AudioParams:
    """Audio ``media_params`` (§5.3); defaults are the WebSocket defaults, not the SDK's."""

    content_type: int = ContentType.RAW_AUDIO
    sample_rate: int = SampleRate.SR_16K
    channel: int = Channel.MONO
    codec: int = PayloadType.L16
    data_opt: int = DataOption.AUDIO_MIXED_STREAM
    send_rate: int = 20


@dataclass(frozen=True, slots=True)
class VideoParams:
    content_type: int = ContentType.RAW_VIDEO
    codec: int = PayloadType.JPG
    resolution: int = MediaResolution.HD
    data_opt: int = DataOption.VIDEO_SINGLE_ACTIVE_STREAM
    fps: int = 5


@dataclass(frozen=True, slots=True)
class DeskshareParams:
    content_type: int = ContentType.RAW_VIDEO
    codec: int = PayloadType.JPG
    resolution: int = MediaResolution.FHD
    fps: int = 1


@dataclass(frozen=True, slots=True)
class TranscriptParams:
    content_type: int = ContentType.TEXT
    src_language: int | None = None
    enable_lid: bool | None = None


@dataclass(frozen=True, slots=True)
class ChatParams:
    content_type: int = ContentType.TEXT


_ParamsType = AudioParams | VideoParams | DeskshareParams | TranscriptParams | ChatParams
_PARAM_CLASSES: Final[Mapping[str, type[_ParamsType]]] = {
    "audio": AudioParams,
    "video": VideoParams,
    "deskshare": DeskshareParams,
    "transcript": TranscriptParams,
    "chat": ChatParams,
}


@dataclass(frozen=True, slots=True)
class MediaParams:
    audio: AudioParams | None = None
    video: VideoParams | None = None
    deskshare: DeskshareParams | None = None
    transcript: TranscriptParams | None = None
    chat: ChatParams | None = None

    def to_wire(self) -> JsonObject:
        out: JsonObject = {}
        for key in _MEDIA_KIND_KEYS:
            params = getattr(self, key)
            if params is not None:
                out[key] = _drop_none(
                    {name: _plain(getattr(params, name)) for name in params.__dataclass_fields__}
                )
        return out

    @classmethod
    def from_wire(cls, obj: JsonObject, where: str) -> MediaParams:
        parsed: dict[str, Any] = {}
        for key in _MEDIA_KIND_KEYS:
            sub = _opt_object(obj, key, where)
            if sub is None:
                continue
            if key == "transcript" and "src_language" not in sub and "language" in sub:
                # Older samples send ``language``; S15 maps it to ``src_language``.
                sub = {**sub, "src_language": sub["language"]}
            param_class = _PARAM_CLASSES[key]
            values: dict[str, Any] = {}
            for name in param_class.__dataclass_fields__:
                if name == "enable_lid":
                    values[name] = _opt_bool(sub, name, f"{where} media_params.{key}")
                else:
                    value = _opt_int(sub, name, f"{where} media_params.{key}")
                    if value is not None or name == "src_language":
                        values[name] = value
            parsed[key] = param_class(**values)
        return cls(**parsed)


def _plain(value: object) -> object:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    return value
