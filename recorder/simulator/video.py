"""Video (15) and screen share (16) for one simulated engagement: real H.264 on Zoom's clock.

Off unless the scenario's app offers ``video`` / ``deskshare`` and the client's handshake asks
for H.264 (codec 7). Frame ``n`` of a kind carries RTMS timestamp ``t0 + n * 1000 // fps`` and
shows the number ``n`` (``recorder.video.pattern``): a recorder's export can be checked picture
by picture. Zoom does not buffer video (rtms-protocol §5.15): frames produced while no socket of
that kind is ready are never sent. ``VideoFeedSpec.drop_frames`` injects losses on a live socket.
Unlike RTMS (H.264 only above 5 fps for video, 1 fps for screen share), the simulator serves
H.264 at any rate it confirms, so tests can keep media tiny (5 fps).
"""

from __future__ import annotations

import base64
import collections
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from recorder.errors import ConfigError
from recorder.rtms.messages import DeskshareParams, PayloadType, VideoParams
from recorder.simulator.connections import Connection
from recorder.video.pattern import MAX_FRAMES, PatternSpec, encode_pattern

MSG_TYPES: Final = {"video": 15, "deskshare": 16}
#: Frames of each kind remembered in ``VideoFeed.sent`` (tests compare exports against it).
_SENT_MEMORY: Final = 100_000


@dataclass(frozen=True, slots=True)
class VideoFeedSpec:
    """The scenario's ``[video]`` table (both kinds use it)."""

    width: int = 160
    height: int = 90
    keyframe_interval: int = 10
    #: Frame numbers (per kind) never sent: injected losses.
    drop_frames: tuple[int, ...] = ()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> VideoFeedSpec:
        unknown = set(data) - {"width", "height", "keyframe_interval", "drop_frames"}
        if unknown:
            raise ConfigError(f"scenario: unknown [video] keys {sorted(unknown)}")
        spec = cls(
            width=int(data.get("width", 160)),
            height=int(data.get("height", 90)),
            keyframe_interval=int(data.get("keyframe_interval", 10)),
            drop_frames=tuple(int(n) for n in data.get("drop_frames", ())),
        )
        PatternSpec(spec.width, spec.height, 5, spec.keyframe_interval, 1).validate()
        return spec


@dataclass(slots=True)
class _Socket:
    kind: str
    fps: int
    units: Sequence[tuple[bytes, bool]]
    #: Video ``data_opt`` 4: nothing flows until a VIDEO_SUBSCRIPTION_REQ names a user.
    individual: bool = False


@dataclass(slots=True)
class VideoFeed:
    spec: VideoFeedSpec
    t0_ms: int
    duration_s: float
    user_id: int | str
    user_name: str
    sockets: dict[Connection, list[_Socket]] = field(default_factory=dict)
    #: Next frame number per kind (the timeline moves whether or not anyone listens).
    next_frame: dict[str, int] = field(default_factory=dict)
    fps: dict[str, int] = field(default_factory=dict)
    #: Per kind: (timestamp_ms, frame number) of every frame sent, in order.
    sent: dict[str, list[tuple[int, int]]] = field(
        default_factory=lambda: collections.defaultdict(list)
    )
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)
    #: The user of the individual video subscription (msg 28), if any.
    subscribed_user: object = None

    def timestamp_ms(self, kind: str, n: int) -> int:
        return self.t0_ms + n * 1000 // self.fps[kind]

    async def prepare(
        self,
        conn: Connection,
        kinds: frozenset[str],
        params: Mapping[str, object],
        *,
        now_ms: int,
    ) -> None:
        """A media handshake was accepted: encode the pattern for the H.264 kinds it asked.
        A kind's timeline starts now (Zoom sends no video from before anyone listened)."""
        entries = []
        for kind in sorted(kinds & set(MSG_TYPES)):
            p = params.get(kind)
            if not isinstance(p, VideoParams | DeskshareParams) or p.codec != PayloadType.H264:
                continue  # JPG/PNG are not simulated: such a socket stays silent for this kind
            frames = min(MAX_FRAMES, max(1, int(self.duration_s * p.fps) + 1))
            pattern = PatternSpec(
                self.spec.width, self.spec.height, p.fps, self.spec.keyframe_interval, frames
            )
            units = await trio.to_thread.run_sync(encode_pattern, pattern)
            individual = isinstance(p, VideoParams) and p.data_opt == 4
            entries.append(_Socket(kind, p.fps, units, individual))
            if kind not in self.fps:
                self.fps[kind] = p.fps
                elapsed = max(0, now_ms - self.t0_ms)
                self.next_frame[kind] = -(-elapsed * p.fps // 1000)
        if entries:
            self.sockets[conn] = entries

    def detach(self, conn: Connection) -> None:
        self.sockets.pop(conn, None)

    async def produce_until(self, now_ms: int, *, paused: bool = False) -> None:
        """Every frame due by ``now_ms`` happens: sent to ready sockets, or lost."""
        for kind, n in list(self.next_frame.items()):
            while self.timestamp_ms(kind, n) <= now_ms:
                if not paused and n not in self.spec.drop_frames:
                    await self._send(kind, n)
                elif not paused:
                    self.dropped[kind] += 1
                n += 1
                self.next_frame[kind] = n

    async def _send(self, kind: str, n: int) -> None:
        ts = self.timestamp_ms(kind, n)
        for conn, entries in list(self.sockets.items()):
            if conn.closed or not conn.ready.is_set():
                continue
            for entry in entries:
                if entry.kind != kind:
                    continue
                user: object = self.user_id
                if entry.individual:
                    if self.subscribed_user is None:
                        continue
                    user = self.subscribed_user
                data = entry.units[n % len(entry.units)][0]
                head = json.dumps({"user_id": user, "user_name": self.user_name})[1:-1]
                text = (
                    f'{{"msg_type":{MSG_TYPES[kind]},"content":{{{head},"data":"'
                    + base64.b64encode(data).decode("ascii")
                    + f'","length":{len(data)},"timestamp":{ts}}}}}'
                )
                if await conn.send_text(text):
                    conn.last_media_at = trio.current_time()
                    sent = self.sent[kind]
                    if len(sent) < _SENT_MEMORY:
                        sent.append((ts, n))


__all__ = ["MSG_TYPES", "VideoFeed", "VideoFeedSpec"]
