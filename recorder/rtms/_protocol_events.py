"""What the sans-IO connections report besides capture events (see ``protocol``).

Capture events (``recorder.rtms.events``) are emitted as they are and go to the pipeline. The
values here steer the trio shell: handshakes done or refused, interruptions, the stream ending.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from recorder.errors import HandshakeRejected, RemoteProtocolError
from recorder.rtms._enums import Rejection
from recorder.rtms.events import AudioFormat, CaptureEvent
from recorder.rtms.messages import MediaParams


class ConnState(enum.Enum):
    """Life of one socket's conversation. Transitions are listed in ``protocol._TRANSITIONS``."""

    #: Created; nothing sent yet.
    IDLE = "idle"
    #: Handshake request queued; waiting for msg 2 / msg 4.
    HANDSHAKING = "handshaking"
    #: Handshake accepted; keep-alives, events and media flow.
    OPEN = "open"
    #: We asked to close the stream (STREAM_CLOSE_REQ); waiting for msg 22.
    CLOSING = "closing"
    #: Over: transport lost, watchdog expired, stream ended or closed. Peer data is ignored.
    CLOSED = "closed"
    #: A fatal error (rejected handshake, unreadable handshake answer). Fails closed.
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class SignalingReady:
    """msg 2 with status 0: the media URLs, keyed by media name (audio, video, all, ...)."""

    server_urls: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class MediaReady:
    """msg 4 with status 0: the *confirmed* params; the client now sends CLIENT_READY_ACK."""

    media_params: MediaParams
    audio_format: AudioFormat | None
    #: Undocumented encryption claim (§5.4); logged as a warning by the shell.
    payload_encrypted: bool


@dataclass(frozen=True, slots=True)
class HandshakeRefused:
    """A handshake answered with status != 0 (or the mock's status-less failure)."""

    error: HandshakeRejected
    rejection: Rejection


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """The peer sent something unreadable. ``fatal`` means the connection is now in ERROR."""

    error: RemoteProtocolError
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class IgnoredMessage:
    """A message with no meaning here (23-27, unknown types, wrong socket): log, then ignore."""

    type_code: int


@dataclass(frozen=True, slots=True)
class KeepAliveAnswered:
    pass


@dataclass(frozen=True, slots=True)
class MediaInterruption:
    """Event 7 or stream state 2/14: a media socket dropped; redo only media (§9.2 case 3)."""

    #: ``media_type`` flags named by the server, 0 when it did not say which (§14.7).
    media_type: int = 0
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SignalingInterruptionNotice:
    """Stream state 2 with a reason naming signaling (12, 13, 15) or no socket at all: reported,
    not acted upon; ``rtms_interrupted`` or the socket's own loss drives recovery (§5.8)."""

    detail: str = ""


@dataclass(frozen=True, slots=True)
class PauseChanged:
    paused: bool
    timestamp_ms: int | None


@dataclass(frozen=True, slots=True)
class StreamTerminated:
    """Stream state 4, session state 5, or STREAM_CLOSE_RESP: no reconnect after this."""

    reason: int | None
    timestamp_ms: int | None
    #: ``stream``, ``session`` or ``close`` (our own STREAM_CLOSE_REQ was answered).
    source: str


@dataclass(frozen=True, slots=True)
class StateReport:
    """SESSION_STATE_RESP (11) or STREAM_STATE_RESP (20)."""

    scope: str
    state: int
    timestamp_ms: int | None


@dataclass(frozen=True, slots=True)
class VideoSubscriptionResult:
    user_id: str | None
    status_code: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class VideoFrame:
    """Video (15) or screen share (16). The capture pipeline records no video today."""

    kind: str
    timestamp_ms: int
    payload: bytes
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class ConnectionEnded:
    """The transport closed (``receive_message(None)``) or the watchdog fired."""

    #: ``transport`` or ``watchdog``.
    cause: str
    #: The handshake had not completed yet.
    during_handshake: bool = False
    detail: str = field(default="")


ControlEvent = (
    SignalingReady
    | MediaReady
    | HandshakeRefused
    | ProtocolViolation
    | IgnoredMessage
    | KeepAliveAnswered
    | MediaInterruption
    | SignalingInterruptionNotice
    | PauseChanged
    | StreamTerminated
    | StateReport
    | VideoSubscriptionResult
    | VideoFrame
    | ConnectionEnded
)

ProtocolEvent = ControlEvent | CaptureEvent
