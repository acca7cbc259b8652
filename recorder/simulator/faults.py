"""Faults of one engagement that are not timed steps: refused handshakes and odd frame shapes.

Rule: faults are data, like the rest of a scenario (``Scenario.faults``). The endpoints ask
``RefusalBook.next_refusal`` before accepting a handshake; the media feed reads the frame-shape
flags once per socket.

Scenario file shape (TOML)::

    [faults]
    unknown_media_fields = true          # a new, unknown JSON field in every media frame
    v2_frame_every = 50                  # a binary Protobuf-like (RTMS V2) frame every 50 packets
    stopped_webhook_lead_s = 2.0         # rtms_stopped 2 s before the media ends
    v2_answer = false                    # answer the signaling handshake as RTMS V2 would
    [[faults.refusals]]
    socket = "transcript"                # "signaling" or a media URL name (audio, all, ...)
    status = "transcript_not_supported"  # a ``profiles.Status`` value
    times = 0                            # how many handshakes to refuse; 0 = every one
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from recorder.errors import ConfigError
from recorder.simulator.profiles import Status

#: A frame RTMS V2 might send: Protobuf wire format (field 1 varint 14, field 2 bytes), which is
#: not JSON. Its content is made up; V2's definitions are not public (rtms-protocol §16).
V2_BINARY_FRAME: Final = b"\x08\x0e\x12\x06\x08\x01\x10\x80\x7d\x1a\x00"

#: The unknown fields added to media frames by ``unknown_media_fields``.
UNKNOWN_TOP_FIELD: Final = '"zoom_future":{"v":2,"tags":["x"]},'
UNKNOWN_CONTENT_FIELD: Final = '"audio_level":-31,'


@dataclass(frozen=True, slots=True)
class HandshakeRefusal:
    #: ``signaling`` or the media URL name (``audio``, ``transcript``, ``chat``, ``all``...).
    socket: str
    status: Status
    #: How many handshakes on this socket to refuse, from the first; 0 = every one.
    times: int = 1


@dataclass(frozen=True, slots=True)
class Faults:
    refusals: tuple[HandshakeRefusal, ...] = ()
    #: Every media frame (audio and transcript) carries fields no RTMS version documents.
    unknown_media_fields: bool = False
    #: Send ``V2_BINARY_FRAME`` before every N-th audio packet on each socket; 0 = never.
    v2_frame_every: int = 0
    #: ``rtms_stopped`` goes out this many seconds before the scheduled end, while media still
    #: flows (ordering is not guaranteed, rtms-protocol §8.3); 0 = after the sockets close.
    stopped_webhook_lead_s: float = 0.0
    #: Answer the signaling handshake as an RTMS V2 server would (``protocol_version`` 2 and
    #: SRT fields, ``V2_ANSWER_FIELDS``).
    v2_answer: bool = False


#: What ``Faults.v2_answer`` adds to the signaling answer (rtms-protocol §16).
V2_ANSWER_FIELDS: Final = {"protocol_version": 2, "srt_passphrase": "sim", "srt_pbkey_length": 16}


class RefusalBook:
    """Counts handshakes per socket name and says which ones a fault refuses."""

    def __init__(self, faults: Faults) -> None:
        self._faults = faults
        self._seen: Counter[str] = Counter()

    def next_refusal(self, socket: str) -> Status | None:
        """Call once per handshake on ``socket``: the status to refuse it with, or None."""
        self._seen[socket] += 1
        attempt = self._seen[socket]
        for refusal in self._faults.refusals:
            if refusal.socket == socket and (refusal.times == 0 or attempt <= refusal.times):
                return refusal.status
        return None


def faults_from_mapping(data: Mapping[str, Any]) -> Faults:
    """The ``[faults]`` table of a scenario file (``ConfigError`` naming what is wrong)."""
    known = {
        "refusals",
        "unknown_media_fields",
        "v2_frame_every",
        "stopped_webhook_lead_s",
        "v2_answer",
    }
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"scenario: unknown [faults] keys {sorted(unknown)}")
    refusals = []
    for item in data.get("refusals", ()):
        try:
            status = Status(str(item["status"]))
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"scenario: [[faults.refusals]] status: {exc}") from exc
        refusals.append(HandshakeRefusal(str(item["socket"]), status, int(item.get("times", 1))))
    return Faults(
        refusals=tuple(refusals),
        unknown_media_fields=bool(data.get("unknown_media_fields", False)),
        v2_frame_every=int(data.get("v2_frame_every", 0)),
        stopped_webhook_lead_s=float(data.get("stopped_webhook_lead_s", 0.0)),
        v2_answer=bool(data.get("v2_answer", False)),
    )


__all__ = [
    "V2_ANSWER_FIELDS",
    "V2_BINARY_FRAME",
    "Faults",
    "HandshakeRefusal",
    "RefusalBook",
    "faults_from_mapping",
]
