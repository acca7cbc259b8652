"""One checkpoint ticker for every engagement of the process: the fsyncs of a tick in one hop.

Each engagement used to make its sinks durable on its own: its consumer's wait was interrupted
by a deadline once a second, and a worker-thread hop ran the fsyncs while the consumer waited
(issue 13: ~16 µs of ~95 per L16 message, checkpoints every 1 s against every 4 s). Measured
apart (150 idle tasks, 32 KB write + fsync each a second, this VM): a task's own timer wakeup
~300 µs of CPU, its thread hop ~170 µs on the trio thread and ~95 µs in the worker, the fsyncs
~250 µs more when 150 run one by one from their own hops; one tick for all of them: ~11 µs on
the trio thread and ~92 µs in the workers per engagement. In ``bench fullpath`` (50 paced
engagements, quiet host, three alternating pairs against the per-engagement checkpoints) the
worker threads' share fell from 15-18 to 5-7 µs a message, and the full path from 1.00x to 0.90x
bare trio-websocket for L16, 1.05x to 0.90x for G.711 (medians). Here one task ticks once per
interval for all of them:

* At a tick, each member (an engagement's capture, ``CheckpointOwner``) whose consumer is idle
  takes its snapshot at once, on the trio thread: the sinks to make durable and the RTMS time
  they will be durable through (``checkpoint_tick``). A member whose consumer is busy is told
  its checkpoint is due and submits its snapshot itself at its next housekeeping point
  (``submit``), so nothing interrupts a wait.
* The snapshots of a tick are run in at most ``max_hops`` worker-thread hops (under the
  process-wide segment I/O limiter), each calling every sink's ``checkpoint`` in turn. The
  consumers go on writing meanwhile: each sink serialises its own writes and checkpoints, and
  what was written before the snapshot is durable once its ``checkpoint`` returned.
* Each member is told of its own job (``checkpoint_done``): completed, failed with its own
  exception (the sink's ``StorageError``, which names the file; the other members' jobs run
  on), or not run at all (the ticker was cancelled first).

A member has at most one job in flight: a tick that finds one still running skips that member.
The ticker is owned by a nursery (``open_checkpoint_coordinator``, or a capture's own when none
is shared); cancelling it waits for a running hop to finish (abandoning it would leave a
member's job untold), then tells every member of what did not run.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import NoReturn, Protocol

import trio

from recorder.capture.actions import segment_io_limiter
from recorder.sink import EvidenceSink

#: Worker-thread hops per tick: two keep a slow disk's fsyncs from running strictly one after
#: the other while leaving the shared segment I/O limiter's other threads to opens and seals.
DEFAULT_MAX_HOPS = 2


class CheckpointJob:
    """One member's checkpoint: its sinks, and what they make durable."""

    __slots__ = ("completed", "durable_ms", "failure", "owner", "targets")

    def __init__(
        self, owner: CheckpointOwner, targets: Sequence[EvidenceSink], durable_ms: int | None
    ) -> None:
        self.owner = owner
        self.targets = targets
        #: RTMS ms the targets are durable through once the job completed (None: unknown).
        self.durable_ms = durable_ms
        #: Every target's ``checkpoint`` returned.
        self.completed = False
        #: What a target's ``checkpoint`` raised (the job stopped there).
        self.failure: Exception | None = None

    def run(self) -> None:
        """Blocking: in a worker thread. A failure is kept for the owner, never raised, so the
        other jobs of the hop still run."""
        try:
            for target in self.targets:
                target.checkpoint()
        except Exception as exc:
            self.failure = exc
        else:
            self.completed = True


class CheckpointOwner(Protocol):
    """A member of the ticker (``recorder.capture.pipeline``'s capture)."""

    def checkpoint_tick(self) -> CheckpointJob | None:
        """A tick (trio thread): the snapshot, if it can be taken now; else None (the owner
        submits it later, or has a job in flight)."""
        ...

    def checkpoint_done(self, job: CheckpointJob) -> None:
        """The job ran, failed, or was never run (trio thread)."""
        ...


class CheckpointCoordinator:
    """See the module docstring. ``run`` is the ticker's task."""

    def __init__(
        self,
        interval_s: float,
        *,
        limiter: trio.CapacityLimiter | None = None,
        max_hops: int = DEFAULT_MAX_HOPS,
    ) -> None:
        self.interval_s = interval_s
        #: By default the process-wide segment I/O limiter (resolved in ``run``: a RunVar).
        self._limiter = limiter
        self._max_hops = max(1, max_hops)
        self._members: dict[CheckpointOwner, None] = {}
        self._queue: list[CheckpointJob] = []
        self._submitted = trio.Event()
        #: Ticks and hops so far (for tests and benchmarks).
        self.ticks = 0
        self.hops = 0

    def join(self, owner: CheckpointOwner) -> None:
        self._members[owner] = None

    def leave(self, owner: CheckpointOwner) -> None:
        """A job of this owner still queued or running is still run (its sinks may be sealed
        meanwhile: a sink's ``checkpoint`` after its ``close`` does nothing) and still told."""
        self._members.pop(owner, None)

    def submit(self, job: CheckpointJob) -> None:
        """A snapshot taken by a member whose consumer was busy at the tick: run soon."""
        self._queue.append(job)
        self._submitted.set()

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        if self._limiter is None:
            self._limiter = segment_io_limiter()
        next_tick = trio.current_time() + self.interval_s
        task_status.started()
        try:
            while True:
                if not self._queue:
                    with trio.move_on_at(next_tick):
                        self._submitted = trio.Event()
                        await self._submitted.wait()
                now = trio.current_time()
                if now >= next_tick:
                    # A late tick is not made up for: the next one is an interval away.
                    next_tick = max(next_tick + self.interval_s, now)
                    self.ticks += 1
                    for owner in list(self._members):
                        job = owner.checkpoint_tick()
                        if job is not None:
                            self._queue.append(job)
                jobs, self._queue = self._queue, []
                if jobs:
                    await self._run_jobs(jobs)
                elif self.interval_s <= 0:
                    # A zero interval (tests) must not spin without a schedule point.
                    await trio.lowlevel.checkpoint()
        finally:
            # Cancelled: what never ran is told so (its owner is due again, nothing durable).
            jobs, self._queue = self._queue, []
            for job in jobs:
                job.owner.checkpoint_done(job)

    async def _run_jobs(self, jobs: list[CheckpointJob]) -> None:
        hops = min(self._max_hops, len(jobs))
        size = math.ceil(len(jobs) / hops)
        groups = [jobs[start : start + size] for start in range(0, len(jobs), size)]
        try:
            if len(groups) == 1:
                await self._hop(groups[0])
            else:
                async with trio.open_nursery() as nursery:
                    for group in groups:
                        nursery.start_soon(self._hop, group)
        finally:
            # Also on cancellation: a hop that started was waited for, one that did not
            # leaves its jobs neither completed nor failed.
            for job in jobs:
                job.owner.checkpoint_done(job)

    async def _hop(self, jobs: list[CheckpointJob]) -> None:
        self.hops += 1
        await trio.to_thread.run_sync(_run_all, jobs, limiter=self._limiter)


def _run_all(jobs: list[CheckpointJob]) -> None:
    for job in jobs:
        job.run()


@asynccontextmanager
async def open_checkpoint_coordinator(
    interval_s: float,
    *,
    limiter: trio.CapacityLimiter | None = None,
    max_hops: int = DEFAULT_MAX_HOPS,
) -> AsyncIterator[CheckpointCoordinator]:
    """A ticker shared by the captures run inside the block (``run_capture(checkpoints=)``)."""
    coordinator = CheckpointCoordinator(interval_s, limiter=limiter, max_hops=max_hops)
    async with trio.open_nursery() as nursery:
        await nursery.start(coordinator.run)
        yield coordinator
        nursery.cancel_scope.cancel()
