"""The trio shell around ``CaptureCore``: one engagement's capture, from events to sealed segments.

``run_capture`` reads the RTMS client's event channel until ``StreamEnded`` (or the channel
closes), and returns the engagement's manifest. Where the work runs, and why:

* **Audio and every other event** are handled inline on the trio thread by default: passthrough
  L16 costs a few µs, PyAV decodes 6-60 µs, and a worker-thread hop costs more than that
  (measured in ``recorder.bench.pipeline``; paced live streams bring about one packet per
  wakeup, so batching cannot amortise the hop).
* With ``CaptureConfig(decode_inline=False)``, packets that need PyAV (everything but
  passthrough L16) are decoded, placed and written in a worker thread, ``decode_batch`` per
  hop. A batch is cut short whenever the channel runs dry, so nothing waits for it to fill.
* **Checkpoints** (fsync of every open sink) run in a worker thread at least every
  ``checkpoint_interval_s`` while the engagement is live, so a crash loses at most about that.

The core is never driven by two threads at once: the single consumer task awaits each worker
call before touching the core again. Queues are bounded: the client's event channel (its size is
the backpressure; the client counts what it must drop and says so with ``PacketsDropped``) and
one batch here.

Finalisation on stop, error or cancellation: every open segment is sealed under a shielded,
time-bounded scope (``finalize_timeout_s``); segments sealed because of cancellation, an error or
a channel that closed without ``StreamEnded`` are marked ``interrupted`` in their manifest entry.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

import trio

from recorder.audio.manifest import EngagementManifest, ManifestEntry
from recorder.capture.core import CaptureConfig, CaptureCore, Sealed
from recorder.rtms.events import AudioPacket, CaptureEvent, StreamEnded
from recorder.sink import SealedSegment, SinkFactory

logger = logging.getLogger(__name__)

OnSealed = Callable[[SealedSegment, ManifestEntry], Awaitable[None]]
OnEvent = Callable[[CaptureEvent], Awaitable[None]]


#: Events handled without a schedule point at most (a channel that never runs dry).
_YIELD_EVERY = 64


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def trio_clock_ms() -> Callable[[], int]:
    """trio's clock in ms, readable from worker threads: monotonic, and the simulator's too
    (a MockClock moves both). Call in async context."""
    clock = trio.lowlevel.current_clock()
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
    decode_limiter: trio.CapacityLimiter | None = None,
    io_limiter: trio.CapacityLimiter | None = None,
    now_ms: Callable[[], int] = _wall_ms,
    clock_ms: Callable[[], int] | Literal["trio"] | None = "trio",
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
            drops and interruptions without a second hop per audio packet.
        decode_limiter: Shared cap on worker threads decoding, across engagements.
        io_limiter: Shared cap on worker threads checkpointing and sealing.
        now_ms: Wall clock (Unix ms) for segment creation times.
        clock_ms: Monotonic clock (ms) that bounds how far timestamps may jump (timeline rule
            7): ``"trio"`` for trio's; None for offline replays fed faster than real time.

    Error handling:
        An exception from a sink or ``on_sealed`` ends the capture: open segments are still
        sealed (marked interrupted) before it propagates. Undecodable packets are not errors
        (they become gaps).
    """
    capture = _Capture(
        events,
        CaptureCore(
            sinks,
            recording_id=recording_id,
            originator_reference=originator_reference,
            config=config,
            now_ms=now_ms,
            clock_ms=trio_clock_ms() if clock_ms == "trio" else clock_ms,
        ),
        on_sealed=on_sealed,
        on_event=on_event,
        decode_limiter=decode_limiter or trio.CapacityLimiter(1),
        io_limiter=io_limiter or trio.CapacityLimiter(1),
    )
    return await capture.run()


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
    ) -> None:
        self._events = events
        self._core = core
        self._config = core.config
        self._on_sealed = on_sealed
        self._on_event = on_event
        self._decode_limiter = decode_limiter
        self._io_limiter = io_limiter
        self._batch: list[AudioPacket] = []
        self._undelivered: collections.deque[Sealed] = collections.deque()
        self._next_checkpoint = 0.0
        self._since_yield = 0

    async def run(self) -> EngagementManifest:
        core = self._core
        try:
            ended = await self._consume()
        except BaseException as exc:
            core.manifest.outcome = "cancelled" if isinstance(exc, trio.Cancelled) else "error"
            try:
                await self._finalize(interrupted=True)
            except Exception:
                # The original failure is what the caller must see; this one is only logged.
                logger.exception(
                    "sealing after a failure failed recording_id=%s", core.recording_id
                )
            raise
        core.manifest.outcome = "ended" if ended else "channel_closed"
        await self._finalize(interrupted=not ended)
        return core.manifest

    async def _consume(self) -> bool:
        """Returns True when the stream ended with ``StreamEnded``.

        Cheap audio (the common case: a known track, decoded inline, nothing sealed) is handled
        by ``_receive`` inside one wait scope whose deadline is the next checkpoint, so a paced
        stream does not pay for a new cancel scope per message. Everything that awaits anything
        but the channel (``on_event``, handing sealed segments on, batches, checkpoints) runs
        here, outside that scope, so the checkpoint deadline only ever interrupts a wait.
        """
        core = self._core
        self._next_checkpoint = trio.current_time() + self._config.checkpoint_interval_s
        self._since_yield = 0
        while True:
            event: CaptureEvent | None = None
            try:
                with trio.move_on_at(self._next_checkpoint):
                    event = await self._receive()
            except trio.EndOfChannel:
                await self._deliver([])
                await self._drain_batch()
                return False
            if self._undelivered:
                await self._deliver([])
            if event is None:
                # Housekeeping: the channel ran dry, a batch is full, a checkpoint is due.
                await self._drain_batch()
                if trio.current_time() >= self._next_checkpoint:
                    await self._checkpoint()
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
                    await self._deliver(core.handle_audio(event))
                else:
                    self._batch.append(event)
                    if len(self._batch) >= max(1, self._config.decode_batch):
                        await self._drain_batch()
            else:
                await self._drain_batch()
                if self._on_event is not None:
                    await self._on_event(event)
                await self._deliver(core.handle_event(event))
                if isinstance(event, StreamEnded):
                    return True
            self._since_yield += 1
            if self._since_yield >= _YIELD_EVERY:
                # Events that all need this path (none handled by _receive) must not starve
                # checkpoints or other tasks either.
                self._since_yield = 0
                if trio.current_time() >= self._next_checkpoint:
                    await self._drain_batch()
                    await self._checkpoint()
                await trio.lowlevel.checkpoint()

    async def _receive(self) -> CaptureEvent | None:
        """Handle cheap audio until an event needs ``_consume`` (returned) or housekeeping is
        due (None). Runs inside the checkpoint wait scope: awaits only the channel and bare
        schedule points, where a cancellation loses nothing; the core is driven synchronously.
        """
        events = self._events
        core = self._core
        tracks = core.tracks
        check_tracks = self._on_event is not None
        keep_sealed = self._on_sealed is not None
        batch = self._batch
        batch_size = max(1, self._config.decode_batch)
        while True:
            try:
                event = events.receive_nowait()
            except trio.WouldBlock:
                if self._batch or trio.current_time() >= self._next_checkpoint:
                    return None
                event = await events.receive()
                self._since_yield = 0
            if not isinstance(event, AudioPacket) or (check_tracks and event.track not in tracks):
                return event
            if core.is_inline(event):
                if batch:
                    return event
                sealed = core.handle_audio(event)
                if sealed:
                    if keep_sealed:
                        # Handed on by _consume before anything else (or by the finaliser).
                        self._undelivered.extend(sealed)
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
                if trio.current_time() >= self._next_checkpoint:
                    return None
                self._since_yield = 0
                await trio.lowlevel.checkpoint()

    async def _drain_batch(self) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        sealed = await trio.to_thread.run_sync(
            self._core.handle_audio_batch, batch, limiter=self._decode_limiter
        )
        await self._deliver(sealed)

    async def _checkpoint(self) -> None:
        await trio.to_thread.run_sync(self._core.checkpoint, limiter=self._io_limiter)
        self._next_checkpoint = trio.current_time() + self._config.checkpoint_interval_s

    async def _deliver(self, sealed: list[Sealed]) -> None:
        """Hand sealed segments on, in order; one interrupted by cancellation stays queued and
        is handed on by the (shielded) finaliser, so no sealed segment goes unannounced."""
        if self._on_sealed is None:
            return
        self._undelivered.extend(sealed)
        while self._undelivered:
            item = self._undelivered[0]
            await self._on_sealed(item.segment, item.entry)
            self._undelivered.popleft()

    async def _finalize(self, *, interrupted: bool) -> None:
        """Seal everything, shielded and time-bounded, whatever ended the capture."""
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self._config.finalize_timeout_s
            batch, self._batch = self._batch, []
            core = self._core

            def seal_all() -> list[Sealed]:
                sealed = core.handle_audio_batch(batch)
                return sealed + core.finish(interrupted=interrupted)

            # Segments sealed before a cancellation but not yet handed on go first.
            await self._deliver([])
            sealed = await trio.to_thread.run_sync(
                seal_all, limiter=self._io_limiter, abandon_on_cancel=True
            )
            await self._deliver(sealed)
        undelivered = self._undelivered
        if scope.cancelled_caught:
            logger.error(
                "finalisation timed out recording_id=%s after %.1f s; open segments are left "
                "to crash recovery",
                core.recording_id,
                self._config.finalize_timeout_s,
            )
            for item in undelivered:
                # Sealed and in the manifest, but the spool was not told: say which.
                logger.error(
                    "sealed segment not handed on recording_id=%s track=%s segment=%d",
                    core.recording_id,
                    item.segment.identity.track,
                    item.segment.identity.segment_index,
                )
