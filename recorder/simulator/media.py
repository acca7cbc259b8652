"""Audio and transcript delivery for one engagement: frames, the 60 s buffer, packets on sockets.

Rule 1: Zoom's side produces audio whether or not anyone listens. Frame ``k`` (20 ms) carries RTMS
timestamp ``t0_ms + 20 k``. While no audio socket is ready the frame *index* goes into a bounded
buffer (60 s, rtms-protocol §9.4); when a socket becomes ready the buffer is replayed first, with
the original timestamps, then live frames follow. Paused frames are never produced.

Rule 2: payloads are encoded once per (track, format) before a socket streams, so the per-packet
path is: look up bytes, base64, format one JSON string, send.

Rule 3: one ``trio.Lock`` orders replay and live sending, so a socket never sees a live frame
before the buffered ones.
"""

from __future__ import annotations

import base64
import json
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import trio

from recorder.rtms.messages import AudioParams, MediaTranscript
from recorder.simulator.connections import Connection
from recorder.simulator.faults import (
    UNKNOWN_CONTENT_FIELD,
    UNKNOWN_TOP_FIELD,
    V2_BINARY_FRAME,
    Faults,
)
from recorder.simulator.program import FRAME_MS, Program, Track, Utterance
from recorder.simulator.stats import EngagementStats, Observed

#: Zoom buffers up to 60 s of audio before connect and during interruptions (§9.4).
BUFFER_FRAMES: Final = 60_000 // FRAME_MS
#: RTMS transcript language id for English (§6.13).
ENGLISH: Final = 9
#: How each ``timestamp_fault`` kind breaks a packet's true timestamp (ms).
_BROKEN_TIMESTAMPS: Final[dict[str, Callable[[int], int]]] = {
    "seconds": lambda ms: ms // 1000,
    "microseconds": lambda ms: ms * 1000,
    "zero": lambda ms: 0,
    "negative": lambda ms: -ms,
    "max_int64": lambda ms: 2**63 - 1,
    "far_future": lambda ms: ms + 3_600_000,
}


def _wire_user_id(user_id: str) -> int | str:
    """Meeting user ids are integers on the wire; ZCC ids are strings (§3)."""
    return int(user_id) if user_id.isdigit() and len(user_id) <= 10 else user_id


def _content_prefix(track: Track, *, unknown_fields: bool = False) -> str:
    """Everything of a msg 14 before the base64 data, for one track."""
    fields: dict[str, object] = {}
    if track.channel_id is not None:
        fields["channel_id"] = track.channel_id
    else:
        fields["user_id"] = _wire_user_id(track.user_id or "0")
        if track.user_name is not None:
            fields["user_name"] = track.user_name
    head = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)[1:-1]
    if unknown_fields:
        return (
            '{"msg_type":14,'
            + UNKNOWN_TOP_FIELD
            + '"content":{'
            + UNKNOWN_CONTENT_FIELD
            + head
            + ',"data":"'
        )
    return '{"msg_type":14,"content":{' + head + ',"data":"'


@dataclass(slots=True)
class SocketAudio:
    """How one ready media socket carries audio: its format and per-track packetising."""

    params: AudioParams
    #: Encoded 20 ms payloads per track name, one cycle long.
    payloads: dict[str, Sequence[bytes]]
    frames_per_packet: int = 1
    #: Per track: frames waiting to fill a packet (send_rate > 20 ms).
    pending: dict[str, list[int]] = field(default_factory=dict)


class MediaFeed:
    """Produces frames on Zoom's clock and delivers them to whichever sockets are ready."""

    def __init__(
        self,
        program: Program,
        *,
        t0_ms: int,
        stats: EngagementStats,
        observed: Observed,
        faults: Faults | None = None,
    ) -> None:
        self.program = program
        self._faults = faults or Faults()
        self.t0_ms = t0_ms
        self._stats = stats
        self._observed = observed
        self._buffer: deque[int] = deque()
        unknown = self._faults.unknown_media_fields
        self._prefixes = {
            track.name: _content_prefix(track, unknown_fields=unknown) for track in program.tracks
        }
        #: Audio packets sent per socket (for ``Faults.v2_frame_every``).
        self._packets_on: dict[Connection, int] = {}
        #: Ready sockets carrying audio / transcript, in the order they became ready.
        self.audio_sockets: dict[Connection, SocketAudio] = {}
        self.transcript_sockets: list[Connection] = []
        self.lock = trio.Lock()
        #: Frames produced so far (the next frame index).
        self.next_frame = 0
        self.buffering = True
        #: Frames before this one are lost, never sent nor buffered (``drop_media`` ``lose_s``).
        self.lose_until_frame = 0
        #: Broken-timestamp kinds for the next packets sent (``timestamp_fault`` step).
        self._broken: deque[str] = deque()

    def timestamp_ms(self, frame: int) -> int:
        return self.t0_ms + frame * FRAME_MS

    def first_buffered_timestamp_ms(self) -> int:
        """FIRST_PACKET_TIMESTAMP: the oldest audio the client will get."""
        if self._buffer:
            return self.timestamp_ms(self._buffer[0])
        return self.timestamp_ms(self.next_frame)

    def drop_buffer(self) -> None:
        """``buffer_data: false`` on the first handshake: pre-connect audio is dropped (§5.1)."""
        self._stats.buffer_dropped_frames += len(self._buffer)
        self._buffer.clear()
        self._stats.buffered_frames = 0

    def lose(self, frames: int) -> None:
        """The next ``frames`` frames are lost: Zoom's buffer did not survive an interruption."""
        self.lose_until_frame = self.next_frame + frames

    def break_timestamps(self, kind: str, packets: int) -> None:
        """The next ``packets`` audio packets sent carry a ``kind`` of broken timestamp."""
        if kind not in _BROKEN_TIMESTAMPS:
            raise ValueError(f"unknown timestamp fault {kind!r}")
        self._broken.extend([kind] * max(0, packets))

    def _buffer_frame(self, frame: int) -> None:
        if len(self._buffer) >= BUFFER_FRAMES:
            self._buffer.popleft()
            self._stats.buffer_dropped_frames += 1
        self._buffer.append(frame)
        self._stats.buffered_frames = len(self._buffer)

    async def produce(self, frame: int) -> None:
        """Frame ``frame`` happened on Zoom's side: send it live, or buffer it."""
        async with self.lock:
            self.next_frame = frame + 1
            if frame < self.lose_until_frame:
                self._stats.lost_frames += 1
                self._observed.changed()
                return
            live = [c for c in self.audio_sockets if not c.closed]
            for conn in live:
                await self._send_frame(conn, frame, replayed=False)
            if not any(not conn.closed for conn in live):
                # Nobody got it (or the socket died under the send): Zoom keeps it for the
                # reconnect. A frame that half-arrived is replayed too; clients dedupe by
                # timestamp, as the SDK's users must (rtms-protocol §15).
                self._buffer_frame(frame)
            for utterance in self.program.utterances_ending(frame):
                await self._send_transcript(frame, utterance)
        self._observed.changed()

    def skip(self, frame: int) -> None:
        """A paused frame: nothing is produced, the timeline just moves on."""
        self.next_frame = frame + 1

    async def attach_audio(self, conn: Connection, audio: SocketAudio) -> None:
        """A socket is ready (CLIENT_READY_ACK): replay the buffer, then stream live."""
        async with self.lock:
            self.audio_sockets[conn] = audio
            replay = list(self._buffer)
            self._buffer.clear()
            self._stats.buffered_frames = 0
            for frame in replay:
                await self._send_frame(conn, frame, replayed=True)
        self._observed.changed()

    def detach(self, conn: Connection) -> None:
        self.audio_sockets.pop(conn, None)
        self._packets_on.pop(conn, None)
        if conn in self.transcript_sockets:
            self.transcript_sockets.remove(conn)

    async def _send_frame(self, conn: Connection, frame: int, *, replayed: bool) -> None:
        audio = self.audio_sockets.get(conn)
        if audio is None:
            # Detached while an earlier send of this frame was in flight.
            return
        cycle_frame = frame % self.program.cycle_frames
        for track in self.program.tracks:
            if not track.sends(cycle_frame):
                continue
            pending = audio.pending.setdefault(track.name, [])
            if pending and pending[-1] != frame - 1:
                # Not contiguous (a pause, or the speaker stopped): ship what we have.
                await self._send_packet(conn, audio, track, pending, replayed=replayed)
                pending.clear()
            pending.append(frame)
            if len(pending) >= audio.frames_per_packet:
                await self._send_packet(conn, audio, track, pending, replayed=replayed)
                pending.clear()

    async def _send_packet(
        self,
        conn: Connection,
        audio: SocketAudio,
        track: Track,
        frames: list[int],
        *,
        replayed: bool,
    ) -> None:
        payloads = audio.payloads[track.name]
        cycle = self.program.cycle_frames
        if len(frames) == 1:
            data = payloads[frames[0] % cycle]
        else:
            data = b"".join(payloads[f % cycle] for f in frames)
        timestamp = self.timestamp_ms(frames[0])
        every = self._faults.v2_frame_every
        if every:
            sent = self._packets_on[conn] = self._packets_on.get(conn, 0) + 1
            if sent % every == 0 and await conn.send_raw(V2_BINARY_FRAME):
                self._stats.garbage_sent += 1
        wire_timestamp = timestamp
        if self._broken:
            wire_timestamp = _BROKEN_TIMESTAMPS[self._broken.popleft()](timestamp)
            self._stats.timestamp_faults_sent += 1
        text = (
            self._prefixes[track.name]
            + base64.b64encode(data).decode("ascii")
            + '","length":'
            + str(len(data))
            + ',"timestamp":'
            + str(wire_timestamp)
            + "}}"
        )
        if await conn.send_text(text):
            conn.last_media_at = trio.current_time()
            self._stats.frames_sent += 1
            self._stats.track(track.name).record(timestamp, replayed=replayed)

    async def _send_transcript(self, frame: int, utterance: Utterance) -> None:
        if not self.transcript_sockets:
            return
        start_frame = frame - (utterance.end_frame - utterance.start_frame)
        speaker = utterance.speaker
        channel = speaker.channel_id if self.program.tracks[0].channel_id is not None else None
        await self.send_transcript_text(
            utterance.text,
            user_id=None if channel else speaker.user_id,
            user_name=None if channel else speaker.user_name,
            channel_id=channel,
            start_ms=self.timestamp_ms(start_frame),
            end_ms=self.timestamp_ms(frame),
        )

    async def send_transcript_text(
        self,
        text: str,
        *,
        user_id: str | None,
        user_name: str | None,
        channel_id: str | None,
        start_ms: int,
        end_ms: int,
    ) -> None:
        message = MediaTranscript(
            timestamp_ms=start_ms,
            text=text,
            user_id=user_id,
            user_name=user_name,
            channel_id=channel_id,
            start_ms=start_ms,
            end_ms=end_ms,
            language=ENGLISH,
        ).to_wire()
        if self._faults.unknown_media_fields:
            message = {"zoom_future": {"v": 2}, **message}
            message["content"] = {"audio_level": -31, **message["content"]}
        for conn in list(self.transcript_sockets):
            if await conn.send(message):
                self._stats.transcripts_sent += 1
                self._stats.track("transcript").record(start_ms, replayed=False)
