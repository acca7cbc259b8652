"""One RTMS stream = one engagement = one trio nursery.

The nursery owns, for the lifetime of the stream, parts with one job each: the RTMS client and
capture pipeline (``open_rtms_stream``, ``run_capture``), the ``StreamObserver`` (what the
capture sees becomes evidence intents, metrics and status), the ``LeaseKeeper`` (renews on the
catalog's clock, watches the row, fences itself) and the ``EvidenceRecorder`` (every catalog
write, off the capture task, journaled when the catalog cannot take it). Sealed segments go to
the catalog first (as ``pending``) and then into the spool, so a crash between the two leaves a
sealed file in the writing directory that recovery hands to the spool; never an uploaded object
the catalog does not know.

Rules:

1. Nothing here raises into the supervisor: a failure ends this engagement (sealing what it has,
   with the failure recorded as a gap cause) and never cancels another engagement.
2. Live catalog writes are fenced by the lease, so a stalled owner that lost its stream to a
   takeover cannot add evidence rows behind the new owner's back.
3. Segment indexes of the n-th ownership of a stream start at ``(n - 1) * EPOCH_INDEX_STRIDE``
   so that a takeover never reuses the index of a segment the previous owner may still recover.
4. Capture never waits on the catalog: the recording key is prepared beside the handshake, and
   evidence intents are submitted, not awaited.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Final

import trio

from recorder.capture.checkpoints import CheckpointCoordinator
from recorder.capture.core import CaptureConfig
from recorder.capture.pipeline import run_capture
from recorder.catalog.base import (
    Lease,
    RecordingStart,
    RecordingStatus,
    StreamRow,
    StreamState,
)
from recorder.errors import LeaseExpired, LeaseLost, RecorderError
from recorder.rtms._video_outlet import VideoEvent
from recorder.rtms.client import ClientConfig, RtmsStream, StreamTarget, open_rtms_stream
from recorder.service import evidence_recorder as intents
from recorder.service import start_trace
from recorder.service.components import Components, now_ms
from recorder.service.evidence_recorder import JOURNAL_DIR, JOURNAL_SUFFIX, EvidenceRecorder
from recorder.service.lease_keeper import LeaseKeeper, LeaseTimers
from recorder.service.metrics import MALFORMED, LeaseLoss
from recorder.service.observer import StreamObserver
from recorder.service.pause_evidence import PauseEvidence
from recorder.service.status import EngagementSpec as EngagementSpec
from recorder.service.status import EngagementStatus
from recorder.video.capture import VideoCaptureConfig, run_video_capture
from recorder.video.evidence import VideoEvidence

logger = logging.getLogger(__name__)

#: Segment indexes reserved per ownership epoch (100,000 five-minute segments = 347 days).
EPOCH_INDEX_STRIDE: Final = 100_000
#: After the capture ended, how long its last catalog intents may take before they are journaled.
EVIDENCE_DRAIN_S: Final = 10.0
#: ``end_reason`` of a recording whose engagement failed after its stream had stopped.
RECORDER_FAILURE_REASON: Final = "recorder_failure"


class Engagement:
    """Records one stream until it ends, is taken over, or the service shuts down."""

    def __init__(
        self,
        components: Components,
        spec: EngagementSpec,
        lease: Lease,
        *,
        client_config: ClientConfig,
        capture_config: CaptureConfig,
        target_credentials: tuple[str, str],
        lease_timers: LeaseTimers,
        checkpoints: CheckpointCoordinator | None = None,
    ) -> None:
        self.c = components
        #: The process's checkpoint ticker (the supervisor's); None: the capture ticks alone.
        self._checkpoints = checkpoints
        self.spec = spec
        self._client_config = client_config
        self._capture_config = replace(
            capture_config, first_segment_index=(lease.epoch - 1) * EPOCH_INDEX_STRIDE
        )
        self._credentials = target_credentials
        self.status = EngagementStatus()
        #: Wall-clock ms at which this process claimed the stream (before it connected).
        self.claimed_ms = now_ms()
        self.stream: RtmsStream | None = None
        #: Cancels the capture only (``cancel``): the lease keeper and the evidence recorder
        #: go on until what the capture sealed on its way out is in the catalog.
        self.cancel_scope = trio.CancelScope()
        #: The recording row is written: the engagement has started (metrics, pauses, ...).
        self._started = False
        self.finished = trio.Event()
        #: ``event_ts`` of the newest ``rtms_started`` acted on.
        self._failover_event_ts = spec.event_ts_ms
        #: Every line this engagement logs carries its ids as structured fields.
        self.log = logging.LoggerAdapter(
            logger,
            {
                "rtms_stream_id": spec.rtms_stream_id,
                "engagement_id": spec.instance_id,
                "product": spec.product.value,
                "lease_epoch": lease.epoch,
            },
        )
        #: RTMS ms the capture's last checkpoint made durable (``run_capture``'s on_checkpoint).
        self._checkpoint_ms: int | None = None
        self.keeper = LeaseKeeper(
            components.catalog,
            lease,
            lease_timers,
            on_row=self._on_row,
            log=self.log,
            checkpoint_ms=lambda: self._checkpoint_ms,
        )
        journal = (
            components.config.storage.state_dir
            / JOURNAL_DIR
            / f"{_safe(spec.rtms_stream_id)}-{lease.epoch}{JOURNAL_SUFFIX}"
        )
        self.evidence = EvidenceRecorder(
            components.catalog,
            journal,
            fence=lambda: self.keeper.lease,
            now_ms=now_ms,
            log=self.log,
            on_journaled=components.metrics.intents_journaled,
        )
        self.observer = StreamObserver(
            components,
            spec,
            self.status,
            self.evidence,
            epoch=lease.epoch,
            first_segment_index=self._capture_config.first_segment_index,
            previous_checkpoint_ms=lease.previous_checkpoint_ms,
        )
        self.pauses = PauseEvidence(
            components.catalog,
            spec,
            self.status,
            components.config.pause,
            now_ms=now_ms,
            log=self.log,
        )
        self.observer.pauses = self.pauses

    def cancel(self) -> None:
        """End the recording (shutdown): seal what is open, write it down, hand the lease back."""
        self.cancel_scope.cancel()

    @property
    def lease(self) -> Lease:
        return self.keeper.lease

    @property
    def stream_id(self) -> str:
        return self.spec.rtms_stream_id

    def __repr__(self) -> str:
        return (
            f"<Engagement stream={self.stream_id} epoch={self.lease.epoch} "
            f"recording={self.status.recording_id}>"
        )

    # --- lifetime --------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run to the end; never raises a ``RecorderError`` (it is logged and recorded)."""
        failed = False
        try:
            await self._record(task_status)
        except LeaseLost as exc:
            failed = True
            self.status.error = f"{type(exc).__name__}: {exc}"
            self.status.lease_lost = True
            fenced = isinstance(exc, LeaseExpired)
            self.c.metrics.lease_lost(LeaseLoss.FENCED if fenced else LeaseLoss.TAKEN_OVER)
            self.log.error("engagement ended: %s", self.status.error)
        except RecorderError as exc:
            failed = True
            self.status.error = f"{type(exc).__name__}: {exc}"
            self.log.error("engagement failed error=%s", self.status.error)
        except Exception as exc:
            # Rule 1 holds even for a bug below us (a library error escaping the RTMS client,
            # seen with a frame over the size limit arriving while a socket closed): this
            # engagement ends and releases its lease, so the rejoin loop resumes the stream;
            # without this the error cancelled every other engagement of the process.
            failed = True
            self.status.error = f"unexpected {type(exc).__name__}"
            self.log.exception("engagement failed unexpectedly")
        finally:
            started = self._started
            if not started:
                task_status.started()
            else:
                self.c.metrics.engagement_ended()
            if self.stream is not None:
                self._report_malformed(self.stream.stats.dropped.get("malformed", 0))
                self.c.metrics.add_rtms_stream_stats(self.stream.stats)
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await self.evidence.close(timeout_s=5)
                if started:
                    await self.pauses.finish(timeout_s=3)
                if failed and started and self.status.ended is None:
                    await self._close_after_failure()
                # Epoch-checked: a lease another process took is left alone; a self-fenced one
                # is handed back if the catalog is reachable again, so takeover need not wait.
                await self._finish()
            self.finished.set()

    def _report_malformed(self, count: int) -> None:
        """Malformed frames never reach the pipeline: the client only counts them (and rate-limits
        its warnings), so the engagement reports the total when it ends."""
        self.status.frames_malformed = count
        if count:
            self.c.metrics.add_dropped_frames(MALFORMED, count)
            self.log.warning("engagement received malformed frames count=%d", count)

    async def _start_recording(self, task_status: trio.TaskStatus[None]) -> str:
        """Write the recording row (and the holds of every matching rule: a matter's rule holds
        the recording from its first moment) in one transaction; the engagement has started."""
        recording, _ = await self.c.catalog.start_recording(
            RecordingStart(
                rtms_stream_id=self.spec.rtms_stream_id,
                product=self.spec.product,
                instance_id=self.spec.instance_id,
                started_ms=self.spec.event_ts_ms,
                operator_id=self.spec.operator_id,
                account_id=self.spec.account_id,
            ),
            now_ms(),
        )
        self.status.recording_id = recording.recording_id
        start_trace.mark("recording", self.stream_id)
        self.log.extra = {**(self.log.extra or {}), "recording_id": recording.recording_id}
        self.c.metrics.engagement_started()
        self._started = True
        task_status.started()
        return recording.recording_id

    async def _record(self, task_status: trio.TaskStatus[None]) -> None:
        client_id, client_secret = self._credentials
        target = StreamTarget(
            product=self.spec.product,
            instance_id=self.spec.instance_id,
            rtms_stream_id=self.spec.rtms_stream_id,
            server_urls=self.spec.server_urls,
            client_id=client_id,
            client_secret=client_secret,
            handshake_instance_key=self.c.config.rtms.handshake_id_keys.get(self.spec.product),
        )
        try:
            await self._record_in(target, task_status)
        except BaseExceptionGroup as group:
            raise _single(group) from None

    async def _record_in(self, target: StreamTarget, task_status: trio.TaskStatus[None]) -> None:
        recording_id: str | None = None
        async with trio.open_nursery() as outer:
            # The lease keeper runs from before the handshake (it fences even a handshake that
            # hangs) until the evidence recorder has written what the capture handed it.
            outer.start_soon(self.keeper.run)
            evidence_done = trio.Event()
            outer.start_soon(self._run_evidence, evidence_done)
            with self.cancel_scope:
                start_trace.mark("connecting", self.stream_id)
                async with (
                    open_rtms_stream(target, self._client_config) as stream,
                    trio.open_nursery() as media,
                ):
                    self.stream = stream
                    # The client connects and handshakes in its own tasks while the recording
                    # row is written: under a burst of starts both take a while, and the first
                    # packet now waits for the longer of the two, not for their sum. Packets
                    # that arrive first wait in the client's bounded event buffer (nothing is
                    # recorded, or recordable, before the row exists).
                    recording_id = await self._start_recording(task_status)
                    # Beside the handshake, not before it: a slow key service never delays the
                    # connection (the first segment waits for the key only if it is not there).
                    outer.start_soon(self._prepare_key, recording_id)
                    if stream.video_events is not None:
                        media.start_soon(self._record_video, stream.video_events, recording_id)
                    manifest = await run_capture(
                        stream.events,
                        self.c.sinks,
                        recording_id=recording_id,
                        originator_reference=self.spec.instance_id,
                        config=self._capture_config,
                        on_sealed=self.observer.on_sealed,
                        on_event=self.observer.observe,
                        on_checkpoint=self._note_checkpoint,
                        # Entries go to the catalog as they are sealed; none are kept.
                        keep_entries=False,
                        inline=stream.inline,
                        checkpoints=self._checkpoints,
                    )
                    stream.end_video()
                    self.status.outcome = manifest.outcome
            if recording_id is not None and not self.cancel_scope.cancelled_caught:
                self._close_recording(recording_id)
            self.evidence.finish()
            # Still under a renewed lease, so these writes pass the fence; bounded, and what
            # is left over is journaled by ``close``.
            with trio.move_on_after(EVIDENCE_DRAIN_S):
                await evidence_done.wait()
            outer.cancel_scope.cancel()

    async def _record_video(
        self, events: trio.MemoryReceiveChannel[VideoEvent], recording_id: str
    ) -> None:
        """Video and screen share beside the audio capture (``recorder.video``)."""
        cc = self._client_config
        evidence = VideoEvidence(self.observer, recording_id)
        try:
            await self._run_video(events, recording_id, cc, evidence)
        except Exception:
            # Invariant 10: a broken video recorder never takes the audio down with it. The
            # client counts every frame offered from now on (the channel is closed).
            self.log.exception("video recording failed; audio goes on")
            events.close()

    async def _run_video(
        self,
        events: trio.MemoryReceiveChannel[VideoEvent],
        recording_id: str,
        cc: ClientConfig,
        evidence: VideoEvidence,
    ) -> None:
        outcome = await run_video_capture(
            events,
            self.c.sinks,
            recording_id=recording_id,
            config=VideoCaptureConfig(
                fps={"video": cc.video_params.fps, "deskshare": cc.deskshare_params.fps},
                segment_ms=self.c.config.video.segment_seconds * 1000,
                first_segment_index=self._capture_config.first_segment_index,
            ),
            on_sealed=evidence.on_sealed,
            on_gaps=evidence.on_gaps,
            keep_entries=False,
        )
        evidence.frames_done(outcome.counters)

    def _note_checkpoint(self, durable_ms: int) -> None:
        self._checkpoint_ms = durable_ms

    async def _run_evidence(self, done: trio.Event) -> None:
        try:
            await self.evidence.run()
        finally:
            done.set()

    async def _prepare_key(self, recording_id: str) -> None:
        await self.c.keyring.prepare_async(recording_id)
        start_trace.mark("key", self.stream_id)

    async def _on_row(self, row: StreamRow) -> None:
        """What another process of the fleet learned from Zoom, via the stream row."""
        if self.stream is None:
            return
        if row.state is StreamState.STOPPED:
            self.stream.stopped(None)
        elif row.server_urls and row.server_urls_ts_ms > self._failover_event_ts:
            # Only a newer rtms_started WITH URLs is a failover; an rtms_interrupted is newer
            # too (``last_event_ts_ms``) but names no new server.
            await self.failover(row.server_urls_ts_ms, row.server_urls)

    async def failover(self, event_ts_ms: int, server_urls: tuple[str, ...]) -> None:
        """Reconnect to new server URLs, once per failover ``rtms_started``.

        The webhook reaches this process (the supervisor calls this) and the catalog row (the
        lease keeper sees it); whichever comes first acts, the other finds it already done.
        """
        if event_ts_ms <= self._failover_event_ts or self.stream is None:
            return
        self._failover_event_ts = event_ts_ms
        await self.stream.failover(server_urls)

    def _close_recording(self, recording_id: str) -> None:
        ended = self.status.ended
        if ended is None:
            # Cancelled (shutdown or lease lost): the stream may still be live; the next owner
            # (or this process after a restart) rejoins it. Nothing to end here.
            return
        status = (
            RecordingStatus.REVOKED
            if ended.revoked
            else RecordingStatus.COMPLETE
            if ended.normal
            else RecordingStatus.INCOMPLETE
        )
        self.evidence.submit(
            intents.end_recording(
                recording_id, ended_ms=ended.wall_ms, reason=ended.reason_name, status=status.value
            )
        )
        self.evidence.submit(
            intents.stream_stopped(
                self.stream_id,
                self.spec.product.value,
                self.spec.instance_id,
                max(self.spec.event_ts_ms, ended.wall_ms),
            )
        )
        if ended.revoked:
            # STREAM_REVOKED asks for immediate deletion; retention locks and holds decide
            # what may go, which is the retention job's work, never the recorder's.
            self.log.warning("stream revoked: recording marked for deletion review")

    async def _close_after_failure(self) -> None:
        """A failed engagement leaves a live stream to the rejoin loop, which resumes the
        recording; a stream that stopped meanwhile is rejoined by nobody, so its recording is
        ended here (incomplete) instead of staying 'active' for ever."""
        recording_id = self.status.recording_id
        if recording_id is None:
            return
        try:
            row = await self.c.catalog.get_stream(self.stream_id)
            if row is None or row.state is not StreamState.STOPPED:
                return
            await self.c.catalog.end_recording(
                recording_id,
                ended_ms=row.last_event_ts_ms,
                reason=RECORDER_FAILURE_REASON,
                status=RecordingStatus.INCOMPLETE,
                fence=self.lease,
            )
        except RecorderError as exc:
            self.log.warning("recording of a failed engagement left open: %s", exc)

    async def _finish(self) -> None:
        try:
            await self.c.catalog.release(self.lease)
        except RecorderError as exc:
            self.log.warning("lease release failed: %s", exc)


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception of a nursery that failed for one reason (a lost lease, say)."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _safe(name: str) -> str:
    """A stream id as a file name (ids are base64-ish: '/' and '+' may appear)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
