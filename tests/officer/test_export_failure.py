"""A failed export reports its root cause whatever the threads' timing: the ranking over every
error that reached the nursery, the pipe between the loop and a track's thread, and whole
exports of a sealed two-leg call with one stored segment altered, the listening mix made to give
up before the altered track's own error arrives."""

from __future__ import annotations

import hashlib
import os
import re
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.audio.wav import HEADER_SIZE, BextInfo, build_wav_header
from recorder.bench.export import seal_call
from recorder.catalog.base import SegmentRow, UploadState
from recorder.crypto.opaque import OPAQUE_PLAINTEXT_DIGEST
from recorder.crypto.writer import SpoolSinkFactory
from recorder.errors import (
    BundleWriteFailed,
    DecryptionFailed,
    DigestMismatch,
    IntegrityError,
    RecorderError,
    StoreUnavailable,
)
from recorder.officer.bundle import export as bundle_export
from recorder.officer.bundle import wavio
from recorder.officer.bundle.export import export_bundle
from recorder.officer.bundle.failure import root_cause
from recorder.officer.bundle.pipe import Pipe, PipeAborted
from recorder.officer.bundle.plan import TrackPlan, plan_track
from recorder.officer.bundle.signing import generate_signing_key, load_signing_key
from recorder.officer.bundle.wavio import TrackAbandoned, TrackProgress
from recorder.service.components import Components, open_components
from recorder.service.demo import demo_config
from recorder.sink import SegmentIdentity
from recorder.store.local import encode_component
from recorder.store.memory import MemoryStore
from tests.crypto.conftest import make_keyring
from tests.officer.support import file_size_limit

ROOT = DecryptionFailed("rec/channel-caller/000002.wav.rec: chunk 3 failed authentication")


def _cancelled() -> trio.Cancelled:
    # trio makes these itself; a test only needs one to rank (never raised here).
    return trio.Cancelled._create()  # type: ignore[attr-defined, no-any-return]


DERIVED: list[BaseException] = [
    TrackAbandoned("channel-caller.wav: the track failed, so no listening file is made"),
    PipeAborted("channel-agent.wav: the export stopped"),
]


def _nest(draw: st.DrawFn, errors: list[BaseException]) -> BaseExceptionGroup[BaseException]:
    """The errors in any order, some of them in nested groups (as nurseries inside nurseries
    deliver them)."""
    order = draw(st.permutations(errors))
    out: list[BaseException] = []
    for exc in order:
        if draw(st.booleans()):
            out.append(BaseExceptionGroup("inner", [exc]))
        else:
            out.append(exc)
    return BaseExceptionGroup("nursery", out)


@st.composite
def with_root(draw: st.DrawFn) -> BaseExceptionGroup[BaseException]:
    derived = draw(st.lists(st.sampled_from([*DERIVED, _cancelled()]), max_size=4))
    return _nest(draw, [ROOT, *derived])


@settings(max_examples=200, deadline=None)
@given(with_root())
def test_the_root_cause_is_reported_whatever_arrived_first(
    group: BaseExceptionGroup[BaseException],
) -> None:
    # (The former ``_first_error`` gave ``TrackAbandoned`` whenever it arrived first: its split
    # predicate matched the whole group.)
    assert root_cause(group) is ROOT


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_two_root_causes_give_the_same_report_in_any_order(data: st.DataObject) -> None:
    other_track = DigestMismatch("rec/channel-agent/000001.wav.rec: stored object differs")
    store = StoreUnavailable("rec/channel-agent/000004.wav.rec: the store did not answer")
    first = data.draw(st.permutations([ROOT, other_track, store, *DERIVED]))
    # Integrity errors outrank the store's; between two, the one whose object sorts first.
    assert root_cause(BaseExceptionGroup("n", first)) is other_track
    assert root_cause(BaseExceptionGroup("n", [store, *DERIVED])) is store


def test_a_bug_is_never_hidden_behind_a_derived_error() -> None:
    bug = ZeroDivisionError("a bug")
    group = BaseExceptionGroup("n", [DERIVED[0], bug])
    assert root_cause(group) is group


def test_ctrl_c_inside_an_export_is_reported_as_itself() -> None:
    ctrl_c = KeyboardInterrupt()
    inner = BaseExceptionGroup("track", [ctrl_c, DERIVED[1]])
    found = root_cause(BaseExceptionGroup("n", [ROOT, inner, _cancelled()]))
    assert found is ctrl_c


def test_a_cancelled_export_stays_cancelled() -> None:
    cancelled = _cancelled()
    found = root_cause(BaseExceptionGroup("n", [DERIVED[0], cancelled, DERIVED[1]]))
    assert isinstance(found, BaseExceptionGroup)
    assert found.exceptions == (cancelled,)


# --- the pipe -------------------------------------------------------------------------------


async def test_the_pipe_hands_items_over_in_order_and_holds_at_most_its_capacity() -> None:
    pipe: Pipe[int] = Pipe(2, "t.wav")
    got: list[int | None] = []
    most = [0]
    release = threading.Event()

    def consume() -> None:
        release.wait()
        while (item := pipe.get()) is not None:
            most[0] = max(most[0], len(pipe._items) + 1)
            got.append(item)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, consume)
        await pipe.put(0)
        await pipe.put(1)
        assert not pipe._try_put(2)  # full: ``put`` would wait for the consumer
        release.set()
        for item in range(2, 50):
            await pipe.put(item)
        pipe.close()
    assert got == list(range(50))
    assert most[0] <= 2


async def test_the_producers_error_reaches_the_consumer_as_itself_after_what_came_before() -> None:
    pipe: Pipe[bytes] = Pipe(4, "t.wav")
    await pipe.put(b"a")
    pipe.fail(ROOT)
    assert pipe.get() == b"a"
    with pytest.raises(DecryptionFailed) as caught:
        pipe.get()
    assert caught.value is ROOT


async def test_an_aborted_pipe_stops_both_ends_and_returns_what_was_never_taken() -> None:
    pipe: Pipe[bytes] = Pipe(4, "t.wav")
    await pipe.put(b"a")
    assert pipe.abort() == [b"a"]
    with pytest.raises(PipeAborted):
        pipe.get()
    with pytest.raises(PipeAborted):
        await pipe.put(b"b")


# --- whole exports ---------------------------------------------------------------------------


class GivesUpFirst(TrackProgress):
    """The race forced one way: a failing track's writer waits, before its own error goes on,
    until the listening mix has given up on it, so ``TrackAbandoned`` arrives first."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.listening_gave_up = threading.Event()

    def _check(self) -> None:
        try:
            super()._check()
        except TrackAbandoned:
            self.listening_gave_up.set()
            raise

    def failed(self) -> None:
        super().failed()
        failing = isinstance(sys.exc_info()[1], IntegrityError)
        if failing and threading.current_thread() is not threading.main_thread():
            # The altered track's own thread. Bounded: the mix may be waiting on the other
            # track instead, and then only this error going on ends the wait.
            self.listening_gave_up.wait(timeout=2)


@pytest.fixture
def gives_up_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundle_export, "TrackProgress", GivesUpFirst)


def _object_path(c: Components, object_key: str) -> Path:
    root = c.config.storage.local_store_path
    assert root is not None
    return root.joinpath(*(encode_component(part) for part in object_key.split("/")))


def _flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    os.chmod(path, 0o600)
    path.write_bytes(bytes(data))


def _cut_end(path: Path) -> None:
    data = path.read_bytes()
    os.chmod(path, 0o600)
    path.write_bytes(data[: len(data) - 100])


ALTERATIONS = {"flipped": (_flip_middle, DecryptionFailed), "cut": (_cut_end, IntegrityError)}


@pytest.mark.timeout(240)
async def _failed_export(c: Components, recording_id: str, tmp_path: Path) -> RecorderError:
    """The error of exporting ``recording_id`` to ``tmp_path/bundle``, after checking that the
    failed export left neither the bundle nor its temporary directory behind."""
    generate_signing_key(tmp_path / "signing.ed25519")
    out = tmp_path / "bundle"
    with pytest.raises(RecorderError) as caught:
        await export_bundle(
            c,
            [recording_id],
            out,
            actor="officer-1",
            reason="a second look",
            signing_key=load_signing_key(tmp_path / "signing.ed25519"),
        )
    assert not out.exists()
    assert [p.name for p in await trio.Path(tmp_path).iterdir() if "bundle" in p.name] == []
    return caught.value


@pytest.mark.usefixtures("gives_up_first")
@pytest.mark.parametrize("track", ["channel-agent", "channel-caller"])
@pytest.mark.parametrize("index", [0, 2])
@pytest.mark.parametrize("alteration", sorted(ALTERATIONS))
async def test_an_altered_segment_is_named_even_when_the_mix_gives_up_first(
    tmp_path: Path, track: str, index: int, alteration: str
) -> None:
    alter, expected = ALTERATIONS[alteration]
    async with open_components(demo_config(tmp_path / "state")) as c:
        recording_id = await seal_call(c, 60, segment_s=20)
        detail = await c.catalog.show(recording_id)
        assert detail is not None
        [seg] = [s for s in detail.segments if s.track == track and s.segment_index == index]
        alter(_object_path(c, seg.object_key))
        failure = await _failed_export(c, recording_id, tmp_path)
    assert isinstance(failure, expected), repr(failure)
    assert not isinstance(failure, (TrackAbandoned, PipeAborted))
    assert str(failure).startswith(seg.object_key), str(failure)
    assert failure.exit_code in (91, 92, 93)


async def test_a_store_that_fails_mid_track_is_named_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    """The feeder's own failure (the object is gone) surfaces from the track's thread as itself,
    after the segments before it were written."""
    async with open_components(demo_config(tmp_path / "state")) as c:
        recording_id = await seal_call(c, 60, segment_s=20)
        detail = await c.catalog.show(recording_id)
        assert detail is not None
        [seg] = [s for s in detail.segments if s.track == "channel-agent" and s.segment_index == 1]
        path = _object_path(c, seg.object_key)
        os.chmod(path.parent, 0o700)
        path.unlink()
        failure = await _failed_export(c, recording_id, tmp_path)
    assert not isinstance(failure, (TrackAbandoned, PipeAborted)), repr(failure)
    assert seg.object_key in str(failure)


async def test_a_full_disk_names_the_bundle_file_not_the_object_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel refuses a write of the bundle half way (a file size limit, as a full disk
    would): the error names a file being written (a track's or the listening file, whichever
    reaches the limit first), not an object of the evidence, and nothing is left behind."""
    monkeypatch.setattr(wavio, "BUFFER_BYTES", 64 << 10)
    async with open_components(demo_config(tmp_path / "state")) as c:
        recording_id = await seal_call(c, 60, segment_s=20)
        with file_size_limit(1 << 20):
            failure = await _failed_export(c, recording_id, tmp_path)
    assert isinstance(failure, BundleWriteFailed), repr(failure)
    named = re.search(
        r"/(audio/channel-\w+|listening)\.wav: cannot write: File too large$", str(failure)
    )
    assert named, str(failure)
    assert f"/{recording_id}/" in str(failure)


async def test_a_track_the_disk_refuses_names_its_wav_not_the_object_being_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One track's thread alone (no listening file to fail first): the write refused half way
    through the second object names the track's WAV, not that object."""
    monkeypatch.setattr(wavio, "BUFFER_BYTES", 64 << 10)
    with trio.fail_after(60):
        parts, plan, first, _ = await _opaque_then_sealed(tmp_path)
        target = tmp_path / "mixed.wav"
        tally = bundle_export._Tally(total=0)
        with file_size_limit(len(first) + (256 << 10)), pytest.raises(BundleWriteFailed) as caught:
            await bundle_export._write_track(parts, plan, target, tally, TrackProgress(target.name))
    assert str(caught.value) == f"{target}: cannot write: File too large"


# --- one track's thread over both kinds of stored object -------------------------------------


def _identity(index: int) -> SegmentIdentity:
    return SegmentIdentity(
        recording_id="rec-mixed-kinds",
        track="mixed",
        segment_index=index,
        created_ms=1_767_225_600_000 + index,
        metadata={
            "kind": "audio",
            "source": "L16",
            "wav.rate": 16000,
            "wav.channels": 1,
            "bext.ref": "test",
            "bext.origination_ms": 1_767_225_600_000,
        },
    )


def _row(index: int, stored: Path, plaintext_sha256: str, pcm: bytes, start: int) -> SegmentRow:
    return SegmentRow(
        recording_id="rec-mixed-kinds",
        track="mixed",
        segment_index=index,
        participant_id=None,
        object_key=f"k/{index}",
        version_id=None,
        plaintext_sha256=plaintext_sha256,
        stored_sha256=hashlib.sha256(stored.read_bytes()).hexdigest(),
        plaintext_size=HEADER_SIZE + len(pcm),
        stored_size=stored.stat().st_size,
        start_ms=1_767_225_600_000 + start // 16,
        end_ms=1_767_225_600_000 + (start + len(pcm) // 2) // 16,
        start_sample=start,
        sample_count=len(pcm) // 2,
        sample_rate=16000,
        codec="L16",
        key_id="",
        retain_until_ms=None,
        upload_state=UploadState.VERIFIED,
        recovered=plaintext_sha256 == OPAQUE_PLAINTEXT_DIGEST,
        uploaded_ms=None,
        verified_ms=None,
    )


async def _opaque_then_sealed(tmp_path: Path) -> tuple[Components, TrackPlan, bytes, bytes]:
    """A track of two stored objects: an opaque upload (a ``.part`` whose writer died) then a
    sealed segment; returns the two parts of ``Components`` a track uses, its plan and the
    audio of each."""
    keyring = make_keyring(tmp_path / "keys")
    factory = SpoolSinkFactory(tmp_path / "spool", keyring, chunk_size=4096)
    first = np.arange(-6000, 6000, dtype="<i2").tobytes() * 2
    second = np.arange(6000, -6000, -1, dtype="<i2").tobytes() * 50  # 1.2 MB: several pieces
    sink = factory.open(_identity(0), prologue_size=HEADER_SIZE)
    sink.write(first)
    sink.checkpoint()
    part = sink.part_path
    os.close(sink._fd)  # type: ignore[attr-defined]  # the writer died: never closed
    sink = factory.open(_identity(1), prologue_size=HEADER_SIZE)
    sink.write(second)
    header = build_wav_header(
        sample_rate=16000,
        channels=1,
        data_length=len(second),
        bext=BextInfo("rec-mixed-kinds", 1_767_225_600_000),
    )
    sealed = sink.close(header)
    assert sealed.path is not None
    store = MemoryStore()
    rows = [
        _row(0, part, OPAQUE_PLAINTEXT_DIGEST, first, 0),
        _row(1, sealed.path, sealed.sha256, second, len(first) // 2),
    ]
    for row, path in zip(rows, (part, sealed.path), strict=True):
        await store.put(row.object_key, path, sha256=str(row.stored_sha256), retain_until=None)
    parts = cast(Components, SimpleNamespace(store=store, keyring=keyring))
    return parts, plan_track("mixed", rows, []), first, second


async def test_a_track_of_an_opaque_upload_then_a_sealed_segment_is_written_whole(
    tmp_path: Path,
) -> None:
    """The thread takes an opaque upload (spooled whole, recovered) and a sealed segment (fed
    piece by piece) from the same pipe, in order, into one WAV."""
    with trio.fail_after(60):
        parts, plan, first, second = await _opaque_then_sealed(tmp_path)
        target = tmp_path / "mixed.wav"
        labels: list[str] = []
        tally = bundle_export._Tally(total=0, progress=lambda _d, _t, label: labels.append(label))
        sha, size, channels = await bundle_export._write_track(
            parts, plan, target, tally, TrackProgress(target.name)
        )
    data = target.read_bytes()
    assert (channels, size, sha) == (1, len(data), hashlib.sha256(data).hexdigest())
    assert data[44:] == first + second
    assert labels == ["k/0", "k/1"]
