"""The trio shell around ``CaptureCore``: one engagement's capture, from events to sealed segments.

``run_capture`` reads the RTMS client's event channel until ``StreamEnded`` (or the channel
closes), and returns the engagement's manifest. Where the work runs, and why:

* **Inline hand-off**: given the client's ``InlineSlot`` (``run_capture(inline=stream.inline)``),
  audio the consumer would handle inline anyway is handled by the socket's task that received
  it, synchronously, while the consumer sleeps on the empty channel: one task switch less per
  message. Only then, only for a known track, with no batch or backlog waiting; everything else
  (control events, a first packet with ``on_event``, decoding in a worker thread, backpressure)
  takes the channel as before, so a slow consumer never holds up the socket.
* **Audio and every other event** are handled inline on the trio thread by default: passthrough
  L16 costs a few µs, PyAV decodes 6-60 µs, and a worker-thread hop costs more than that
  (measured in ``recorder.bench.pipeline``; paced live streams bring about one packet per
  wakeup, so batching cannot amortise the hop).
* With ``CaptureConfig(decode_inline=False)``, packets that need PyAV (everything but
  passthrough L16) are decoded, placed and written in a worker thread, ``decode_batch`` per
  hop. A batch is cut short whenever the channel runs dry, so nothing waits for it to fill.
* **Checkpoints** (fsync of every open sink) run at least every ``checkpoint_interval_s`` while
  the engagement is live, so a crash loses at most about that; each first retires tracks silent
  for ``retire_after_s``. They are ticked by a ``CheckpointCoordinator``
  (``recorder.capture.checkpoints``), shared by every engagement of the process when the caller
  passes one: it takes an idle consumer's snapshot itself (the sinks, and the RTMS time they
  will be durable through) and runs the fsyncs of every engagement of a tick in one or two
  worker-thread hops, while the consumers go on. A busy consumer is told its checkpoint is due
  and submits its snapshot at its next housekeeping point; no wait is ever interrupted for it.
* **Segment opens and seals** never run on the trio thread: the core returns them as actions
  (``recorder.capture.actions``) and ``_run_actions`` runs them in order, each in a worker
  thread under one process-wide ``CapacityLimiter`` (``segment_io_limiter``), while the consumer
  goes on: audio arriving during a seal is already written into the next segment. ``_hand_on``
  hands sealed segments to ``on_sealed`` in seal order, so a slow catalog delays no open. More
  than ``_MAX_PENDING_ACTIONS`` waiting makes the consumer wait (a disk or catalog that cannot
  keep up).

The core is never driven by two threads at once: the single consumer task awaits each worker
call before touching the core again. A checkpoint's snapshot is taken on the trio thread while
the consumer is idle or by the consumer itself; only the sinks' own ``checkpoint`` then runs in
a worker thread beside the consumer's writes (each sink serialises the two).

Queues are bounded: the client's event channel (its size is the backpressure; the client counts
what it must drop and says so with ``PacketsDropped``) and one batch here.

Finalisation on stop, error or cancellation: every open segment is sealed under a shielded,
time-bounded scope (``finalize_timeout_s``); segments sealed because of cancellation, an error or
a channel that closed without ``StreamEnded`` are marked ``interrupted`` in their manifest entry.
A seal still running at the deadline is abandoned to its thread, which only touches its own
segment; the manifest says ``finalize_timed_out`` and its ``.part`` is startup recovery's.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

import trio

from recorder.audio.manifest import EngagementManifest, ManifestEntry
from recorder.capture.actions import Action, Sealed, SealSegment, segment_io_limiter
from recorder.capture.checkpoints import CheckpointCoordinator, CheckpointJob
from recorder.capture.core import CaptureConfig, CaptureCore
from recorder.rtms.events import AudioPacket, CaptureEvent, StreamEnded
from recorder.sink import SealedSegment, SinkFactory

logger = logging.getLogger(__name__)

OnSealed = Callable[[SealedSegment, ManifestEntry], Awaitable[None]]
#: May return a replacement for a non-audio event (the service names a pause's actor this way).
OnEvent = Callable[[CaptureEvent], Awaitable[CaptureEvent | None]]
#: Called after a checkpoint with the RTMS time (ms) every open track is durable through.
OnCheckpoint = Callable[[int], None]


#: Events handled without a schedule point at most (a channel that never runs dry).
_YIELD_EVERY = 64
#: Segment opens and seals waiting for a worker thread before the consumer waits for them.
_MAX_PENDING_ACTIONS = 256


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def trio_clock_ms() -> Callable[[], int]:
    """trio's clock in ms, readable from worker threads: monotonic, and the simulator's too
    (a MockClock moves both). Call in async context."""
    clock = trio.lowlevel.current_clock()
    if type(clock) is trio._core._run.SystemClock:
        # Its current_time() is ``offset + perf_counter()`` (offset fixed: the clock is
        # frozen); the same sum here spares a Python call, once per audio packet.
        offset, counter = clock.offset, time.perf_counter
        return lambda: int((offset + counter()) * 1000)
    return lambda: int(clock.current_time() * 1000)


async def run_capture(
    events: trio.MemoryReceiveChannel[CaptureEvent],
    sinks: SinkFactory,
    *,
    recording_id: str,
    originator_reference: str | None = None,
    config: CaptureConfig | None = None,
    on_sealed: OnSealed | None = None,
    on_event: OnEvent | None = None,
    on_checkpoint: OnCheckpoint | None = None,
    decode_limiter: trio.CapacityLimiter | None = None,
    io_limiter: trio.CapacityLimiter | None = None,
    now_ms: Callable[[], int] = _wall_ms,
    clock_ms: Callable[[], int] | Literal["trio"] | None = "trio",
    keep_entries: bool = True,
    inline: InlineSlotLike | None = None,
    checkpoints: CheckpointCoordinator | None = None,
) -> EngagementManifest:
    """Capture one engagement; returns its manifest once every segment is sealed.

    Args:
        events: The client's bounded event channel (``RtmsStream.events``).
        sinks: Where segments go (``recorder.crypto`` in production).
        recording_id: One RTMS stream of one engagement/meeting.
        originator_reference: Engagement or meeting id for BWF ``bext`` (default recording_id).
        config: Capture settings.
        on_sealed: Awaited for every sealed segment (hand it to the spool), in seal order; at
            least once: a call interrupted by cancellation is made again by the finaliser, so it
            must be idempotent.
        on_event: Awaited with every event that is not audio, and with the first audio packet
            of each track, before the pipeline handles it: how the service learns participants,
            drops and interruptions without a second hop per audio packet. For an event that
            is not audio it may return a replacement, which the pipeline handles instead (a
            ``Paused`` that names who asked for it).
        on_checkpoint: Called after each checkpoint with the RTMS time (ms) up to which every
            open track's audio is now on disk (the earliest track's end): what a crash cannot
            lose. Skipped while a segment open or seal is pending (those bytes are not yet in
            an fsynced file). The service keeps it in the lease row for a takeover's gap.
        decode_limiter: Shared cap on worker threads decoding, across engagements.
        io_limiter: Cap on worker threads opening, checkpointing and sealing segments; by
            default the one process-wide ``segment_io_limiter()``.
        now_ms: Wall clock (Unix ms) for segment creation times and track retirement.
        keep_entries: Keep every manifest entry in the returned manifest. False when
            ``on_sealed`` is where entries go (the service): memory then stays flat.
        clock_ms: Monotonic clock (ms) that bounds how far timestamps may jump (timeline rule
            7): ``"trio"`` for trio's; None for offline replays fed faster than real time.
        inline: The client's ``RtmsStream.inline``: cheap audio is then handled in the
            receiving socket's task while this consumer is idle (module docstring).
        checkpoints: The process's checkpoint ticker (``open_checkpoint_coordinator``), whose
            interval then rules instead of ``config.checkpoint_interval_s``; by default the
            capture ticks on its own, with its config's interval.

    Error handling:
        An exception from a sink or ``on_sealed`` ends the capture: open segments are still
        sealed (marked interrupted) before it propagates. Undecodable packets are not errors
        (they become gaps).
    """
    core = CaptureCore(
        sinks,
        recording_id=recording_id,
        originator_reference=originator_reference,
        config=config,
        now_ms=now_ms,
        clock_ms=trio_clock_ms() if clock_ms == "trio" else clock_ms,
    )
    core.manifest.keep_entries = keep_entries
    capture = _Capture(
        events,
        core,
        on_sealed=on_sealed,
        on_event=on_event,
        on_checkpoint=on_checkpoint,
        decode_limiter=decode_limiter or trio.CapacityLimiter(1),
        io_limiter=io_limiter or segment_io_limiter(),
        inline=inline,
        checkpoints=checkpoints,
    )
    return await capture.run()


class InlineSlotLike(Protocol):
    """``recorder.rtms._outlet.InlineSlot`` as the capture uses it."""

    take: Callable[[CaptureEvent], bool] | None
    ready: bool


class _Capture:
    def __init__(
        self,
        events: trio.MemoryReceiveChannel[CaptureEvent],
        core: CaptureCore,
        *,
        on_sealed: OnSealed | None,
        on_event: OnEvent | None,
        decode_limiter: trio.CapacityLimiter,
        io_limiter: trio.CapacityLimiter,
        on_checkpoint: OnCheckpoint | None = None,
        inline: InlineSlotLike | None = None,
        checkpoints: CheckpointCoordinator | None = None,
    ) -> None:
        self._events = events
        self._inline = inline
        #: An exception caught outside the consumer's task (the inline path, a checkpoint),
        #: raised by the consumer in its own task.
        self._failure: Exception | None = None
        #: The consumer's wait on the empty channel: the inline path and the checkpoint ticker
        #: may touch the core only meanwhile (cancelled on a failure from either).
        self._idle_scope: trio.CancelScope | None = None
        self._checkpoints = checkpoints
        #: The ticker found the consumer busy: it submits its snapshot at its next chance.
        self._checkpoint_due = False
        #: This capture's checkpoint queued or running (at most one).
        self._checkpoint_job: CheckpointJob | None = None
        #: Left the ticker: a late job's outcome is no longer reported.
        self._left = False
        self._core = core
        self._config = core.config
        self._on_sealed = on_sealed
        self._on_event = on_event
        self._on_checkpoint = on_checkpoint
        self._decode_limiter = decode_limiter
        self._io_limiter = io_limiter
        self._batch: list[AudioPacket] = []
        #: Segment opens and seals the core asked for, run in order by ``_run_actions``; the
        #: head is removed only once it completed.
        self._actions: collections.deque[Action] = collections.deque()
        #: Set when actions are submitted (``_run_actions`` waits), when a sealed segment is
        #: ready to hand on (``_hand_on`` waits), and on any progress (backpressure waits).
        self._work_added = trio.Event()
        self._sealed_ready = trio.Event()
        self._progress = trio.Event()
        self._undelivered: collections.deque[Sealed] = collections.deque()
        self._since_yield = 0

    async def run(self) -> EngagementManifest:
        core = self._core
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._run_actions)
                nursery.start_soon(self._hand_on)
                checkpoints = self._checkpoints
                if checkpoints is None:
                    checkpoints = self._checkpoints = CheckpointCoordinator(
                        self._config.checkpoint_interval_s, limiter=self._io_limiter
                    )
                    await nursery.start(checkpoints.run)
                checkpoints.join(self)
                try:
                    if self._inline is not None:
                        self._inline.take = self._take_inline
                    ended = await self._consume()
                finally:
                    # The finaliser, and whatever follows, is this task's alone.
                    checkpoints.leave(self)
                    self._left = True
                    if self._inline is not None:
                        self._inline.take = None
                        self._inline.ready = False
                nursery.cancel_scope.cancel()
        except BaseException as exc:
            failure = _unwrap(exc)
            core.manifest.outcome = "cancelled" if isinstance(failure, trio.Cancelled) else "error"
            try:
                await self._finalize(interrupted=True)
            except Exception:
                # The original failure is what the caller must see; this one is only logged.
                logger.exception(
                    "sealing after a failure failed recording_id=%s", core.recording_id
                )
            if failure is not exc:
                raise failure from None
            raise
        core.manifest.outcome = "ended" if ended else "channel_closed"
        await self._finalize(interrupted=not ended)
        return core.manifest

    async def _consume(self) -> bool:
        """Returns True when the stream ended with ``StreamEnded``.

        Cheap audio (the common case: a known track, decoded inline, nothing sealed) is handled
        by ``_receive``. Everything that awaits anything but the channel (``on_event``,
        batches, backpressure from segment I/O) runs here; so does a checkpoint the ticker found
        due while the consumer was busy (taking its snapshot awaits nothing).
        """
        core = self._core
        self._since_yield = 0
        while True:
            if self._failure is not None:
                raise self._failure
            try:
                event = await self._receive()
            except trio.EndOfChannel:
                await self._drain_batch()
                return False
            if self._backlog() > _MAX_PENDING_ACTIONS:
                await self._wait_for_actions()
            if event is None:
                # Housekeeping: the channel ran dry, a batch is full, a checkpoint is due.
                await self._drain_batch()
                if self._checkpoint_due:
                    self._checkpoint_now()
                if self._since_yield >= _YIELD_EVERY:
                    self._since_yield = 0
                    await trio.lowlevel.checkpoint()
                continue
            if isinstance(event, AudioPacket):
                if self._on_event is not None and event.track not in core.tracks:
                    await self._on_event(event)
                if core.is_inline(event):
                    if self._batch:
                        await self._drain_batch()
                    self._submit(core.handle_audio(event))
                else:
                    self._batch.append(event)
                    if len(self._batch) >= max(1, self._config.decode_batch):
                        await self._drain_batch()
            else:
                await self._drain_batch()
                if self._on_event is not None:
                    event = await self._on_event(event) or event
                self._submit(core.handle_event(event))
                if isinstance(event, StreamEnded):
                    return True
            self._since_yield += 1
            if self._since_yield >= _YIELD_EVERY:
                # Events that all need this path (none handled by _receive) must not starve
                # checkpoints or other tasks either.
                self._since_yield = 0
                if self._checkpoint_due:
                    await self._drain_batch()
                    self._checkpoint_now()
                await trio.lowlevel.checkpoint()

    async def _receive(self) -> CaptureEvent | None:
        """Handle cheap audio until an event needs ``_consume`` (returned) or housekeeping is
        due (None). Awaits only the channel and bare schedule points, where a cancellation
        loses nothing; the core is driven synchronously.
        """
        events = self._events
        core = self._core
        tracks = core.tracks
        check_tracks = self._on_event is not None
        batch = self._batch
        batch_size = max(1, self._config.decode_batch)
        while True:
            try:
                event = events.receive_nowait()
            except trio.WouldBlock:
                if self._batch or self._checkpoint_due or self._failure is not None:
                    return None
                event = await self._wait(events)
                self._since_yield = 0
            if not isinstance(event, AudioPacket) or (check_tracks and event.track not in tracks):
                return event
            if core.is_inline(event):
                if batch:
                    return event
                actions = core.handle_audio(event)
                if actions:
                    # Never awaited here: segment I/O runs in ``_run_actions``.
                    self._submit(actions)
                    if self._backlog() > _MAX_PENDING_ACTIONS:
                        self._since_yield += 1
                        return None
            else:
                batch.append(event)
                if len(batch) >= batch_size:
                    self._since_yield += 1
                    return None
            self._since_yield += 1
            if self._since_yield >= _YIELD_EVERY:
                # A channel that never runs dry must not starve checkpoints or other tasks.
                if self._checkpoint_due or self._failure is not None:
                    return None
                self._since_yield = 0
                await trio.lowlevel.checkpoint()

    async def _wait(self, events: trio.MemoryReceiveChannel[CaptureEvent]) -> CaptureEvent:
        """Wait for the next event on the empty channel, letting the inline path and the
        checkpoint ticker run meanwhile."""
        inline = self._inline
        if inline is not None and inline.take is None:
            inline = None
        with trio.CancelScope() as scope:
            self._idle_scope = scope
            if inline is not None:
                inline.ready = True
            try:
                return await events.receive()
            finally:
                if inline is not None:
                    inline.ready = False
                self._idle_scope = None
        # Only a failure caught outside this task cancels this scope: raise it here.
        failure = self._failure
        assert failure is not None
        raise failure

    def _take_inline(self, event: CaptureEvent) -> bool:
        """The inline path (called by the socket's task while the consumer waits in ``_wait``):
        exactly what ``_receive`` does with cheap audio of a known track, synchronously."""
        if not isinstance(event, AudioPacket) or self._batch or self._failure:
            return False
        core = self._core
        if self._on_event is not None and event.track not in core.tracks:
            return False
        # self._backlog(), inline: this runs once per packet.
        if (
            not core.is_inline(event)
            or len(self._actions) + len(self._undelivered) > _MAX_PENDING_ACTIONS
        ):
            return False
        try:
            actions = core.handle_audio(event)
        except Exception as exc:
            # Never into the socket's task: the consumer raises it, as if it had handled it.
            self._fail(exc)
            return True
        if actions:
            self._submit(actions)
        return True

    async def _drain_batch(self) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        actions = await trio.to_thread.run_sync(
            self._core.handle_audio_batch, batch, limiter=self._decode_limiter
        )
        self._submit(actions)

    def _fail(self, exc: Exception) -> None:
        """A failure caught outside the consumer's task: the consumer raises it (waking it if
        it waits), as if it had hit it itself."""
        if self._failure is None:
            self._failure = exc
        if self._idle_scope is not None:
            self._idle_scope.cancel()

    # --- checkpoints (``CheckpointOwner``) ----------------------------------------------------

    def checkpoint_tick(self) -> CheckpointJob | None:
        if self._checkpoint_job is not None or self._failure is not None:
            return None
        if self._idle_scope is None:
            # Busy (or driving the core from a worker thread): it takes its own snapshot.
            self._checkpoint_due = True
            return None
        # Idle in ``_wait``: nothing else drives the core until this returns.
        return self._snapshot()

    def checkpoint_done(self, job: CheckpointJob) -> None:
        if job is self._checkpoint_job:
            self._checkpoint_job = None
        if job.failure is not None:
            self._fail(job.failure)
        elif not job.completed:
            # Never ran (the ticker was cancelled): still due, nothing reported.
            self._checkpoint_due = not self._left
        elif job.durable_ms is not None and self._on_checkpoint is not None and not self._left:
            self._on_checkpoint(job.durable_ms)

    def _checkpoint_now(self) -> None:
        """The consumer's own snapshot of a checkpoint the ticker found due."""
        job = self._snapshot()
        if job is not None:
            assert self._checkpoints is not None
            self._checkpoints.submit(job)

    def _snapshot(self) -> CheckpointJob | None:
        """Retire silent tracks, and take what the checkpoint makes durable (trio thread, core
        not driven elsewhere). A failure here is the consumer's, as it was when it did this."""
        self._checkpoint_due = False
        core = self._core
        try:
            self._submit(core.retire_silent(core.now_ms()))
            # Taken before the fsync: what was written by now is durable once it returns. Not
            # while an open or seal is pending: a segment still opening holds its bytes in
            # memory, and one being sealed is made durable by its seal, not by this.
            durable_ms = None if self._actions else _written_through_ms(core)
            job = CheckpointJob(self, core.checkpoint_targets(), durable_ms)
        except Exception as exc:
            self._fail(exc)
            return None
        self._checkpoint_job = job
        return job

    # --- segment I/O --------------------------------------------------------------------------

    def _submit(self, actions: list[Action]) -> None:
        if actions:
            self._actions.extend(actions)
            self._work_added.set()

    def _backlog(self) -> int:
        return len(self._actions) + len(self._undelivered)

    async def _wait_for_actions(self) -> None:
        """Backpressure: a disk or a catalog that cannot keep up slows the consumer (and,
        through the client's bounded channel, shows as counted drops) instead of growing a
        queue."""
        while self._backlog() > _MAX_PENDING_ACTIONS // 2:
            self._progress = trio.Event()
            await self._progress.wait()

    async def _run_actions(self) -> None:
        """Runs the core's segment opens and seals in order, each in a worker thread."""
        while True:
            if not self._actions:
                self._work_added = trio.Event()
                await self._work_added.wait()
                continue
            await self._run_head(abandon_on_cancel=False)

    async def _hand_on(self) -> None:
        """Hands sealed segments on (``on_sealed``: catalog, spool) apart from ``_run_actions``,
        so a slow catalog never holds up the next segment's open."""
        while True:
            if not self._undelivered:
                self._sealed_ready = trio.Event()
                await self._sealed_ready.wait()
                continue
            await self._deliver()

    async def _run_head(self, *, abandon_on_cancel: bool) -> None:
        """Run the oldest action; it leaves the queue only once it completed.

        Without ``abandon_on_cancel`` a cancellation waits for the thread, so its result is
        never lost. With it (the finaliser's deadline) the thread is left to finish on its own
        segment, which nothing else refers to any more: nothing shared changes after.
        """
        action = self._actions[0]
        limiter = self._io_limiter
        if not isinstance(action, SealSegment):
            await trio.to_thread.run_sync(
                action.run, limiter=limiter, abandon_on_cancel=abandon_on_cancel
            )
            self._actions.popleft()
        else:
            sealed = await trio.to_thread.run_sync(
                action.run, limiter=limiter, abandon_on_cancel=abandon_on_cancel
            )
            self._actions.popleft()
            self._core.note(sealed)
            if self._on_sealed is not None:
                self._undelivered.append(sealed)
                self._sealed_ready.set()
        self._progress.set()

    async def _deliver(self) -> None:
        """Hand sealed segments on, in order; one interrupted by cancellation stays queued and
        is handed on by the (shielded) finaliser, so no sealed segment goes unannounced."""
        if self._on_sealed is None:
            return
        while self._undelivered:
            item = self._undelivered[0]
            await self._on_sealed(item.segment, item.entry)
            self._undelivered.popleft()
            self._progress.set()

    async def _finalize(self, *, interrupted: bool) -> None:
        """Seal everything, shielded and time-bounded, whatever ended the capture.

        The core is only touched on this thread (or in a thread this awaits to the end); each
        blocking seal runs in a worker thread on its own segment. At the deadline the seal in
        progress is abandoned to its thread (which touches nothing shared) and the rest are not
        started: their ``.part`` files are left for startup recovery, and the manifest says so.
        """
        core = self._core
        failure: Exception | None = None
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self._config.finalize_timeout_s
            batch, self._batch = self._batch, []
            if batch:
                # Bounded CPU and buffered writes; waited for, so the core is never shared.
                self._submit(
                    await trio.to_thread.run_sync(
                        core.handle_audio_batch, batch, limiter=self._decode_limiter
                    )
                )
            self._submit(core.finish(interrupted=interrupted))
            # Segments sealed before a cancellation but not yet handed on go first.
            await self._deliver()
            while self._actions:
                try:
                    await self._run_head(abandon_on_cancel=True)
                except Exception as exc:
                    # One segment that cannot be sealed (its .part stays for startup recovery)
                    # must not keep the other tracks' segments from being sealed.
                    action = self._actions.popleft()
                    logger.error(
                        "segment action %s failed recording_id=%s: %s",
                        type(action).__name__,
                        core.recording_id,
                        exc,
                    )
                    failure = failure or exc
                    continue
                await self._deliver()
        if failure is not None and not scope.cancelled_caught:
            raise failure
        if scope.cancelled_caught:
            core.manifest.finalize_timed_out = True
            unsealed = [a for a in self._actions if isinstance(a, SealSegment)]
            logger.error(
                "finalisation timed out recording_id=%s after %.1f s; %d segment(s) not sealed "
                "are left to startup recovery",
                core.recording_id,
                self._config.finalize_timeout_s,
                len(unsealed),
            )
            for action in unsealed:
                logger.error(
                    "segment left unsealed recording_id=%s track=%s segment=%d",
                    core.recording_id,
                    action.track,
                    action.segment_index,
                )
            for item in self._undelivered:
                # Sealed and in the manifest, but the spool was not told: say which.
                logger.error(
                    "sealed segment not handed on recording_id=%s track=%s segment=%d",
                    core.recording_id,
                    item.segment.identity.track,
                    item.segment.identity.segment_index,
                )


def _written_through_ms(core: CaptureCore) -> int | None:
    """The RTMS time every open, anchored track has been written through (the earliest)."""
    ends = [
        track.timeline.sample_to_ms(track.timeline.emitted_samples)
        for track in core.tracks.values()
        if track.timeline.anchor_ms is not None
    ]
    return min(ends) if ends else None


def _unwrap(exc: BaseException) -> BaseException:
    """The nursery wraps what failed in a group; a single failure is re-raised as itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
