"""The connection engine of one RTMS stream: sockets, recovery and the interruption ledger.

Rules (rtms-protocol.md §9.2 and Appendix B):

1. One supervisor owns the signaling socket and runs *generations*: connect signaling, then the
   media sockets it names. A generation ends when signaling is lost, a webhook trigger arrives
   (failover, ``rtms_interrupted``) or the stream ends. Generations never overlap, so two
   signaling connections never coexist.
2. Each media socket has a slot that reconnects only that socket after it is lost or reported
   interrupted (event 7, stream state 2/14). A trigger for a slot that is already recovering,
   or connected for less than ``media_trigger_guard_s``, is a duplicate and ignored.
3. Every connect and handshake holds one lock: at most one attempt in flight per stream.
4. Backoff is ``backoff_initial_s`` doubling to ``backoff_max_s``, reset by a successful
   handshake. Failover reconnects at once. What follows a loss (reconnect after how long, end,
   drop an optional socket) is decided by the pure ``_recovery``; what follows a refused
   handshake by the pure ``_refusals``.
5. No reconnect after the stream ended (stream state 4, session state 5, STREAM_CLOSE_RESP,
   ``stopped()``). A refused handshake is retried, drops an optional socket or ends the
   stream as ``_refusals`` decides: only audio is essential, only signature and authentication
   failures are final at once.
6. Readers never wait for the consumer (``_outlet``); keep-alives are answered in the reader.
7. Every ``Interrupted`` is followed by ``Recovered`` or ``StreamEnded``.
"""

from __future__ import annotations

import enum
import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio
from trio_websocket import WebSocketConnection

from recorder.errors import (
    TransportError,
    UnsupportedProtocolVersion,
    UpgradeRefused,
    UrlNotAllowed,
)
from recorder.products import Product
from recorder.rtms._enums import MediaType, Rejection, classify_stop_reason, stop_reason_name
from recorder.rtms._enums import StopClass as _StopClass
from recorder.rtms._outlet import EventOutlet
from recorder.rtms._protocol_events import (
    ConnectionEnded,
    ConnState,
    HandshakeRefused,
    IgnoredMessage,
    KeepAliveAnswered,
    MediaInterruption,
    MediaReady,
    PauseChanged,
    ProtocolEvent,
    ProtocolViolation,
    SignalingInterruptionNotice,
    SignalingReady,
    StateReport,
    StreamTerminated,
    VideoFrame,
    VideoSubscriptionResult,
)
from recorder.rtms._recovery import Recovery, Step
from recorder.rtms._refusals import RefusalAction, RefusalLedger
from recorder.rtms._socket import close_ws, connect, flush, pump
from recorder.rtms._video_outlet import VideoOutlet
from recorder.rtms.events import (
    AudioPacket,
    ChatMessage,
    ContactCenterEvent,
    FirstPacketTimestamp,
    GapCause,
    Interrupted,
    MediaSocketDropped,
    ParticipantEvent,
    Paused,
    Recovered,
    Resumed,
    StreamEnded,
    StreamStateChanged,
    TranscriptMessage,
)
from recorder.rtms.messages import ChatParams, MediaParams
from recorder.rtms.protocol import MediaConnection, SignalingConnection, _Connection
from recorder.rtms.signature import handshake_signature
from recorder.rtms.urls import MediaSocketPlan, check_url, plan_media_sockets

if TYPE_CHECKING:
    from recorder.rtms.client import ClientConfig, RtmsStats, StreamTarget

logger = logging.getLogger(__name__)


#: Interruption ids, unique in the process so a stale ``Recovered`` never closes another's.
_INTERRUPTION_IDS = itertools.count(1)
#: Capture events the sans-IO core produces on signaling, handed on as they are.
_FORWARDED = (ParticipantEvent, ContactCenterEvent, FirstPacketTimestamp, StreamStateChanged)


class _Kind(enum.Enum):
    LOST = "lost"
    REJECTED = "rejected"
    FAILOVER = "failover"
    ENDED = "ended"
    #: An optional media socket was refused for good (``_refusals`` rule 2).
    DROPPED = "dropped"


@dataclass(frozen=True, slots=True)
class _Outcome:
    kind: _Kind
    cause: GapCause = GapCause.SIGNALING_INTERRUPTED
    detail: str = ""
    status_code: int | None = None
    reason: str = ""


class _MediaSlot:
    def __init__(self, plan: MediaSocketPlan, recovery: Recovery, ledger: RefusalLedger) -> None:
        self.plan = plan
        self.recovery = recovery
        self.ledger = ledger
        #: Only audio is essential: a socket without audio may be dropped, never the stream.
        self.essential = ledger.essential
        self.dropped = False
        self.ready = False
        self.connected_at = -math.inf
        self.scope: trio.CancelScope | None = None
        self.interrupted_wall_ms: int | None = None
        self.interruption_id = 0
        self.duplicates = 0


class Engine:
    def __init__(
        self,
        target: StreamTarget,
        config: ClientConfig,
        outlet: EventOutlet,
        stats: RtmsStats,
        wall_ms: Callable[[], int],
        io_nursery: trio.Nursery,
    ) -> None:
        self._io_nursery = io_nursery
        #: Where video / screen-share frames go when they are recorded (``open_rtms_stream``).
        self.video_outlet: VideoOutlet | None = None
        #: Individual video (``data_opt`` 4): subscribe this user on every ready video socket.
        self.video_subscription = ""
        self._target = target
        self._config = config
        self._outlet = outlet
        self._stats = stats
        self._wall_ms = wall_ms
        self._urls = target.server_urls
        self._signature = handshake_signature(
            target.client_id, target.client_secret, target.instance_id, target.rtms_stream_id
        )
        # Contact Center and Zoom Phone: per-channel audio, the voice event namespace.
        self._contact_center = target.product.is_voice_call
        self._connect_lock = trio.Lock()
        self._root_scope = trio.CancelScope()
        self._generation_scope: trio.CancelScope | None = None
        self._backoff_scope: trio.CancelScope | None = None
        self._trigger: _Outcome | None = None
        self._signaling: SignalingConnection | None = None
        self._signaling_ws: WebSocketConnection | None = None
        self._slots: list[_MediaSlot] = []
        #: Optional sockets refused for good: later generations do not ask for them again.
        self._dropped_sockets: set[str] = set()
        self._generation_ready = False
        #: (wall_ms, cause) of a full interruption not yet recovered.
        self._interruption: tuple[int, GapCause] | None = None
        #: Pairs each ``Interrupted`` with its ``Recovered`` (capture names gaps by it).
        self._interruption_id = 0
        #: (id, wall_ms) of media interruptions that the full one swallowed: their sockets are
        #: gone, so they recover with it.
        self._subsumed: list[tuple[int, int]] = []
        self._recovery = Recovery(
            initial_s=config.backoff_initial_s,
            max_s=config.backoff_max_s,
            give_up_after_s=config.give_up_after_s,
        )
        self._signaling_refusals = RefusalLedger(
            essential=True,
            per_code_limit=config.refusal_retry_limit,
            duplicate_limit=config.duplicate_retry_limit,
        )
        #: Wall ms when the current generation's signaling handshake succeeded: an
        #: ``rtms_interrupted`` stamped before it is about an earlier generation (a late retry).
        self._generation_started_ms: int | None = None
        self._paused = False
        self._closing = False
        #: Set when the server ended the stream: the media sockets are read to their end first.
        self._terminating: tuple[int | None, str] | None = None
        self._media_changed = trio.Event()
        self._ended_event = trio.Event()
        self._finished = trio.Event()
        self._log = f"stream_id={target.rtms_stream_id}"

    @property
    def ended(self) -> bool:
        return self._ended_event.is_set()

    # --- controls (called by RtmsStream) -----------------------------------------------------

    async def failover(self, server_urls: tuple[str, ...]) -> None:
        for url in server_urls:
            check_url(
                url,
                allowed_hosts=self._config.allowed_hosts,
                allow_insecure_loopback=self._config.allow_insecure_loopback,
            )
        if self.ended:
            return
        if server_urls:
            self._urls = server_urls
        if self._interruption is not None:
            # Already down (the old server's sockets died first): that was the failover.
            self._interruption = (self._interruption[0], GapCause.FAILOVER)
        logger.info("rtms failover %s urls=%d", self._log, len(self._urls))
        self._trip(_Outcome(_Kind.FAILOVER, GapCause.FAILOVER, "rtms_started for a live stream"))
        if self._backoff_scope is not None:
            self._backoff_scope.cancel()
        await trio.lowlevel.checkpoint()

    def signaling_interrupted(
        self, server_urls: tuple[str, ...] = (), *, event_ts_ms: int | None = None
    ) -> None:
        """Scenario 2. ``server_urls`` from the webhook win over the stored ones (§16);
        ``event_ts_ms`` older than the live generation means that generation already recovered
        from what the webhook reports, so it is left alone."""
        try:
            for url in server_urls:
                check_url(
                    url,
                    allowed_hosts=self._config.allowed_hosts,
                    allow_insecure_loopback=self._config.allow_insecure_loopback,
                )
        except UrlNotAllowed as exc:
            # The stored URLs passed the policy: reconnect there rather than not at all.
            logger.warning("rtms_interrupted URLs refused %s: %s", self._log, exc)
            server_urls = ()
        if self.ended:
            return
        if server_urls:
            self._urls = server_urls
        if self._generation_scope is None or not self._generation_ready:
            # Already recovering (backoff or reconnecting): a duplicate trigger.
            return
        started = self._generation_started_ms
        if event_ts_ms is not None and started is not None and event_ts_ms < started:
            logger.info(
                "rtms_interrupted %s from before the live connection (%d ms earlier): ignored",
                self._log,
                started - event_ts_ms,
            )
            return
        logger.info("rtms_interrupted %s: redoing signaling and media", self._log)
        self._trip(_Outcome(_Kind.LOST, GapCause.SIGNALING_INTERRUPTED, "rtms_interrupted"))

    def stopped(self, reason: int | None) -> None:
        """``*.rtms_stopped``: never reconnect, but read what the media sockets still hold.

        The webhook can overtake the media (§8.3: ordering is not guaranteed), so the stream
        ends the way a server-ended one does: after the bounded drain of ``_terminated``.
        """
        self._terminated(reason, stop_reason_name(reason))

    async def close(self, *, graceful: bool) -> None:
        if self.ended:
            return
        signaling, ws = self._signaling, self._signaling_ws
        asked = False
        if (
            graceful
            and signaling is not None
            and ws is not None
            and signaling.state is ConnState.OPEN
        ):
            self._closing = asked = True
            signaling.request_close()
            await self._flush(ws, signaling)
            with trio.move_on_after(self._config.close_timeout_s):
                await self._ended_event.wait()
        if not self.ended:
            # No STREAM_CLOSE_RESP in time (or no signaling to ask on): end on our side.
            if asked:
                self._end(20, "RECEIVER_REQUEST_CLOSE", normal=True)
            else:
                self._end(None, "LOCAL_CLOSE", normal=True)

    async def subscribe_video(self, user_id: str, subscribe: bool) -> bool:
        """VIDEO_SUBSCRIPTION_REQ (28); False when signaling is not open right now."""
        signaling, ws = self._signaling, self._signaling_ws
        if self.ended or signaling is None or ws is None or signaling.state is not ConnState.OPEN:
            return False
        signaling.subscribe_video(user_id, subscribe, self._wall_ms())
        await self._flush(ws, signaling)
        return True

    def shutdown(self) -> None:
        if not self.ended:
            self._end(None, "LOCAL_CLOSE", normal=True)

    def _trip(self, outcome: _Outcome) -> None:
        self._trigger = outcome
        if self._generation_scope is not None:
            self._generation_scope.cancel()

    def _end(self, reason: int | None, name: str, *, normal: bool | None = None) -> None:
        if self.ended:
            return
        self._ended_event.set()
        stop_class = classify_stop_reason(reason)
        if normal is None:
            # A revoked stream ended in order; ``revoked`` carries the deletion duty.
            normal = stop_class is not _StopClass.ABNORMAL
        logger.info("rtms stream ended %s reason=%s normal=%s", self._log, name, normal)
        self._outlet.offer(
            StreamEnded(
                wall_ms=self._wall_ms(),
                reason=reason,
                reason_name=name,
                normal=normal,
                revoked=stop_class is _StopClass.REVOKED,
            )
        )
        self._root_scope.cancel()

    def _terminated(self, reason: int | None, name: str) -> None:
        """The server ended the stream (state 4 / session 5 / close response / rtms_stopped).

        Audio it sent before ending may still wait unread on the media sockets (a recorder
        running behind reads it later); cancelling now would throw it away uncounted. So the
        media sockets are read until the server closes them, bounded by ``close_timeout_s``,
        and only then does the stream end.
        """
        if self.ended or self._terminating is not None:
            return
        self._terminating = (reason, name)
        self._io_nursery.start_soon(self._drain_then_end)

    async def _media_drained(self) -> None:
        while any(slot.scope is not None for slot in self._slots):
            await self._media_changed.wait()

    async def _drain_then_end(self) -> None:
        assert self._terminating is not None
        with trio.move_on_after(self._config.close_timeout_s) as bound:
            await self._media_drained()
        if bound.cancelled_caught:
            logger.warning(
                "rtms media sockets still open %.1fs after the stream ended %s; closing them",
                self._config.close_timeout_s,
                self._log,
            )
        reason, name = self._terminating
        self._end(reason, name)

    # --- supervisor --------------------------------------------------------------------------

    async def wait_finished(self) -> None:
        """Wait until every socket of the engine is closed (bounded by the caller)."""
        await self._finished.wait()

    async def run(self) -> None:
        try:
            await self._supervise()
        finally:
            self._finished.set()

    async def _supervise(self) -> None:
        with self._root_scope:
            delay = 0.0
            while not self.ended:
                if delay > 0:
                    with trio.CancelScope() as self._backoff_scope:
                        await trio.sleep(delay)
                    self._backoff_scope = None
                self._trigger = None
                outcome = await self._run_generation()
                if self._terminating is not None:
                    # The drain task ends the stream, within its bound; never reconnect now.
                    await self._ended_event.wait()
                    return
                # The generation may have ended the stream (mypy cannot see that).
                delay = 0.0 if self._ended_event.is_set() else self._after(outcome)

    def _after(self, outcome: _Outcome) -> float:
        """Decide what follows a generation; returns the backoff before the next one."""
        self._stats.reconnects += 1
        # A media socket already down when the whole connection went counts from its own start.
        pending = [s.interrupted_wall_ms for s in self._slots if s.interrupted_wall_ms is not None]
        self._subsumed += [
            (s.interruption_id, s.interrupted_wall_ms)
            for s in self._slots
            if s.interrupted_wall_ms is not None and s.interruption_id
        ]
        if self._trigger is not None and self._trigger.kind is _Kind.FAILOVER:
            # The generation ended on its own just as the failover came: it was the failover.
            outcome = self._trigger
        self._begin_interruption(
            outcome.cause, outcome.detail, since_wall_ms=min(pending, default=None)
        )
        step = self._recovery.lost(
            trio.current_time(), failover=outcome.kind is _Kind.FAILOVER, closing=self._closing
        )
        if step.step is not Step.RECONNECT:
            self._end(step.reason, step.name, normal=step.normal)
            return 0.0
        return step.delay_s

    def _begin_interruption(
        self, cause: GapCause, detail: str, *, since_wall_ms: int | None = None
    ) -> None:
        if self._interruption is not None:
            return
        wall = self._wall_ms()
        self._interruption = (wall if since_wall_ms is None else since_wall_ms, cause)
        self._interruption_id = next(_INTERRUPTION_IDS)
        if self.video_outlet is not None:
            self.video_outlet.note_cause(cause)
        self._outlet.offer(
            Interrupted(
                wall_ms=wall,
                cause=cause,
                media=(),
                detail=detail,
                interruption_id=self._interruption_id,
            )
        )

    async def _run_generation(self) -> _Outcome:
        self._generation_ready = False
        self._generation_started_ms = None
        self._slots = []
        outcome = _Outcome(_Kind.LOST)
        with trio.CancelScope() as scope:
            self._generation_scope = scope
            try:
                async with trio.open_nursery() as nursery:
                    outcome = await self._run_signaling(nursery)
                    if self._terminating is not None:
                        with trio.move_on_after(self._config.close_timeout_s):
                            await self._media_drained()
                    nursery.cancel_scope.cancel()
            finally:
                self._generation_scope = None
                self._signaling = None
                self._signaling_ws = None
        if scope.cancelled_caught and self._trigger is not None:
            return self._trigger
        return outcome

    async def _connect(self, url: str, *, media: bool) -> WebSocketConnection:
        return await connect(self._io_nursery, url, self._config, media=media)

    async def _close_ws(self, ws: WebSocketConnection) -> None:
        await close_ws(ws, self._config.close_timeout_s)

    async def _flush(self, ws: WebSocketConnection, conn: _Connection) -> None:
        await flush(ws, conn)

    async def _pump(
        self,
        ws: WebSocketConnection,
        conn: _Connection,
        handle: Callable[[list[ProtocolEvent]], None],
        *,
        until_open: bool = False,
    ) -> None:
        await pump(ws, conn, handle, self._config.handshake_timeout_s, until_open=until_open)

    # --- signaling ---------------------------------------------------------------------------

    async def _run_signaling(self, nursery: trio.Nursery) -> _Outcome:
        conn = SignalingConnection(
            rtms_stream_id=self._target.rtms_stream_id,
            instance_id=self._target.instance_id,
            instance_key=self._target.instance_key,
            signature=self._signature,
            contact_center=self._contact_center,
            event_code=self._target.product is Product.PHONE,
            subscribe_events=self._config.events_for(self._target.product),
            buffer_data=self._config.buffer_data,
            watchdog_s=self._config.watchdog_s,
        )
        result: list[_Outcome] = []
        handle = self._signaling_handler(conn, nursery, result)
        async with self._connect_lock:
            try:
                ws = await self._connect_first()
            except UpgradeRefused as exc:
                if 400 <= exc.http_status < 500:
                    # The server says this stream is not there (ended, or a stale URL): retrying
                    # the same URL cannot help. A failover brings new URLs through a webhook,
                    # and the service's rejoin loop has its own back-off.
                    logger.warning("rtms signaling refused %s: %s", self._log, exc)
                    self._end(None, f"SIGNALING_REFUSED_HTTP_{exc.http_status}", normal=False)
                return _Outcome(_Kind.LOST, self._lost_cause(), str(exc))
            except TransportError as exc:
                logger.warning("rtms signaling connect failed %s: %s", self._log, exc)
                return _Outcome(_Kind.LOST, self._lost_cause(), str(exc))
            self._stats.signaling_connects += 1
            self._stats.open_signaling += 1
            self._stats.max_open_signaling = max(
                self._stats.max_open_signaling, self._stats.open_signaling
            )
            try:
                self._signaling, self._signaling_ws = conn, ws
                conn.initiate(trio.current_time())
                await self._pump(ws, conn, handle, until_open=True)
            except BaseException:
                self._stats.open_signaling -= 1
                await self._close_ws(ws)
                raise
        try:
            if conn.state is ConnState.OPEN:
                await self._pump(ws, conn, handle)
        finally:
            self._stats.open_signaling -= 1
            await self._close_ws(ws)
        if result:
            return result[0]
        return _Outcome(_Kind.LOST, self._lost_cause(), "signaling closed")

    def _lost_cause(self) -> GapCause:
        if self._interruption is not None:
            return self._interruption[1]
        return GapCause.SIGNALING_INTERRUPTED

    async def _connect_first(self) -> WebSocketConnection:
        last: TransportError | None = None
        for url in self._urls:
            try:
                return await self._connect(url, media=False)
            except UrlNotAllowed:
                raise
            except TransportError as exc:
                last = exc
        assert last is not None
        raise last

    def _signaling_handler(
        self, conn: SignalingConnection, nursery: trio.Nursery, result: list[_Outcome]
    ) -> Callable[[list[ProtocolEvent]], None]:
        def handle(events: list[ProtocolEvent]) -> None:
            for event in events:
                if isinstance(event, SignalingReady):
                    self._signaling_ready(event, nursery)
                elif isinstance(event, HandshakeRefused):
                    logger.warning(
                        "rtms signaling handshake refused %s status=%s reason=%r",
                        self._log,
                        event.error.status_code,
                        event.error.reason,
                    )
                    decision = self._signaling_refusals.on_refusal(
                        event.error.status_code, event.rejection
                    )
                    if decision.action is RefusalAction.RETRY:
                        result.append(
                            _Outcome(_Kind.REJECTED, self._lost_cause(), str(event.error))
                        )
                    else:
                        logger.warning(
                            "rtms signaling refused for good %s: %s", self._log, decision.why
                        )
                        self._end(None, _refused_name(event.rejection.name), normal=False)
                elif isinstance(event, ConnectionEnded):
                    if not self.ended:
                        logger.info(
                            "rtms signaling ended before the stream %s cause=%s %s",
                            self._log,
                            event.cause,
                            event.detail,
                        )
                    result.append(
                        _Outcome(_Kind.LOST, self._lost_cause(), f"signaling {event.cause}")
                    )
                elif isinstance(event, ProtocolViolation) and _v2_error(event) is not None:
                    action = _v2_action(self._signaling_refusals, _v2_error(event))
                    logger.error(
                        "rtms signaling answered in V2 %s (%s): %s",
                        self._log,
                        action.value,
                        event.error,
                    )
                    if action is RefusalAction.RETRY:
                        result.append(_Outcome(_Kind.REJECTED, self._lost_cause(), "V2 answer"))
                    else:
                        self._end(None, "UNSUPPORTED_PROTOCOL_VERSION", normal=False)
                elif isinstance(event, MediaInterruption):
                    self._media_trigger(event)
                else:
                    self._common(event, "signaling")

        return handle

    def _signaling_ready(self, event: SignalingReady, nursery: trio.Nursery) -> None:
        self._signaling_refusals.on_success()
        self._generation_started_ms = self._wall_ms()
        self._recovery.handshake_ok()
        wanted = self._config.wanted_media(self._target.product)
        plans = plan_media_sockets(
            event.server_urls,
            wanted,
            self._config.layout,
            prefer_audio_url=self._contact_center,
        )
        if not plans:
            logger.warning("rtms no media URL for the wanted media %s", self._log)
            self._end(None, "NO_MEDIA_URL", normal=False)
            return
        for plan in plans:
            if plan.name in self._dropped_sockets:
                continue
            essential = "audio" in plan.carries or not (wanted & MediaType.AUDIO)
            ledger = RefusalLedger(
                essential=essential,
                per_code_limit=self._config.refusal_retry_limit,
                duplicate_limit=self._config.duplicate_retry_limit,
            )
            recovery = Recovery(
                initial_s=self._config.backoff_initial_s,
                max_s=self._config.backoff_max_s,
                give_up_after_s=self._config.give_up_after_s,
                essential=essential,
            )
            slot = _MediaSlot(plan, recovery, ledger)
            self._slots.append(slot)
            nursery.start_soon(self._run_slot, slot)

    # --- media -------------------------------------------------------------------------------

    def _media_params(self, plan: MediaSocketPlan) -> MediaParams:
        config, carries = self._config, plan.carries
        return MediaParams(
            audio=config.audio_params if "audio" in carries else None,
            video=config.video_params if "video" in carries else None,
            deskshare=config.deskshare_params if "deskshare" in carries else None,
            transcript=config.transcript_params if "transcript" in carries else None,
            chat=ChatParams() if "chat" in carries else None,
        )

    async def _run_slot(self, slot: _MediaSlot) -> None:
        delay = 0.0
        while True:
            if delay > 0:
                await trio.sleep(delay)
            outcome = await self._run_media_socket(slot)
            slot.ready = False
            if outcome.kind is _Kind.ENDED or self._terminating is not None:
                return
            if outcome.kind is _Kind.DROPPED:
                self._drop_slot(slot, outcome)
                return
            if outcome.kind is _Kind.REJECTED:
                slot.duplicates += 1
            # During a full interruption the stream's own clock and events cover this socket.
            own = self._interruption is None
            if slot.interrupted_wall_ms is None and own:
                slot.interrupted_wall_ms = self._wall_ms()
                slot.interruption_id = next(_INTERRUPTION_IDS)
                if self.video_outlet is not None and {"video", "deskshare"} & set(
                    slot.plan.carries
                ):
                    self.video_outlet.note_cause(GapCause.MEDIA_INTERRUPTED)
                self._outlet.offer(
                    Interrupted(
                        wall_ms=slot.interrupted_wall_ms,
                        cause=GapCause.MEDIA_INTERRUPTED,
                        media=slot.plan.carries,
                        detail=outcome.detail,
                        interruption_id=slot.interruption_id,
                    )
                )
            step = slot.recovery.lost(trio.current_time(), clock=own)
            if step.step is Step.DROP:
                self._drop_slot(slot, _Outcome(_Kind.DROPPED, detail=step.name))
                return
            if step.step is Step.END:
                self._end(step.reason, step.name, normal=step.normal)
                return
            self._stats.reconnects += 1
            delay = step.delay_s

    def _drop_slot(self, slot: _MediaSlot, outcome: _Outcome) -> None:
        """Rule 2 of ``_refusals``: go on without an optional socket, and say so in the record."""
        slot.dropped = True
        self._dropped_sockets.add(slot.plan.name)
        self._stats.media_sockets_dropped += 1
        logger.warning(
            "rtms optional media socket dropped %s socket=%s status=%s: %s",
            self._log,
            slot.plan.name,
            outcome.status_code,
            outcome.detail,
        )
        self._outlet.offer(
            MediaSocketDropped(
                wall_ms=self._wall_ms(),
                media=slot.plan.carries,
                status_code=outcome.status_code,
                reason=outcome.reason,
                detail=outcome.detail,
            )
        )
        # The generation may have waited only for this socket.
        self._check_generation_ready()

    async def _run_media_socket(self, slot: _MediaSlot) -> _Outcome:
        conn = MediaConnection(
            rtms_stream_id=self._target.rtms_stream_id,
            instance_id=self._target.instance_id,
            instance_key=self._target.instance_key,
            signature=self._signature,
            media_type=slot.plan.media_type,
            media_params=self._media_params(slot.plan),
            contact_center=self._contact_center,
            watchdog_s=self._config.watchdog_s,
        )
        result: list[_Outcome] = []
        handle = self._media_handler(slot, conn, result)
        with trio.CancelScope() as scope:
            slot.scope = scope
            async with self._connect_lock:
                try:
                    ws = await self._connect(slot.plan.url, media=True)
                except UrlNotAllowed as exc:
                    logger.warning("rtms media URL refused %s: %s", self._log, exc)
                    self._end(None, "URL_NOT_ALLOWED", normal=False)
                    return _Outcome(_Kind.ENDED)
                except TransportError as exc:
                    return _Outcome(_Kind.LOST, GapCause.MEDIA_INTERRUPTED, str(exc))
                self._stats.media_connects += 1
                try:
                    conn.initiate(trio.current_time())
                    await self._pump(ws, conn, handle, until_open=True)
                except BaseException:
                    await self._close_ws(ws)
                    raise
            try:
                if conn.state is ConnState.OPEN:
                    await self._media_ready(slot, conn)
                    await self._pump(ws, conn, handle)
            finally:
                slot.scope = None
                self._media_changed.set()
                self._media_changed = trio.Event()
                await self._close_ws(ws)
        if scope.cancelled_caught:
            return _Outcome(_Kind.LOST, GapCause.MEDIA_INTERRUPTED, "media interruption reported")
        if result:
            return result[0]
        return _Outcome(_Kind.LOST, GapCause.MEDIA_INTERRUPTED, "media socket closed")

    async def _media_ready(self, slot: _MediaSlot, conn: MediaConnection) -> None:
        signaling, ws = self._signaling, self._signaling_ws
        if signaling is None or ws is None or signaling.state is not ConnState.OPEN:
            return
        signaling.client_ready()
        if self.video_subscription and "video" in slot.plan.carries:
            # No video flows in individual mode until subscribed, after the media handshake.
            signaling.subscribe_video(self.video_subscription, True, self._wall_ms())
        await self._flush(ws, signaling)
        slot.ready = True
        slot.connected_at = trio.current_time()
        slot.duplicates = 0
        slot.ledger.on_success()
        attempts = slot.recovery.recovered()
        if slot.interrupted_wall_ms is not None:
            self._outlet.offer(
                Recovered(
                    wall_ms=self._wall_ms(),
                    interrupted_wall_ms=slot.interrupted_wall_ms,
                    cause=GapCause.MEDIA_INTERRUPTED,
                    attempts=attempts,
                    interruption_id=slot.interruption_id,
                )
            )
            slot.interrupted_wall_ms = None
        self._check_generation_ready()

    def _check_generation_ready(self) -> None:
        """The connection is back once every essential socket is (optional ones follow alone)."""
        if self._generation_ready or not self._slots:
            return
        if all(s.ready for s in self._slots if s.essential and not s.dropped):
            self._generation_ready = True
            if self._interruption is not None:
                interrupted_wall, cause = self._interruption
                attempts = max(1, self._recovery.recovered())
                recovered_wall = self._wall_ms()
                for media_id, media_wall in self._subsumed:
                    self._outlet.offer(
                        Recovered(
                            wall_ms=recovered_wall,
                            interrupted_wall_ms=media_wall,
                            cause=GapCause.MEDIA_INTERRUPTED,
                            attempts=attempts,
                            interruption_id=media_id,
                        )
                    )
                self._subsumed = []
                self._outlet.offer(
                    Recovered(
                        wall_ms=recovered_wall,
                        interrupted_wall_ms=interrupted_wall,
                        cause=cause,
                        attempts=attempts,
                        interruption_id=self._interruption_id,
                    )
                )
                self._interruption = None

    def _media_handler(
        self, slot: _MediaSlot, conn: MediaConnection, result: list[_Outcome]
    ) -> Callable[[list[ProtocolEvent]], None]:
        stats = self._stats
        offer = self._outlet.offer
        frames = stats.frames

        def handle(events: list[ProtocolEvent]) -> None:
            for event in events:
                if isinstance(event, AudioPacket):
                    frames["audio"] += 1
                    offer(event)
                elif isinstance(event, TranscriptMessage | ChatMessage):
                    frames["transcript" if isinstance(event, TranscriptMessage) else "chat"] += 1
                    offer(event)
                elif isinstance(event, MediaReady):
                    if event.payload_encrypted:
                        logger.warning(
                            "rtms media handshake claims payload_encrypted %s socket=%s",
                            self._log,
                            slot.plan.name,
                        )
                elif isinstance(event, HandshakeRefused):
                    logger.warning(
                        "rtms media handshake refused %s socket=%s status=%s reason=%r",
                        self._log,
                        slot.plan.name,
                        event.error.status_code,
                        event.error.reason,
                    )
                    decision = slot.ledger.on_refusal(event.error.status_code, event.rejection)
                    if decision.action is RefusalAction.RETRY:
                        result.append(
                            _Outcome(_Kind.REJECTED, GapCause.MEDIA_INTERRUPTED, str(event.error))
                        )
                    elif decision.action is RefusalAction.DROP:
                        result.append(
                            _Outcome(
                                _Kind.DROPPED,
                                GapCause.MEDIA_INTERRUPTED,
                                decision.why,
                                event.error.status_code,
                                event.error.reason,
                            )
                        )
                    else:
                        logger.warning(
                            "rtms media refused for good %s socket=%s: %s",
                            self._log,
                            slot.plan.name,
                            decision.why,
                        )
                        self._end(
                            None, "MEDIA_" + _refused_name(event.rejection.name), normal=False
                        )
                        result.append(_Outcome(_Kind.ENDED))
                elif isinstance(event, ConnectionEnded):
                    result.append(
                        _Outcome(_Kind.LOST, GapCause.MEDIA_INTERRUPTED, f"media {event.cause}")
                    )
                elif isinstance(event, ProtocolViolation) and _v2_error(event) is not None:
                    action = _v2_action(slot.ledger, _v2_error(event))
                    logger.error(
                        "rtms media answered in V2 %s socket=%s (%s): %s",
                        self._log,
                        slot.plan.name,
                        action.value,
                        event.error,
                    )
                    detail = str(event.error)
                    if action is RefusalAction.RETRY:
                        result.append(_Outcome(_Kind.REJECTED, GapCause.MEDIA_INTERRUPTED, detail))
                    elif action is RefusalAction.DROP:
                        result.append(_Outcome(_Kind.DROPPED, GapCause.MEDIA_INTERRUPTED, detail))
                    else:
                        self._end(None, "UNSUPPORTED_PROTOCOL_VERSION", normal=False)
                        result.append(_Outcome(_Kind.ENDED))
                elif isinstance(event, MediaInterruption):
                    self._media_trigger(event)
                else:
                    self._common(event, slot.plan.name)
            if conn.slow_path_frames:  # nearly always 0: no call per message
                stats.audio_slow_path += conn.take_slow_path_count()

        return handle

    def _media_trigger(self, event: MediaInterruption) -> None:
        now = trio.current_time()
        for slot in self._slots:
            if event.media_type and not (event.media_type & slot.plan.media_type):
                continue
            if not slot.ready or now - slot.connected_at < self._config.media_trigger_guard_s:
                continue
            if slot.scope is not None:
                logger.info(
                    "rtms media interrupted %s socket=%s (%s)",
                    self._log,
                    slot.plan.name,
                    event.detail,
                )
                slot.scope.cancel()

    def _common(self, event: ProtocolEvent, socket: str) -> None:
        """Events both socket kinds can produce."""
        stats = self._stats
        if isinstance(event, KeepAliveAnswered):
            stats.keepalives_answered += 1
            stats.frames["keep_alive"] += 1
        elif isinstance(event, ProtocolViolation):
            count = stats.dropped["malformed"] = stats.dropped["malformed"] + 1
            # A peer sending garbage at 50 frames/s must not flood the log: 1, 2, 4, 8, ...
            level = logging.WARNING if count & (count - 1) == 0 else logging.DEBUG
            logger.log(
                level,
                "rtms malformed frame %s socket=%s count=%d: %s",
                self._log,
                socket,
                count,
                event.error,
            )
        elif isinstance(event, IgnoredMessage):
            stats.dropped["ignored"] += 1
            logger.debug(
                "rtms ignored msg_type=%d %s socket=%s", event.type_code, self._log, socket
            )
        elif isinstance(event, VideoFrame):
            stats.frames[event.kind] += 1
            if self.video_outlet is not None:
                self.video_outlet.offer(event)
            else:
                stats.dropped["video_not_recorded"] += 1
        elif isinstance(event, PauseChanged):
            stats.frames["control"] += 1
            if event.paused and not self._paused:
                self._paused = True
                self._outlet.offer(Paused(event.timestamp_ms, self._wall_ms()))
            elif not event.paused and self._paused:
                self._paused = False
                self._outlet.offer(Resumed(event.timestamp_ms, self._wall_ms()))
        elif isinstance(event, StreamTerminated):
            self._terminated(event.reason, stop_reason_name(event.reason))
        elif isinstance(event, SignalingInterruptionNotice | StateReport | VideoSubscriptionResult):
            stats.frames["control"] += 1
            logger.info("rtms %s %s socket=%s", type(event).__name__, self._log, socket)
        elif isinstance(event, _FORWARDED):
            stats.frames["control"] += 1
            self._outlet.offer(event)
        else:
            stats.frames["control"] += 1


def _v2_error(event: ProtocolViolation) -> UnsupportedProtocolVersion | None:
    """The error of a handshake answered in RTMS V2 (the connection failed closed, §16)."""
    error = event.error
    return error if event.fatal and isinstance(error, UnsupportedProtocolVersion) else None


def _v2_action(ledger: RefusalLedger, error: UnsupportedProtocolVersion | None) -> RefusalAction:
    """An explicit V2 answer is final; a frame that is merely not JSON may have been garbage, so
    it is retried like a transient refusal, up to the ledger's limit."""
    assert error is not None
    if not error.explicit:
        return ledger.on_refusal(None, Rejection.UNREADABLE).action
    return RefusalAction.END if ledger.essential else RefusalAction.DROP


def _refused_name(rejection: str) -> str:
    if rejection == "DUPLICATE_SIGNAL":
        return "DUPLICATE_SIGNAL_REQUEST"
    return f"HANDSHAKE_REJECTED_{rejection}"


__all__ = ["Engine"]
