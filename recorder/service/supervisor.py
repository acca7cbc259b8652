"""The engagement supervisor: webhooks in, one engagement nursery per stream out.

Rules:

0. The catalog is the outbox. The ingress commits each accepted webhook's stream row together
   with its dedup key before answering 200 (``recorder.service.outbox``); what reaches ``run``
   is only a wake-up. The rejoin loop, which starts every live stream with URLs and no live
   lease, is the durable path from an acknowledged ``rtms_started`` to an engagement: a crash,
   a drain or an error between the 200 and the start loses nothing, any process picks it up.
1. A stream is recorded only under its lease (invariant 3). A ``*.rtms_started`` for a stream
   this process does not own tries the lease; the loser does nothing but remember the stream.
   Another ``rtms_started`` for a stream this process already records, with a newer
   ``event_ts``, is a failover; the same ``event_ts`` again is a retry and does nothing.
   Each start runs in its own task: one slow claim or key service never delays another call.
2. ``rtms_interrupted`` and ``rtms_stopped`` go to the local engagement if there is one; the
   catalog row was updated by the ingress in every case, so the owner learns of them even when
   the webhook reached another process of the fleet (the engagement's lease keeper watches the
   row).
   An ``rtms_interrupted`` older than the local engagement's claim is a late retry about an
   earlier connection and is ignored. An ``rtms_stopped`` for a stream no live lease covers
   ends its still-active recording as incomplete (nobody rejoins a stopped stream).
3. Streams still live whose lease is free or expired (an owner died), or still leased to this
   owner (this process restarted), are rejoined by the rejoin loop: that is the takeover after
   a crash.
4. Engagements are started in the supervisor's own nursery; one failing never touches another.
5. As a worker of ``recorder serve --workers N`` (``SupervisorSettings.work_queue``), streams
   are not claimed by whichever worker the webhook reached: the webhook only wakes this
   worker's claim loop (``recorder.service.workers``), and every worker claims its fair share
   of the waiting streams by its spare capacity from the catalog's work queue. The rejoin loop
   then only reclaims this worker's own leases after a restart; takeovers of a dead worker's
   streams are work-queue claims too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import trio

from recorder.capture.checkpoints import CheckpointCoordinator
from recorder.capture.core import CaptureConfig
from recorder.catalog.base import Lease, RecordingStatus, StreamRow
from recorder.errors import RecorderError
from recorder.rtms.client import ClientConfig
from recorder.rtms.webhook import Product, WebhookEvent, WebhookKind
from recorder.service.components import Components, now_ms
from recorder.service.engagement import Engagement, EngagementSpec
from recorder.service.ingress import AcceptedWebhook
from recorder.service.lease_keeper import DEFAULT_LEASE_TTL_S, LeaseTimers
from recorder.service.workers import ClaimLoop, WorkQueueSettings

logger = logging.getLogger(__name__)

#: Upper bound of the rejoin back-off for a stream whose engagements keep failing.
REJOIN_BACKOFF_MAX_S: Final = 60.0
#: ``end_reason`` of a recording whose stream stopped while no recorder held its lease.
OWNER_LOST_REASON: Final = "owner_lost"
#: The kinds the supervisor acts on (the ingress already wrote their stream rows).
_ACTED_ON: Final = frozenset({WebhookKind.STARTED, WebhookKind.INTERRUPTED, WebhookKind.STOPPED})


@dataclass(frozen=True, slots=True)
class SupervisorSettings:
    #: Identifies this process in leases: unique per live process, persisted per state dir so
    #: a restart reclaims at once (``recorder.service.instance``).
    owner: str
    lease_ttl_s: float = DEFAULT_LEASE_TTL_S
    rejoin_interval_s: float = 10.0
    #: Set for a worker of ``recorder serve --workers N``: claim streams from the work queue.
    work_queue: WorkQueueSettings | None = None


Credentials = Callable[[Product], tuple[str, str]]


class Supervisor:
    def __init__(
        self,
        components: Components,
        settings: SupervisorSettings,
        *,
        client_config: Callable[[Product], ClientConfig],
        capture_config: CaptureConfig,
        credentials: Credentials,
    ) -> None:
        self.c = components
        self.settings = settings
        self._client_config = client_config
        self._capture_config = capture_config
        #: One checkpoint ticker for every engagement's capture (started by ``run``).
        self._checkpoints: CheckpointCoordinator | None = None
        self._credentials = credentials
        self.engagements: dict[str, Engagement] = {}
        #: Every engagement ever started here, for the demo's summary and for tests.
        self.history: list[Engagement] = []
        self._nursery: trio.Nursery | None = None
        self._accepting = True
        #: Streams whose lease claim is in flight (see ``start``).
        self._claiming: set[str] = set()
        #: Consecutive failed engagements per stream, and when the rejoin loop may try again.
        self._rejoin_failures: dict[str, int] = {}
        self._rejoin_not_before: dict[str, float] = {}
        #: Set to run the rejoin loop now (a start failed: the catalog row is the retry).
        self._rejoin_now = trio.Event()
        #: The work-queue claim loop of a worker process (rule 5), else None.
        self.claims: ClaimLoop | None = (
            None if settings.work_queue is None else ClaimLoop(self, settings.work_queue)
        )

    # --- lifetime --------------------------------------------------------------------------

    async def run(
        self,
        webhooks: trio.MemoryReceiveChannel[AcceptedWebhook],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with trio.open_nursery() as nursery:
            self._checkpoints = CheckpointCoordinator(self._capture_config.checkpoint_interval_s)
            await nursery.start(self._checkpoints.run)
            self._nursery = nursery
            nursery.start_soon(self._rejoin_loop)
            if self.claims is not None:
                nursery.start_soon(self.claims.run)
            task_status.started()
            async with webhooks:
                async for accepted in webhooks:
                    if not self._accepting:
                        continue
                    try:
                        await self.handle(accepted.event)
                    except RecorderError as exc:
                        # The catalog row is committed (rule 0): the rejoin loop acts on it.
                        logger.warning(
                            "webhook left to the rejoin loop event=%s rtms_stream_id=%s error=%s",
                            accepted.event.event,
                            accepted.event.rtms_stream_id,
                            exc,
                        )
                        self._rejoin_now.set()
            nursery.cancel_scope.cancel()

    async def drain(self, timeout_s: float) -> None:
        """Stop accepting; give open engagements ``timeout_s``, then seal them as interrupted."""
        self._accepting = False
        if self.claims is not None:
            await self.claims.retire()
        with trio.move_on_after(timeout_s):
            for engagement in list(self.engagements.values()):
                await engagement.finished.wait()
        for engagement in list(self.engagements.values()):
            engagement.cancel()
        for engagement in list(self.engagements.values()):
            await engagement.finished.wait()

    # --- webhooks ----------------------------------------------------------------------------

    async def handle(self, event: WebhookEvent) -> None:
        """Act on a webhook whose stream row the ingress has committed (rule 0)."""
        stream_id = event.rtms_stream_id
        # Zoom always sends event_ts; without it retries and failovers cannot be told apart.
        event_ts = event.event_ts if event.event_ts is not None else now_ms()
        if event.kind not in _ACTED_ON or stream_id is None or event.product is None:
            logger.info("webhook acknowledged, nothing to do event=%s", event.event)
            return
        local = self.engagements.get(stream_id)
        if event.kind is WebhookKind.STARTED:
            if local is not None:
                # The engagement acts once per newer event_ts (a retry is no failover).
                await local.failover(event_ts, tuple(event.server_urls))
                return
            if self.claims is not None:
                # Rule 5: the row is committed; the fleet's claim loops share it out.
                self.claims.wake()
                return
            self.start_soon(
                EngagementSpec(
                    product=event.product,
                    instance_id=event.instance_id or "",
                    rtms_stream_id=stream_id,
                    server_urls=tuple(event.server_urls),
                    event_ts_ms=event_ts,
                    operator_id=event.operator_id,
                    account_id=event.account_id,
                )
            )
        elif local is None:
            if event.kind is WebhookKind.STOPPED:
                await self._close_unowned(stream_id, event_ts)
            return
        elif local.stream is None:
            return
        elif event.kind is WebhookKind.INTERRUPTED:
            if event_ts < local.claimed_ms:
                # A late retry (Zoom retries for up to 85 minutes) about a connection that broke
                # before this engagement claimed the stream and connected: tearing down the
                # healthy connection for it would only cause another interruption.
                logger.info("stale rtms_interrupted ignored rtms_stream_id=%s", stream_id)
                return
            local.stream.signaling_interrupted(tuple(event.server_urls), event_ts_ms=event_ts)
        elif event.kind is WebhookKind.STOPPED:
            local.stream.stopped(event.stop_reason)

    async def _close_unowned(self, stream_id: str, event_ts: int, *, recheck: bool = True) -> None:
        """``rtms_stopped`` for a stream nobody holds a live lease on: its owner died or its
        engagement failed, and no one will rejoin a stopped stream. End its recording (as
        incomplete) so that it does not stay 'active' for ever; an owner that is alive ends
        it itself (its lease renewer sees the stopped row)."""
        row = await self.c.catalog.get_stream(stream_id)
        if row is None:
            return
        expires_ms = row.lease_expires_ms or 0
        # Lease expiries are the catalog's clock, never this host's.
        if row.lease_owner is not None and expires_ms > await self.c.catalog.database_now_ms():
            if recheck and row.lease_owner != self.settings.owner and self._nursery is not None:
                # Another process holds the lease; if it died before ending the recording
                # (killed right after the stream stopped), only a look after the lease has
                # lapsed can tell.
                self._nursery.start_soon(self._close_after_lapse, stream_id, event_ts, expires_ms)
            return
        recording = await self.c.catalog.recording_for_stream(stream_id)
        if recording is None or recording.status is not RecordingStatus.ACTIVE:
            return
        logger.warning(
            "stream stopped while no recorder held it: recording ended incomplete "
            "rtms_stream_id=%s recording_id=%s",
            stream_id,
            recording.recording_id,
        )
        await self.c.catalog.end_recording(
            recording.recording_id,
            ended_ms=event_ts,
            reason=OWNER_LOST_REASON,
            status=RecordingStatus.INCOMPLETE,
        )

    async def _close_after_lapse(self, stream_id: str, event_ts: int, expires_ms: int) -> None:
        try:
            remaining_ms = expires_ms - await self.c.catalog.database_now_ms()
            await trio.sleep(max(0.0, remaining_ms / 1000) + self.settings.rejoin_interval_s)
            await self._close_unowned(stream_id, event_ts, recheck=False)
        except RecorderError as exc:
            logger.warning("stopped stream not closed rtms_stream_id=%s: %s", stream_id, exc)

    # --- engagements ---------------------------------------------------------------------------

    def start_soon(self, spec: EngagementSpec) -> None:
        """``start`` in its own task, so that starts never wait for each other (rule 1)."""
        if self._nursery is None:
            raise RuntimeError("Supervisor.start_soon() before run()")
        self._nursery.start_soon(self._start_logged, spec)

    async def _start_logged(self, spec: EngagementSpec) -> None:
        try:
            await self.start(spec)
        except RecorderError as exc:
            logger.warning("start failed rtms_stream_id=%s: %s", spec.rtms_stream_id, exc)
            self._rejoin_now.set()

    async def start(self, spec: EngagementSpec) -> Engagement | None:
        """Claim the stream's lease and start recording it; None when someone else owns it."""
        if self._nursery is None:
            raise RuntimeError("Supervisor.start() before run()")
        stream_id = spec.rtms_stream_id
        if stream_id in self.engagements or stream_id in self._claiming or not self._accepting:
            return None
        ttl_ms = int(self.settings.lease_ttl_s * 1000)
        # The webhook path and the rejoin loop may both start a stream; the same owner may
        # always re-claim its own lease, so only this in-process guard keeps it to one claim.
        self._claiming.add(stream_id)
        try:
            # The catalog's clock times the lease (``now_ms`` left out): see lease_keeper.
            lease = await self.c.catalog.try_claim(stream_id, self.settings.owner, ttl_ms)
        finally:
            self._claiming.discard(stream_id)
        if lease is None:
            logger.info("stream owned by another recorder rtms_stream_id=%s", spec.rtms_stream_id)
            return None
        return await self.launch(spec, lease)

    def accepting(self) -> bool:
        return self._accepting

    @property
    def active(self) -> int:
        """Engagements running or being claimed here (what a worker's capacity counts)."""
        return len(self.engagements) + len(self._claiming)

    def backing_off(self) -> frozenset[str]:
        """Streams whose engagements failed here lately: left to others for now."""
        now = trio.current_time()
        return frozenset(s for s, t in self._rejoin_not_before.items() if t > now)

    async def launch(self, spec: EngagementSpec, lease: Lease) -> Engagement:
        """Start recording ``spec`` under ``lease``, which this process already holds."""
        if self._nursery is None:
            raise RuntimeError("Supervisor.launch() before run()")
        engagement = self._register(spec, lease)
        await self._nursery.start(self._run_engagement, engagement)
        return engagement

    def launch_soon(self, spec: EngagementSpec, lease: Lease) -> Engagement:
        """``launch`` without waiting for the engagement's setup; it counts as active at once."""
        if self._nursery is None:
            raise RuntimeError("Supervisor.launch_soon() before run()")
        engagement = self._register(spec, lease)
        self._nursery.start_soon(self._run_engagement, engagement)
        return engagement

    def _register(self, spec: EngagementSpec, lease: Lease) -> Engagement:
        engagement = Engagement(
            self.c,
            spec,
            lease,
            client_config=self._client_config(spec.product),
            capture_config=self._capture_config,
            checkpoints=self._checkpoints,
            target_credentials=self._credentials(spec.product),
            lease_timers=LeaseTimers.for_ttl(self.settings.lease_ttl_s),
        )
        self.engagements[spec.rtms_stream_id] = engagement
        self.history.append(engagement)
        logger.info(
            "engagement starting rtms_stream_id=%s epoch=%d", spec.rtms_stream_id, lease.epoch
        )
        return engagement

    async def _run_engagement(
        self,
        engagement: Engagement,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            await engagement.run(task_status=task_status)
        finally:
            self.engagements.pop(engagement.stream_id, None)
            self._note_outcome(engagement)
            if self.claims is not None:
                self.claims.wake()

    def _note_outcome(self, engagement: Engagement) -> None:
        """Back off rejoining a stream whose engagements keep failing (say its server refuses
        the connection because the stream ended while this process was down, and the
        ``rtms_stopped`` never reached it): without this the rejoin loop claimed it, opened a
        new epoch and a new recording key every ``rejoin_interval_s``, for ever."""
        stream_id = engagement.stream_id
        if engagement.status.error is None:
            self._rejoin_failures.pop(stream_id, None)
            self._rejoin_not_before.pop(stream_id, None)
            return
        failures = self._rejoin_failures.get(stream_id, 0) + 1
        self._rejoin_failures[stream_id] = failures
        delay_s = min(self.settings.rejoin_interval_s * 2 ** (failures - 1), REJOIN_BACKOFF_MAX_S)
        self._rejoin_not_before[stream_id] = trio.current_time() + delay_s

    async def _rejoin_loop(self) -> None:
        while True:
            try:
                # Rule 5: a worker takes free streams by the work queue, not by this scan.
                rows = (
                    await self.c.catalog.expired_streams_to_rejoin() if self.claims is None else []
                )
                # After a restart the lease may still name this owner and be unexpired: the
                # owner id is stable across restarts precisely so that it reclaims at once
                # (try_claim lets the same owner in) instead of waiting out its own lease.
                rows += [
                    row
                    for row in await self.c.catalog.live_streams_owned_by(self.settings.owner)
                    if row.rtms_stream_id not in self.engagements
                ]
            except RecorderError as exc:
                logger.warning("rejoin scan failed: %s", exc)
                rows = []
            # Forget the back-off of streams that are no longer candidates (ended, or owned).
            candidates = {row.rtms_stream_id for row in rows}
            for stream_id in [s for s in self._rejoin_not_before if s not in candidates]:
                self._rejoin_not_before.pop(stream_id, None)
                self._rejoin_failures.pop(stream_id, None)
            now = trio.current_time()
            for row in rows:
                if self._rejoin_not_before.get(row.rtms_stream_id, now) > now:
                    continue
                spec = _spec_from_row(row)
                if spec is not None and row.rtms_stream_id not in self.engagements:
                    self.start_soon(spec)
            with trio.move_on_after(self.settings.rejoin_interval_s):
                await self._rejoin_now.wait()
            self._rejoin_now = trio.Event()


def spec_from_row(row: StreamRow) -> EngagementSpec | None:
    """What the stream row says to connect to; None for a row no webhook has described."""
    return _spec_from_row(row)


def _spec_from_row(row: StreamRow) -> EngagementSpec | None:
    if row.product is None or row.instance_id is None or not row.server_urls:
        return None
    return EngagementSpec(
        product=row.product,
        instance_id=row.instance_id,
        rtms_stream_id=row.rtms_stream_id,
        server_urls=row.server_urls,
        event_ts_ms=row.last_event_ts_ms,
    )
