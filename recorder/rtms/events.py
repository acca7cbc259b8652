"""What the RTMS client hands to the capture pipeline: a typed stream of these events.

The client (``recorder.rtms.client``) turns wire messages, socket failures and reconnects into
these values, in order, on one bounded channel per stream. The capture pipeline
(``recorder.capture``) consumes them and never sees JSON, base64 or sockets.

Times named ``*_ms`` are RTMS timestamps: Unix milliseconds from Zoom's clock. Times named
``*_wall_ms`` are the recorder's own wall clock, for when RTMS gives no timestamp.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from recorder.frozen import new_object, slot_setters

MIXED_TRACK = "mixed"


class AudioCodec(enum.IntEnum):
    """MEDIA_PAYLOAD_TYPE for audio (rtms-protocol §6.3)."""

    L16 = 1
    G711 = 2  #: A-law (PCMA)
    G722 = 3
    OPUS = 4


class GapCause(enum.StrEnum):
    """Why a span of a timeline holds no received audio (invariant 4)."""

    #: Packets missing between two received ones while the stream was healthy.
    LOST_PACKETS = "lost_packets"
    #: A packet arrived too late to be placed (already written past it).
    LATE_PACKETS = "late_packets"
    #: A packet arrived but could not be decoded.
    DECODE_ERROR = "decode_error"
    #: The media socket dropped (event 7, state 2/14, socket closed or watchdog).
    MEDIA_INTERRUPTED = "media_interrupted"
    #: The signaling socket dropped (``*.rtms_interrupted``, state 2/13); both sockets were redone.
    SIGNALING_INTERRUPTED = "signaling_interrupted"
    #: A failover to new server URLs.
    FAILOVER = "failover"
    #: The recorder itself restarted or another recorder took the stream over.
    RECORDER_RESTART = "recorder_restart"
    #: The recorder's own queue was full and packets were dropped (counted, never silent).
    BACKPRESSURE = "backpressure"
    #: Muted participant / nobody speaking in per-speaker mode: RTMS sends nothing.
    NO_SPEECH = "no_speech"
    #: Recorded, but the sealed chunk holding it failed authentication at crash recovery.
    CORRUPT_CHUNK = "corrupt_chunk"
    #: The sender's timestamps jumped further than the recorder's clock allows (a clock reset,
    #: seconds or microseconds instead of ms): the span's length is the wall-clock estimate.
    TIMESTAMP_DISCONTINUITY = "timestamp_discontinuity"
    #: A packet arrived with a timestamp that cannot be Unix ms (seconds, µs, 0...): refused.
    BAD_TIMESTAMP = "bad_timestamp"
    #: The track's participant left (meeting leave, ZCC transfer or conference leave) and the
    #: track was retired until their audio came back.
    PARTICIPANT_LEFT = "participant_left"


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """The confirmed audio media params of a media socket (DATA_HAND_SHAKE_RESP)."""

    codec: AudioCodec
    sample_rate: int  #: Hz, not the enum index
    channels: int
    #: milliseconds per packet (``send_rate``)
    packet_ms: int = 20
    #: 1 mixed, 2 per speaker (``data_opt``)
    data_opt: int = 1
    #: 2 RAW_AUDIO, 1 RTP (``content_type``)
    content_type: int = 2


@dataclass(frozen=True, slots=True)
class AudioPacket:
    """One MEDIA_DATA_AUDIO (14) payload, base64 already decoded."""

    #: ``mixed``, ``user-<user_id>`` or ``channel-<channel_id>``.
    track: str
    timestamp_ms: int
    payload: bytes
    format: AudioFormat
    user_id: str | None = None
    user_name: str | None = None
    channel_id: str | None = None


# Built once per 20 ms message: through the slots' setters, a third of ``__init__``'s cost for
# the same frozen AudioPacket (``recorder.frozen``).
(
    _set_track,
    _set_timestamp_ms,
    _set_payload,
    _set_format,
    _set_user_id,
    _set_user_name,
    _set_channel_id,
) = slot_setters(
    AudioPacket,
    ("track", "timestamp_ms", "payload", "format", "user_id", "user_name", "channel_id"),
)


def audio_packet(
    track: str,
    timestamp_ms: int,
    payload: bytes,
    fmt: AudioFormat,
    user_id: str | None,
    user_name: str | None,
    channel_id: str | None,
) -> AudioPacket:
    """``AudioPacket(track, timestamp_ms, payload, fmt, user_id, user_name, channel_id)``,
    built for the per-message hot path (see above); equal to it in every field."""
    packet: AudioPacket = new_object(AudioPacket)
    _set_track(packet, track)
    _set_timestamp_ms(packet, timestamp_ms)
    _set_payload(packet, payload)
    _set_format(packet, fmt)
    _set_user_id(packet, user_id)
    _set_user_name(packet, user_name)
    _set_channel_id(packet, channel_id)
    return packet


@dataclass(frozen=True, slots=True)
class TranscriptMessage:
    timestamp_ms: int
    text: str
    user_id: str | None = None
    user_name: str | None = None
    channel_id: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    language: int | None = None


@dataclass(frozen=True, slots=True)
class ChatMessage:
    timestamp_ms: int
    #: Plain text, or the JSON string RTMS sent (2026 chat schema), verbatim.
    text: str
    user_id: str | None = None
    user_name: str | None = None


@dataclass(frozen=True, slots=True)
class Participant:
    user_id: str
    user_name: str | None = None


@dataclass(frozen=True, slots=True)
class ParticipantEvent:
    """EVENT_UPDATE (6) for meetings/webinars/sessions: join, leave, active speaker, sharing."""

    timestamp_ms: int
    #: RTMS_EVENT_TYPE value (2 active speaker, 3 join, 4 leave, 5/6 sharing, 8/9 video on/off...)
    event_type: int
    name: str
    participants: tuple[Participant, ...] = ()


@dataclass(frozen=True, slots=True)
class ContactCenterEvent:
    """EVENT_UPDATE (6) in the ZCC voice namespace (answered, hold, transfer, ...)."""

    timestamp_ms: int
    event_type: int
    name: str
    channel_id: str | None = None
    participant_mode: str | None = None  #: "caller" or "callee"
    queue_id: str | None = None
    queue_name: str | None = None
    user_id: str | None = None
    display_name: str | None = None
    #: Every other field RTMS sent, verbatim (phone numbers stay inside encrypted records only).
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FirstPacketTimestamp:
    """EVENT_UPDATE event_type 1: the stream's t0."""

    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class StreamStateChanged:
    """STREAM_STATE_UPDATE (8) or SESSION_STATE_UPDATE (9), normalised."""

    timestamp_ms: int | None
    #: ``stream`` or ``session``
    scope: str
    state: int
    state_name: str
    reason: int | None = None
    reason_name: str | None = None
    rtms_session_id: str | None = None


@dataclass(frozen=True, slots=True)
class Paused:
    """Media is paused (session 3 / stream 5). ``actor`` is who paused, when RTMS says."""

    timestamp_ms: int | None
    wall_ms: int
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class Resumed:
    timestamp_ms: int | None
    wall_ms: int


@dataclass(frozen=True, slots=True)
class Interrupted:
    """A connection dropped; the client is recovering. Audio will resume after ``Recovered``."""

    wall_ms: int
    cause: GapCause
    #: Which media sockets are affected; empty for a signaling (full) interruption.
    media: tuple[str, ...] = ()
    detail: str = ""
    #: Pairs this with its ``Recovered`` (0: unpaired, from an older producer).
    interruption_id: int = 0

    @property
    def affects_audio(self) -> bool:
        """A transcript or chat socket going down never explains missing audio."""
        return not self.media or "audio" in self.media


@dataclass(frozen=True, slots=True)
class Recovered:
    """The connection is back. ``interrupted_wall_ms``..``wall_ms`` is the interruption window."""

    wall_ms: int
    interrupted_wall_ms: int
    cause: GapCause
    attempts: int = 1
    #: The ``Interrupted`` this ends; ``cause`` is the true one, which may have become known
    #: only during the interruption (a failover while the signaling was already down).
    interruption_id: int = 0


@dataclass(frozen=True, slots=True)
class PacketsDropped:
    """The client dropped packets it could not hand on (bounded channel full): never silent."""

    wall_ms: int
    count: int
    cause: GapCause = GapCause.BACKPRESSURE
    #: RTMS timestamp range of what was dropped, when known.
    first_timestamp_ms: int | None = None
    last_timestamp_ms: int | None = None
    track: str | None = None


@dataclass(frozen=True, slots=True)
class MediaSocketDropped:
    """An optional (non-audio) media socket was refused for good; the stream goes on without it.

    Only sockets that carry no audio are ever dropped (audio refused for good ends the stream).
    """

    wall_ms: int
    #: The media the dropped socket would have carried (``transcript``, ``chat``...).
    media: tuple[str, ...]
    status_code: int | None
    #: The server's ``reason`` verbatim.
    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The stream is over: no more events follow."""

    wall_ms: int
    reason: int | None
    reason_name: str
    #: True when the stream ended normally (host stopped, meeting ended, ...).
    normal: bool
    #: STREAM_REVOKED (8): the recorded assets must be deleted (unless on legal hold).
    revoked: bool = False


CaptureEvent = (
    AudioPacket
    | TranscriptMessage
    | ChatMessage
    | ParticipantEvent
    | ContactCenterEvent
    | FirstPacketTimestamp
    | StreamStateChanged
    | Paused
    | Resumed
    | Interrupted
    | Recovered
    | PacketsDropped
    | MediaSocketDropped
    | StreamEnded
)
