"""One simulated RTMS engagement: its lifecycle, its timed steps and every fault it can inject.

Rule 1: the engagement owns one nursery (media feed, steps, grace timers) and is the only place
that changes the stream's state. The socket handlers (``endpoints``) call in here; they never
decide what a closed socket means.

Rule 2: time has two faces. The trio clock paces everything (so ``MockClock(autojump_threshold=0)``
accelerates a whole call, and ``speed`` compresses a demo); RTMS timestamps are derived from frame
numbers (``t0_ms + 20 k``), never from the trio clock, so they are exact and deterministic.

Rule 3: everything observable is counted in ``stats`` and announced through ``wait_for``;
milestones are ``trio.Event``\\s: ``connected``, ``streaming``, ``stopped``, ``finished``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import trio

from recorder.rtms.messages import (
    EventType,
    EventUpdate,
    SessionState,
    SessionStateUpdate,
    StopReason,
    StreamState,
    StreamStateUpdate,
)
from recorder.rtms.signature import handshake_signature
from recorder.simulator.connections import Connection
from recorder.simulator.faults import RefusalBook
from recorder.simulator.handshake import Expected
from recorder.simulator.media import MediaFeed
from recorder.simulator.profiles import Profile
from recorder.simulator.program import FRAME_MS, Program
from recorder.simulator.scenario import Product, Scenario, Step
from recorder.simulator.stats import EngagementStats, Observed, WebhookRecord
from recorder.simulator.steps import run_step
from recorder.simulator.video import VideoFeed
from recorder.simulator.webhooks import Delivery, WebhookSender

logger = logging.getLogger(__name__)

#: Close code for connections the server drops on purpose (fault steps, failover).
DROP_CLOSE_CODE: Final = 1011
FAILOVER_CLOSE_CODE: Final = 1001


@dataclass(frozen=True, slots=True)
class EngagementOptions:
    speed: float = 1.0
    #: Send JSON in binary frames, as the official SDK does (§15).
    binary_frames: bool = False
    #: Webhook payload as ``payload.object`` (seen in some Zoom material) instead of flat.
    webhook_nested: bool = False
    #: Seconds a client has for its first frame after the WebSocket opens.
    handshake_timeout_s: float = 10.0
    encode_in_thread: bool = True
    #: Wake the media pump once per this many frames (1 = exact 20 ms pacing).
    pace_batch_frames: int = 1
    #: Called with each scripted step as it runs (``recorder simulate`` prints them).
    on_step: Callable[[Scenario, Step], None] | None = None
    #: Zoom Phone webhooks named ``phone.call_rtms_*`` (one of Zoom's samples) instead of
    #: ``phone.rtms_*`` (rtms-protocol §16).
    phone_call_event_names: bool = False


@dataclass(frozen=True, slots=True)
class Target:
    """Everything a client needs to join an engagement without a webhook."""

    product: Product
    #: ``meeting_uuid`` / ``webinar_uuid`` / ``session_id`` / ``engagement_id`` / ``call_id``.
    id_key: str
    instance_id: str
    rtms_stream_id: str
    #: For ``session`` these are the Video SDK key and secret.
    client_id: str
    client_secret: str
    signature: str
    #: The signaling URL (``server_urls`` of the current ``rtms_started``).
    server_urls: str


def _video_user(user_id: str) -> int | str:
    return int(user_id) if user_id.isdigit() and len(user_id) <= 10 else user_id


class Engagement:
    """A running simulated engagement. Built by ``Simulator.start``; tests read, rarely call."""

    def __init__(
        self,
        scenario: Scenario,
        program: Program,
        *,
        profile: Profile,
        base_url: str,
        sender: WebhookSender,
        webhook_nursery: trio.Nursery,
        options: EngagementOptions,
    ) -> None:
        self.scenario = scenario
        self.program = program
        self.profile = profile
        self.options = options
        self.token = secrets.token_hex(8)
        self._base_url = base_url
        self._sender = sender
        self._webhook_nursery = webhook_nursery
        self.stats = EngagementStats()
        self._observed = Observed()
        self.feed = MediaFeed(
            program,
            t0_ms=scenario.t0_ms,
            stats=self.stats,
            observed=self._observed,
            faults=scenario.faults,
        )
        first = scenario.speakers[0] if scenario.speakers else None
        #: Video and screen share (H.264), only when the scenario offers them.
        self.video = VideoFeed(
            scenario.video,
            t0_ms=scenario.t0_ms,
            duration_s=scenario.duration_s,
            user_id=_video_user(first.user_id if first else "16778240"),
            user_name=first.user_name if first else "Presenter",
        )
        #: Which handshakes the scenario's faults refuse.
        self.refusals = RefusalBook(scenario.faults)
        self.signature = handshake_signature(
            scenario.client_id,
            scenario.client_secret,
            scenario.instance_id,
            scenario.rtms_stream_id,
        )
        self.expected = Expected(
            id_key=scenario.handshake_id_key or scenario.product.id_key,
            instance_id=scenario.instance_id,
            rtms_stream_id=scenario.rtms_stream_id,
            signature=self.signature,
        )
        self.generation = 1
        #: Milestones.
        self.connected = trio.Event()
        self.streaming = trio.Event()
        self.stopped = trio.Event()
        self.finished = trio.Event()
        # Socket state, changed only through the methods below.
        self.signaling: list[Connection] = []
        self.media: list[Connection] = []
        self.unacked: list[Connection] = []
        self.subscribed: set[int] = set()
        #: The user of the individual video subscription (msg 28), if any.
        self.video_subscribed_user: object = None
        self.paused = False
        self.stopping = False
        self.buffer_decided = False
        #: ``rtms_stopped`` already went out ahead of the media (``Faults.stopped_webhook_lead_s``).
        self._stopped_webhook_sent = False
        self._reconnected = trio.Event()
        self._grace_token = 0
        self._nursery: trio.Nursery | None = None
        self._start_time = 0.0
        self._event_ts = self._wall_ms()
        #: The last body sent per webhook event name (duplicate / retry steps resend these bytes).
        self.webhook_bodies: dict[str, tuple[int, bytes]] = {}
        #: The ``rtms_started`` payload, for tests that drive a client without webhooks.
        self.started_webhook_payload: dict[str, Any] = self._started_payload()

    # --- addresses ---------------------------------------------------------------------------

    def url(self, kind: str, generation: int | None = None) -> str:
        gen = self.generation if generation is None else generation
        return f"{self._base_url}/rtms/{self.token}/{gen}/{kind}"

    @property
    def server_urls(self) -> str:
        """The ``server_urls`` of the current ``rtms_started`` (the signaling URL)."""
        return self.url("signaling")

    @property
    def target(self) -> Target:
        s = self.scenario
        return Target(
            product=s.product,
            id_key=self.expected.id_key,
            instance_id=s.instance_id,
            rtms_stream_id=s.rtms_stream_id,
            client_id=s.client_id,
            client_secret=s.client_secret,
            signature=self.signature,
            server_urls=self.server_urls,
        )

    def media_server_urls(self) -> dict[str, str]:
        """``media_server.server_urls`` of msg 2: per offered type, plus ``all`` (§5.2)."""
        urls = {kind: self.url(f"media/{kind}") for kind in self.scenario.media}
        urls["all"] = self.url("media/all")
        return urls

    # --- clocks ------------------------------------------------------------------------------

    def _wall_ms(self) -> int:
        """Zoom's wall clock for ``event_ts``: t0 plus scenario time (deterministic in tests)."""
        return self.scenario.t0_ms + int(self.elapsed_s() * 1000)

    def elapsed_s(self) -> float:
        """Scenario seconds since the start (trio clock times ``speed``)."""
        if not self._start_time:
            return 0.0
        return (trio.current_time() - self._start_time) * self.options.speed

    def now_ms(self) -> int:
        """An RTMS timestamp for "now": the current frame's timestamp."""
        return self.feed.timestamp_ms(self.feed.next_frame)

    def scaled(self, seconds: float) -> float:
        return seconds / self.options.speed

    # --- observation -------------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[EngagementStats], bool]) -> EngagementStats:
        """Wait until ``predicate(stats)`` holds; no sleeps, woken by every change."""
        await self._observed.wait_for(lambda: predicate(self.stats))
        return self.stats

    def changed(self) -> None:
        self._observed.changed()

    # --- lifecycle ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._start_time = trio.current_time()
                task_status.started()
                await self.post_webhook("started", self.started_webhook_payload, self._event_ts)
                nursery.start_soon(self._pump)
                await self.stopped.wait()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                for conn in [*self.signaling, *self.media]:
                    await conn.close(self.profile.stop_close_code)
            self.finished.set()
            self.changed()

    async def _pump(self) -> None:
        """The one timeline: before frame ``k`` is produced, every step due by then runs.

        Steps and frames share this task so that "pause at 1.0 s" always lands exactly between
        frame 49 and frame 50, whatever the scheduler does.
        """
        end_frame = int(self.scenario.duration_s * 1000 / FRAME_MS)
        frame_s = self.scaled(FRAME_MS / 1000)
        steps = sorted(self.scenario.steps, key=lambda s: s.at_s)
        # Frames are sent when their time has come; with ``pace_batch_frames`` > 1 the pump
        # wakes once per batch (never early, up to batch-1 frames late): fewer wake-ups for
        # benchmarks that run hundreds of engagements.
        batch = max(1, self.options.pace_batch_frames)
        lead_s = self.scenario.faults.stopped_webhook_lead_s
        early_stop_frame = end_frame - round(lead_s * 1000 / FRAME_MS) if lead_s > 0 else -1
        if self.scenario.start_when_streaming:
            await self._observed.wait_for(self._streaming_every_start_kind)
            # The call's clock starts now: frame 0, steps and the video timeline alike.
            self._start_time = trio.current_time()
        frame = 0
        while frame < end_frame:
            if frame == early_stop_frame and not self.stopping:
                await self._post_stopped(self.scenario.end_reason)
            if self.scenario.firehose:
                # As fast as the client reads, but only while someone reads (no 60 s overflow).
                if not self.feed.audio_sockets:
                    await self._observed.wait_for(lambda: bool(self.feed.audio_sockets))
                await trio.lowlevel.checkpoint()
            elif frame % batch == batch - 1 or frame == end_frame - 1:
                await trio.sleep_until(self._start_time + frame * frame_s)
            while steps and steps[0].at_s * 1000 <= frame * FRAME_MS and not self.stopping:
                await self.run_step(steps.pop(0))
            if self.stopping:
                return
            if self.paused:
                self.feed.skip(frame)
            else:
                await self._speaker_events(frame)
                await self.feed.produce(frame)
                if self.stats.frames_sent and not self.streaming.is_set():
                    self.streaming.set()
            if self.video.next_frame:
                await self.video.produce_until(self.feed.timestamp_ms(frame), paused=self.paused)
            frame += 1
        if not self.scenario.firehose:
            await trio.sleep_until(self._start_time + end_frame * frame_s)
        while steps and steps[0].at_s <= self.scenario.duration_s and not self.stopping:
            await self.run_step(steps.pop(0))
        await self.stop(self.scenario.end_reason)

    def _streaming_every_start_kind(self) -> bool:
        """A ready, open media socket carries each of ``start_when_streaming``."""
        ready = [c for c in self.media if c.ready.is_set() and not c.closed]
        return all(
            any(kind in c.media for c in ready) for kind in self.scenario.start_when_streaming
        )

    async def _speaker_events(self, frame: int) -> None:
        """ACTIVE_SPEAKER_CHANGE when an utterance starts (subscribed meetings only)."""
        if self.scenario.product.is_voice_call:
            return
        cycle_frame = frame % self.program.cycle_frames
        for u in self.program.utterances:
            if u.start_frame == cycle_frame:
                await self.send_event(
                    EventUpdate(
                        event_type=EventType.ACTIVE_SPEAKER_CHANGE,
                        timestamp_ms=self.feed.timestamp_ms(frame),
                        user_id=u.speaker.user_id,
                        user_name=u.speaker.user_name,
                    )
                )

    # --- sending on signaling ----------------------------------------------------------------

    async def send_signaling(self, msg: Mapping[str, Any]) -> bool:
        sent = False
        for conn in list(self.signaling):
            sent = await conn.send(msg) or sent
        return sent

    async def send_event(self, event: EventUpdate, *, automatic: bool = False) -> None:
        """EVENT_UPDATE, only if subscribed (1 and 7 are automatic, §5.6)."""
        if not automatic and event.event_type not in self.subscribed:
            return
        msg = event.to_wire()
        if self.scenario.product is Product.PHONE:
            # Zoom Phone numbers every event with event_code only (rtms-protocol §16).
            msg["event"]["event_code"] = msg["event"].pop("event_type")
        if await self.send_signaling(msg):
            self.stats.events_sent[event.event_type] += 1
            self.changed()

    def _reason_value(self, reason: int) -> int | str:
        if self.profile.string_stop_reasons:
            try:
                return "STOP_BC_" + StopReason(reason).name
            except ValueError:
                return reason
        return reason

    async def send_stream_state(self, state: int, reason: int | None = None) -> None:
        msg = StreamStateUpdate(state=state, timestamp_ms=self.now_ms()).to_wire()
        if reason is not None:
            msg["reason"] = self._reason_value(reason)
        if await self.send_signaling(msg):
            self.stats.state_updates.append((8, state, msg.get("reason")))
            self.changed()

    async def send_session_state(self, state: int, stop_reason: int | None = None) -> None:
        msg = SessionStateUpdate(
            state=state,
            stop_reason=stop_reason,
            timestamp_ms=self.now_ms(),
            rtms_session_id=self.session_id,
        ).to_wire()
        if await self.send_signaling(msg):
            self.stats.state_updates.append((9, state, stop_reason))
            self.changed()

    @property
    def session_id(self) -> str:
        return "sess-" + self.scenario.rtms_stream_id[:12]

    # --- webhooks ----------------------------------------------------------------------------

    def _id_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {self.scenario.product.id_key: self.scenario.instance_id}
        if self.scenario.product is Product.SESSION:
            fields["session_key"] = "sim-session-key"
        fields["rtms_stream_id"] = self.scenario.rtms_stream_id
        return fields

    def _started_payload(self) -> dict[str, Any]:
        payload = self._id_fields()
        if not self.scenario.product.is_voice_call:
            payload["operator_id"] = "sim-operator"
        payload["server_urls"] = self.server_urls
        return payload

    def _event_name(self, kind: str) -> str:
        prefix = self.scenario.product.webhook_prefix
        if self.scenario.product is Product.PHONE and self.options.phone_call_event_names:
            prefix += "call_"
        return f"{prefix}rtms_{kind}"

    def lifecycle_payload(self, reason: str | None = None) -> dict[str, Any]:
        """An ``rtms.start_failed`` / ``rtms.concurrency_*`` payload naming this engagement.

        Zoom documents no payload for ``rtms.start_failed`` (rtms-protocol §16): it carries
        the ids the recorder must match on, and a reason.
        """
        payload = self._id_fields()
        payload["operator_id"] = "sim-operator"
        if reason is not None:
            payload["reason"] = reason
        return payload

    async def post_lifecycle(self, event: str, payload: Mapping[str, Any]) -> None:
        """Deliver a signed lifecycle webhook (with Zoom's retries, like every other one)."""
        event_ts = self._wall_ms()
        body = self._sender.body_for(event, event_ts, payload)
        await self._start_delivery(event, event_ts, body, retry=True, first_attempt=1)

    async def post_webhook(self, kind: str, payload: Mapping[str, Any], event_ts: int) -> None:
        """Deliver ``*.rtms_<kind>``; returns after the first attempt, retries continue behind."""
        event = self._event_name(kind)
        body_payload: Mapping[str, Any] = payload
        if self.options.webhook_nested:
            body_payload = {"account_id": "sim-account", "object": dict(payload)}
        body = self._sender.body_for(event, event_ts, body_payload)
        self.webhook_bodies[kind] = (event_ts, body)
        await self._start_delivery(event, event_ts, body, retry=True, first_attempt=1)

    async def _start_delivery(
        self, event: str, event_ts: int, body: bytes, *, retry: bool, first_attempt: int
    ) -> None:
        if self._sender.sink is None:
            return
        first_done = trio.Event()

        def on_delivery(delivery: Delivery) -> None:
            self.stats.webhooks.append(
                WebhookRecord(
                    delivery.event,
                    delivery.event_ts,
                    delivery.attempt,
                    delivery.http_status,
                    delivery.body,
                )
            )
            first_done.set()
            self.changed()

        async def deliver() -> None:
            await self._sender.deliver(
                event, event_ts, body, on_delivery, retry=retry, first_attempt=first_attempt
            )

        # Retries outlive the engagement (a late retried rtms_stopped is realistic), so they
        # run in the simulator's nursery.
        self._webhook_nursery.start_soon(deliver)
        await first_done.wait()

    async def resend_webhook(self, kind: str, *, as_retry: bool) -> None:
        """Send the last ``kind`` body again, byte for byte (duplicate, or a Zoom retry)."""
        if kind not in self.webhook_bodies:
            return
        event_ts, body = self.webhook_bodies[kind]
        if as_retry and self._sender.retry_delays_s:
            await trio.sleep(self._sender.retry_delays_s[0])
        attempts = sum(1 for w in self.stats.webhooks if w.body == body)
        await self._start_delivery(
            self._event_name(kind), event_ts, body, retry=False, first_attempt=attempts + 1
        )

    # --- faults and lifecycle actions ---------------------------------------------------------

    async def run_step(self, step: Step) -> None:
        """Run one scripted step now (tests may call it directly, outside the timeline)."""
        if self.options.on_step is not None:
            self.options.on_step(self.scenario, step)
        await run_step(self, step)
        self.changed()

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn`` in the engagement's nursery (cancelled when the engagement ends)."""
        if self._nursery is not None and not self.stopping:
            self._nursery.start_soon(fn)

    async def pause(self) -> None:
        if self.paused:
            return
        self.paused = True
        await self.send_session_state(SessionState.PAUSED)
        await self.send_stream_state(StreamState.PAUSED)

    async def resume(self) -> None:
        if not self.paused:
            return
        self.paused = False
        await self.send_session_state(SessionState.RESUMED)
        await self.send_stream_state(StreamState.RESUMED)

    async def _close_media(self, code: int, kind: str | None = None) -> None:
        for conn in list(self.media):
            if kind is not None and kind not in conn.media:
                continue
            conn.closed_by_server = True
            self.feed.detach(conn)
            if conn in self.unacked:
                self.unacked.remove(conn)
            await conn.close(code)

    async def drop_media(
        self,
        kind: str | None = None,
        *,
        reason: int = StopReason.DATA_CONNECTION_INTERRUPTED,
        lose_s: float = 0.0,
    ) -> None:
        """Close the media sockets (those carrying ``kind``, or all), send EVENT_UPDATE 7 +
        STREAM_STATE 2/14 on signaling, and wait the media grace for a reconnect.

        ``lose_s`` seconds of audio from the drop on are lost instead of buffered, as when
        Zoom's buffer does not survive an interruption: the recorder must show a gap there.
        """
        self.feed.lose(round(lose_s * 1000 / FRAME_MS))
        await self._close_media(DROP_CLOSE_CODE, kind)
        await self.media_interrupted(reason)

    async def media_interrupted(self, reason: int) -> None:
        self.stats.interruptions += 1
        await self.send_event(
            EventUpdate(EventType.MEDIA_CONNECTION_INTERRUPTED, self.now_ms()), automatic=True
        )
        await self.send_stream_state(StreamState.INTERRUPTED, reason)
        end = (
            StopReason.KEEP_ALIVE_TIMEOUT
            if reason == StopReason.KEEP_ALIVE_TIMEOUT
            else StopReason.AWAIT_RECONNECTION_TIMEOUT
        )
        self._await_reconnect(self.profile.media_grace_s, end, media=True)

    async def drop_signaling(
        self, *, reason: int = StopReason.SIGNAL_CONNECTION_INTERRUPTED
    ) -> None:
        """Close every socket, send ``*.rtms_interrupted``, wait for the client to come back."""
        for conn in list(self.signaling):
            conn.closed_by_server = True
            await conn.close(DROP_CLOSE_CODE)
        self.signaling.clear()
        await self._close_media(DROP_CLOSE_CODE)
        await self.signaling_interrupted(reason)

    async def signaling_interrupted(self, reason: int) -> None:
        self.stats.interruptions += 1
        # Signaling is gone, so media goes too (rtms-protocol §9.2 scenario 2).
        await self._close_media(DROP_CLOSE_CODE)
        payload = self._id_fields()
        await self.post_webhook("interrupted", payload, self._wall_ms())
        end = (
            StopReason.KEEP_ALIVE_TIMEOUT
            if reason == StopReason.KEEP_ALIVE_TIMEOUT
            else StopReason.AWAIT_RECONNECTION_TIMEOUT
        )
        self._await_reconnect(self.profile.signaling_grace_s, end, media=False)

    async def failover(self) -> None:
        """New server URLs (a new endpoint path), a new ``rtms_started`` with a new ``event_ts``."""
        self.stats.failovers += 1
        self.generation += 1
        for conn in list(self.signaling):
            conn.closed_by_server = True
            await conn.close(FAILOVER_CLOSE_CODE)
        self.signaling.clear()
        await self._close_media(FAILOVER_CLOSE_CODE)
        event_ts = max(self._wall_ms(), self._event_ts + 1)
        self._event_ts = event_ts
        self.started_webhook_payload = self._started_payload()
        await self.post_webhook("started", self.started_webhook_payload, event_ts)
        self._await_reconnect(
            self.profile.signaling_grace_s, StopReason.AWAIT_RECONNECTION_TIMEOUT, media=False
        )

    def _await_reconnect(self, grace_s: float, end_reason: int, *, media: bool) -> None:
        if self.stopping or self._nursery is None:
            return
        self._grace_token += 1
        token = self._grace_token
        self._reconnected = trio.Event()
        assert self._nursery is not None
        self._nursery.start_soon(self._grace, token, self.scaled(grace_s), end_reason, media)

    async def _grace(self, token: int, grace_s: float, end_reason: int, media: bool) -> None:
        reconnected = self._reconnected
        with trio.move_on_after(grace_s):
            await reconnected.wait()
            return
        if token == self._grace_token and not self.stopping:
            logger.info("stream %s: no reconnect within %.0f s", self.scenario.name, grace_s)
            await self.stop(end_reason)

    def note_reconnected(self, *, media: bool) -> None:
        """A handshake (signaling) or a ready ack (media) after an interruption."""
        if not self._reconnected.is_set() and self.stats.interruptions + self.stats.failovers:
            self.stats.reconnects += 1
        self._reconnected.set()

    async def stop(
        self, reason: int, *, webhook_first: bool = False, session_stop_reason: int | None = None
    ) -> None:
        """End the stream: STREAM_STATE 4 + SESSION_STATE 5, close 1000, ``*.rtms_stopped``."""
        if self.stopping:
            return
        self.stopping = True
        self.stats.stop_reason = reason
        with trio.CancelScope(shield=True):
            if webhook_first:
                await self._post_stopped(reason)
            await self.send_stream_state(StreamState.TERMINATED, reason)
            await self.send_session_state(
                SessionState.STOPPED, reason if session_stop_reason is None else session_stop_reason
            )
            for conn in [*self.signaling, *self.media]:
                conn.closed_by_server = True
                await conn.close(self.profile.stop_close_code)
            if not webhook_first:
                await self._post_stopped(reason)
        self.stopped.set()
        self.changed()

    async def _post_stopped(self, reason: int) -> None:
        if self._stopped_webhook_sent:
            return
        self._stopped_webhook_sent = True
        payload = {**self._id_fields(), "stop_reason": reason}
        await self.post_webhook("stopped", payload, self._wall_ms())
