"""The checkpoint ticker shared by every engagement (recorder.capture.checkpoints): a checkpoint
reports only what its fsyncs covered, one engagement's failing fsync fails that engagement alone
and names its file, and members joining, leaving or being cancelled mid-tick lose no job."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.capture.checkpoints import (
    CheckpointCoordinator,
    CheckpointJob,
    open_checkpoint_coordinator,
)
from recorder.capture.core import CaptureConfig
from recorder.capture.pipeline import run_capture
from recorder.crypto import DirectoryRecordingKeyStore, RecordingKeyring, SpoolSinkFactory
from recorder.crypto.keys.local import LocalKeyProvider
from recorder.errors import StorageError
from recorder.rtms.events import AudioCodec, AudioFormat, AudioPacket, CaptureEvent, StreamEnded
from recorder.sink import SegmentIdentity
from recorder.testing.audio_source import encode_speech
from recorder.testing.memory_sink import MemorySink, MemorySinkFactory

T0 = 1_763_726_400_000
L16 = AudioFormat(AudioCodec.L16, 16_000, 1)
#: Bytes of 16 kHz mono L16 per ms.
BYTES_PER_MS = 32


class SlowDiskSinks(MemorySinkFactory):
    """Memory sinks whose ``checkpoint`` (in a worker thread) lasts until the stream has written
    ``lag_bytes`` more: a disk slower than the stream, so audio always arrives mid-fsync. Each
    checkpoint records the body size it covered (the size when it began)."""

    def __init__(self, lag_bytes: int) -> None:
        super().__init__()
        self._lag = lag_bytes
        self._grew = threading.Condition()
        self.covered: dict[int, list[int]] = {}

    def open(self, identity: SegmentIdentity, *, prologue_size: int = 0) -> MemorySink:
        sink = super().open(identity, prologue_size=prologue_size)
        plain_write, plain_checkpoint = sink.write, sink.checkpoint
        covered = self.covered.setdefault(identity.segment_index, [])

        def write(data: bytes) -> None:
            plain_write(data)
            with self._grew:
                self._grew.notify_all()

        def checkpoint() -> None:
            start = sink.body_size
            with self._grew:
                # Bounded: the stream may end first.
                self._grew.wait_for(lambda: sink.body_size >= start + self._lag, timeout=2)
            plain_checkpoint()
            covered.append(start)

        sink.write = write  # type: ignore[method-assign]
        sink.checkpoint = checkpoint  # type: ignore[method-assign]
        return sink


async def paced(send: trio.MemorySendChannel[CaptureEvent], packets: list[bytes]) -> None:
    async with send:
        for index, payload in enumerate(packets):
            await send.send(AudioPacket("mixed", T0 + index * 20, payload, L16))
            await trio.sleep(0.01)  # faster than Zoom, still one packet per wakeup
        await send.send(StreamEnded(T0 + 10**7, 1, "HOST_STOPPED", normal=True))


async def test_a_checkpoint_reports_only_what_its_fsync_covered() -> None:
    """The consumer writes on while the fsync runs: the RTMS time reported must be the one
    taken before the fsync began, never the later live edge."""
    speech = encode_speech("a", L16, seconds=3)
    sinks = SlowDiskSinks(lag_bytes=10 * 640)
    reported: list[tuple[int, int]] = []

    def on_checkpoint(durable_ms: int) -> None:
        # Before the first segment opens (the timeline holds the first 200 ms back) nothing is
        # covered, and the durable time must be the anchor itself.
        covered = sinks.covered.get(0, [0])
        reported.append((durable_ms, covered[-1] if covered else 0))

    send, receive = trio.open_memory_channel[CaptureEvent](8)
    config = CaptureConfig(segment_seconds=60, checkpoint_interval_s=0.1)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(paced, send, speech.packets)
            await run_capture(
                receive, sinks, recording_id="rec-d", config=config, on_checkpoint=on_checkpoint
            )
    assert len(reported) >= 3, reported
    for durable_ms, covered_bytes in reported:
        assert (durable_ms - T0) * BYTES_PER_MS <= covered_bytes, reported
    # Not vacuous: the fsyncs did cover audio, up to well into the call.
    assert max(d for d, _ in reported) >= T0 + 500


def _keyring(tmp_path: Path) -> RecordingKeyring:
    return RecordingKeyring(
        DirectoryRecordingKeyStore(tmp_path / "recording-keys"),
        provider=LocalKeyProvider(tmp_path / "kek"),
    )


async def test_a_failing_fsync_fails_its_engagement_alone_and_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two engagements share the ticker and the spool; the disk refuses the fsyncs of one
    engagement's files once it is armed. That engagement fails with the writer's error naming
    its file; the other records to its end and goes on being checkpointed."""
    sinks = SpoolSinkFactory(tmp_path / "spool", _keyring(tmp_path))
    speech = encode_speech("a", L16, seconds=2)
    armed = threading.Event()
    refused: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        if armed.is_set() and "rec-bad" in name and name.endswith(".part"):
            refused.append(name)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    good_reported: list[int] = []
    config = CaptureConfig(segment_seconds=60, checkpoint_interval_s=0.1)
    failures: list[BaseException] = []

    def on_bad_checkpoint(durable_ms: int) -> None:
        if durable_ms > T0:
            armed.set()  # a checkpoint of the open segment went through: the next one fails

    async def bad() -> None:
        send, receive = trio.open_memory_channel[CaptureEvent](8)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(paced, send, speech.packets)
            try:
                await run_capture(
                    receive,
                    sinks,
                    recording_id="rec-bad",
                    config=config,
                    on_checkpoint=on_bad_checkpoint,
                    checkpoints=ticker,
                )
            except StorageError as exc:
                failures.append(exc)
                nursery.cancel_scope.cancel()

    async def good() -> None:
        send, receive = trio.open_memory_channel[CaptureEvent](8)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(paced, send, speech.packets)
            manifest = await run_capture(
                receive,
                sinks,
                recording_id="rec-good",
                config=config,
                on_checkpoint=good_reported.append,
                checkpoints=ticker,
            )
        assert manifest.outcome == "ended"
        assert [e.interrupted for e in manifest.audio_entries()] == [False]

    with trio.fail_after(30):
        async with open_checkpoint_coordinator(0.1) as ticker, trio.open_nursery() as nursery:
            nursery.start_soon(bad)
            nursery.start_soon(good)
    assert len(failures) == 1
    assert "cannot fsync" in str(failures[0])
    assert refused
    assert refused[0].endswith(".part")
    assert Path(refused[0]).name in str(failures[0])
    # Checkpoints of the good engagement went on after the bad one failed (2 s of audio at one
    # checkpoint per 0.1 s; the bad one failed at its second).
    assert len(good_reported) >= 5, good_reported
    assert good_reported == sorted(good_reported)


class Member:
    """A ``CheckpointOwner`` at the Protocol seam: each tick yields a job over ``targets``."""

    def __init__(self, name: str, targets: list[Target]) -> None:
        self.name = name
        self.targets = targets
        self.in_flight: CheckpointJob | None = None
        self.ticked: list[CheckpointJob] = []
        self.done: list[CheckpointJob] = []
        self.three_done = trio.Event()

    def checkpoint_tick(self) -> CheckpointJob | None:
        if self.in_flight is not None:
            return None
        self.in_flight = CheckpointJob(self, self.targets, durable_ms=len(self.ticked))
        self.ticked.append(self.in_flight)
        return self.in_flight

    def checkpoint_done(self, job: CheckpointJob) -> None:
        assert job is self.in_flight, "told of a job that is not in flight"
        self.in_flight = None
        self.done.append(job)
        if len(self.done) >= 3:
            self.three_done.set()


class Target:
    """A sink whose ``checkpoint`` waits for the test to release it (a stalled disk)."""

    def __init__(self, gate: threading.Event | None = None, fail: bool = False) -> None:
        self.gate = gate
        self.fail = fail
        self.started = threading.Event()
        #: This target's checkpoint began (``started`` may be shared by several targets).
        self.entered = False
        self.checkpoints = 0

    def checkpoint(self) -> None:
        self.entered = True
        self.started.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail:
            raise StorageError("cannot fsync /spool/x.part: Input/output error")
        self.checkpoints += 1


async def _wait_thread_event(event: threading.Event) -> None:
    await trio.to_thread.run_sync(event.wait, 10)


async def test_members_joining_leaving_and_cancelled_mid_tick_lose_no_job() -> None:
    """Every job a tick took is told exactly once: run (completed), failed (its own error, the
    others of its hop still run) or never run (the ticker was cancelled before its hop)."""
    gate = threading.Event()
    a = Member("a", [Target(gate)])
    b = Member("b", [Target(gate, fail=True), Target()])
    c = Member("c", [Target(gate)])
    late = Member("late", [Target()])
    coordinator = CheckpointCoordinator(0.05, limiter=trio.CapacityLimiter(1), max_hops=3)
    members = (a, b, c)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(coordinator.run)
            for member in members:
                coordinator.join(member)
            # The first tick's three hops: whichever trio schedules first holds the only
            # thread, stalled on its disk; the other two wait for the limiter.
            first = await _first_started(members)
            coordinator.join(late)  # joins mid-tick: next tick
            coordinator.leave(c)  # leaves mid-tick: its queued job is still told
            nursery.cancel_scope.cancel()
            gate.set()  # the running hop finishes; the cancel is then delivered
    for member in members:
        assert len(member.ticked) == 1
        assert member.done == member.ticked
        assert member.in_flight is None
    ran = first.done[0]
    assert ran.completed is (first is not b)
    assert (ran.failure is not None) is (first is b)
    # The other two waited for the limiter when the ticker was cancelled: never run, not failed.
    for member in members:
        if member is not first:
            assert not member.done[0].completed
            assert member.done[0].failure is None
            assert all(target.checkpoints == 0 for target in member.targets)
    assert late.ticked == late.done == []


async def _first_started(members: tuple[Member, ...]) -> Member:
    """The member whose first target's checkpoint began first (it holds the worker thread)."""
    began = threading.Event()
    for member in members:
        member.targets[0].started = began
    await _wait_thread_event(began)
    [first] = [member for member in members if member.targets[0].entered]
    return first


async def test_a_failing_target_fails_only_its_own_job() -> None:
    failing, after = Target(fail=True), Target()
    bad, good = Member("bad", [failing, after]), Member("good", [Target()])
    coordinator = CheckpointCoordinator(0.05, max_hops=1)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(coordinator.run)
            coordinator.join(bad)
            coordinator.join(good)
            await good.three_done.wait()
            nursery.cancel_scope.cancel()
    assert all(isinstance(job.failure, StorageError) for job in bad.done)
    assert not any(job.completed for job in bad.done)
    # The job stopped at its failing sink; the other member's jobs of the same hops ran.
    assert after.checkpoints == 0
    assert all(job.completed and job.failure is None for job in good.done[:3])


class GatedSinks(MemorySinkFactory):
    """Memory sinks whose ``checkpoint`` tells the test it began, then waits for the gate."""

    def __init__(self, gate: threading.Event, began: trio.Event) -> None:
        super().__init__()
        self._gate = gate
        self._began = began
        self._token = trio.lowlevel.current_trio_token()

    def open(self, identity: SegmentIdentity, *, prologue_size: int = 0) -> MemorySink:
        sink = super().open(identity, prologue_size=prologue_size)
        plain_checkpoint = sink.checkpoint

        def checkpoint() -> None:
            self._token.run_sync_soon(self._began.set)
            self._gate.wait(10)
            plain_checkpoint()

        sink.checkpoint = checkpoint  # type: ignore[method-assign]
        return sink


async def test_a_capture_cancelled_while_its_checkpoint_runs_seals_all_it_wrote() -> None:
    """The shared ticker's hop is stalled on this capture's fsync when the capture is
    cancelled: the finaliser does not wait for it, seals every byte, and the late job's
    outcome is not reported as a checkpoint of a capture that is gone."""
    gate, began = threading.Event(), trio.Event()
    sinks = GatedSinks(gate, began)
    speech = encode_speech("a", L16, seconds=1)
    send, receive = trio.open_memory_channel[CaptureEvent](len(speech.packets))
    for index, payload in enumerate(speech.packets):
        send.send_nowait(AudioPacket("mixed", T0 + index * 20, payload, L16))
    reported: list[int] = []
    scope = trio.CancelScope()

    async def capture() -> None:
        with scope:
            await run_capture(
                receive,
                sinks,
                recording_id="rec-c",
                config=CaptureConfig(segment_seconds=60),
                on_checkpoint=reported.append,
                checkpoints=ticker,
            )

    with trio.fail_after(30):
        async with open_checkpoint_coordinator(0.05) as ticker:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(capture)
                await began.wait()
                scope.cancel()
            # The capture is finalised while its fsync is still stalled.
            audio = [s for s in sinks.sinks if s.identity.track == "mixed"]
            assert [s.sealed is not None for s in audio] == [True]
            assert audio[0].plaintext.endswith(speech.pcm)
            # Leaving the block cancels the ticker, which waits for the stalled hop and then
            # tells the job (completed, of a capture that has left).
            gate.set()
    assert reported == []


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["join", "leave", "yield"]), st.integers(0, 3)), max_size=16
    ),
    fail=st.sets(st.integers(0, 3)),
)
def test_any_interleaving_of_joins_leaves_and_a_cancel_tells_every_job_once(
    steps: list[tuple[str, int]], fail: set[int]
) -> None:
    """Members join and leave at any schedule point, some members' sinks fail, and the ticker
    is cancelled at the end, whatever is running: every job a tick took is told exactly once,
    with its own outcome, and nothing is left in flight."""
    members = [Member(str(i), [Target(fail=i in fail), Target()]) for i in range(4)]

    async def scenario() -> None:
        coordinator = CheckpointCoordinator(0.0, max_hops=2)
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(coordinator.run)
                for action, index in steps:
                    if action == "join":
                        coordinator.join(members[index])
                    elif action == "leave":
                        coordinator.leave(members[index])
                    else:
                        for _ in range(index + 1):
                            await trio.lowlevel.checkpoint()
                nursery.cancel_scope.cancel()

    trio.run(scenario)
    for index, member in enumerate(members):
        assert member.in_flight is None
        assert member.done == member.ticked
        for job in member.done:
            if index in fail:
                assert not job.completed
            else:
                assert job.failure is None
            if job.failure is not None:
                assert index in fail
