"""``recorder export``: a signed bundle of whole recordings, built beside its target, renamed
into place only when complete.

Rule: an export is the only place plaintext leaves the recorder, so nothing partial may remain
or look complete. Everything is written into a 0700 temporary directory next to ``--out``; any
failure removes it (shielded) and the error names the object; only a finished, signed bundle is
renamed to ``--out``, which must not exist (nothing is overwritten). Each object is read from the
store, its stored SHA-256 compared with the catalog's, every chunk authenticated while it is
written, and its plaintext SHA-256 compared with the digest sealed at recording. Each recording's
export is audited before anything is decrypted (invariant 9), and the audit event is in the
signed manifest. Memory stays bounded: encrypted objects are spooled to disk past a threshold
and plaintext passes through one chunk at a time.

Bundle layout::

    manifest.json            every file's SHA-256, sources, gaps, holds, audit events
    manifest.sig             Ed25519 signature of manifest.json (``recorder verify-export``)
    <recording_id>/audio/<track>.wav    one continuous WAV per track
    <recording_id>/listening.wav        stereo (calls) or mono (meetings) on one clock
    <recording_id>/transcript.txt, transcript.vtt, chat.json, events.json
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from io import FileIO
from pathlib import Path
from typing import IO, BinaryIO, Final, cast

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from recorder.catalog.base import (
    AuditEvent,
    RecordFileRow,
    RecordingDetail,
    RecordingStatus,
    SegmentRow,
    UploadState,
)
from recorder.crypto._format import SegmentHeader
from recorder.crypto.keyring import SegmentKeyOpener
from recorder.crypto.opener import SegmentOpener
from recorder.crypto.reader import iter_plaintext
from recorder.durable import create_synced, fsync_directory, open_bundle_file
from recorder.errors import (
    BundleWriteFailed,
    DigestMismatch,
    HeaderMismatch,
    RecorderError,
    StorageError,
)
from recorder.officer.bundle import listening, transcript
from recorder.officer.bundle.failure import root_cause
from recorder.officer.bundle.manifest import (
    BUNDLE_FORMAT,
    MANIFEST_NAME,
    SIGNATURE_NAME,
    canonical,
    file_entry,
    recording_entry,
    source_entry,
)
from recorder.officer.bundle.pipe import Pipe, PipeAborted
from recorder.officer.bundle.plan import Filler, Placed, TrackPlan, plan_track
from recorder.officer.bundle.publish import publish
from recorder.officer.bundle.signing import key_id, sign
from recorder.officer.bundle.wavio import SegmentSink, TrackProgress, WavWriter
from recorder.officer.opaque import is_opaque, recovered_copy
from recorder.officer.verify import IN_MEMORY_BYTES, staged_copy
from recorder.service.components import Components, now_ms
from recorder.store.base import LocalObjects, close_after_error, staging
from recorder.video.export import export_video
from recorder.video.track import VIDEO_RECORD_KINDS

#: Tracks of one recording exported at the same time (one worker thread each; memory is per
#: track).
TRACKS_AT_ONCE: Final = 2
#: Stored pieces (up to 1 MiB each, or whole objects of a local store) ahead of the one being
#: decrypted, per track.
PREFETCH_PIECES: Final = 4
#: Bytes per ``readinto`` when a track's thread reads a local store's file itself.
FILE_READ_BYTES: Final = 1 << 20
#: In a partial bundle directory: the exporting process's pid (removed before the rename).
OWNER_FILE: Final = ".owner-pid"
#: A partial directory without an owner file is only taken for abandoned after this long.
OWNERLESS_GRACE_S: Final = 60.0
#: How long the failure cleanup may take before it is abandoned (it is shielded).
CLEANUP_TIMEOUT_S: Final = 60.0

Progress = Callable[[int, int, str], None]


@dataclass(slots=True)
class BundleResult:
    out_dir: Path
    recordings: list[str]
    files: int
    audio_bytes: int
    manifest_sha256: str


@dataclass(slots=True)
class _Tally:
    total: int
    done: int = 0
    progress: Progress | None = None

    def add(self, count: int, label: str) -> None:
        self.done += count
        if self.progress is not None:
            self.progress(self.done, self.total, label)


@dataclass(slots=True)
class _RecordingOut:
    files: list[dict[str, object]] = field(default_factory=list)
    sources: list[dict[str, object]] = field(default_factory=list)
    tracks: list[dict[str, object]] = field(default_factory=list)
    listening: dict[str, object] | None = None
    audio_bytes: int = 0


def _named(exc: RecorderError, name: str) -> RecorderError:
    """The error, its message naming ``name`` (the object or file that failed)."""
    if name not in str(exc):
        exc.args = (f"{name}: {exc}",)
    return exc


async def _fetch(c: Components, row: SegmentRow | RecordFileRow, spool: IO[bytes]) -> None:
    """The stored object (the catalog's version) into ``spool``; checks the stored digest."""
    if row.upload_state is UploadState.PENDING:
        raise StorageError(f"{row.object_key}: not uploaded yet (still in the spool)")
    hasher = hashlib.sha256()

    def take(chunk: bytes) -> None:
        hasher.update(chunk)
        with staging(row.object_key):
            spool.write(chunk)

    async with c.store.open(row.object_key, version_id=row.version_id) as chunks:
        async for chunk in chunks:
            await trio.to_thread.run_sync(take, chunk)
    with staging(row.object_key):
        spool.seek(0)  # flushes what a spilled temporary file still buffered
    if row.stored_sha256 is not None and not hmac.compare_digest(
        hasher.hexdigest(), row.stored_sha256.lower()
    ):
        raise DigestMismatch(f"{row.object_key}: stored object differs from the catalog's digest")


async def with_object(
    c: Components,
    row: SegmentRow | RecordFileRow,
    work: Callable[[Iterator[bytes], str | None], None],
) -> None:
    with staged_copy(row.object_key, row.stored_size) as stored:
        await _fetch(c, row, stored)

        def run() -> None:
            if is_opaque(row.plaintext_sha256):
                # Uploaded by a host that could not decrypt: recovered and authenticated here.
                with recovered_copy(stored, c.keyring) as sealed:
                    work(iter_plaintext(sealed, c.keyring), None)
            else:
                work(iter_plaintext(stored, c.keyring), row.plaintext_sha256)

        await trio.to_thread.run_sync(run)


def _open_track_writer(
    plan: TrackPlan, target: Path, holder: list[WavWriter], progress: TrackProgress
) -> Callable[[int], WavWriter]:
    """The track's writer, made by its first segment's header (which names the channels)."""

    def open_writer(channels: int) -> WavWriter:
        if not holder:
            holder.append(
                WavWriter(
                    target,
                    sample_rate=plan.sample_rate,
                    channels=channels,
                    frames=plan.total_samples,
                    progress=progress,
                )
            )
        if holder[0].channels != channels:
            raise StorageError(f"{target.name}: channel count changes in the track")
        return holder[0]

    return open_writer


def _check_identity(seg: SegmentRow) -> Callable[[SegmentHeader], None]:
    def check(header: SegmentHeader) -> None:
        found = header.identity
        if (found.recording_id, found.track, found.segment_index) != (
            seg.recording_id,
            seg.track,
            seg.segment_index,
        ):
            raise HeaderMismatch(
                f"{seg.object_key}: the stored object is recording {found.recording_id!r} track "
                f"{found.track!r} segment {found.segment_index}, not the catalog's"
            )

    return check


@dataclass(slots=True)
class _Whole:
    """A stored object spooled whole (an opaque upload, or no stored digest to check pieces
    against); the track's thread takes it over and closes it."""

    spool: BinaryIO
    segment: SegmentRow


@dataclass(slots=True)
class _File:
    """A local store's object file, opened (and its read-ahead started) by the feeder; the
    track's thread reads it into its own buffer and closes it."""

    handle: FileIO


class _End:
    """After the last piece of one segment."""


_END: Final = _End()
_Item = bytes | _End | _Whole | _File


def _release(items: list[_Item]) -> None:
    for item in items:
        if isinstance(item, _Whole):
            item.spool.close()
        elif isinstance(item, _File):
            item.handle.close()


async def _open_local(files: LocalObjects, seg: SegmentRow) -> FileIO:
    handle = await files.open_file(seg.object_key, version_id=seg.version_id)
    try:
        # The kernel reads the whole object in while the segments before it are decrypted:
        # the track's thread then reads from memory.
        await trio.to_thread.run_sync(
            os.posix_fadvise, handle.fileno(), 0, 0, os.POSIX_FADV_WILLNEED
        )
    except BaseException:
        handle.close()
        raise
    return handle


def _whole_object(seg: SegmentRow) -> bool:
    return is_opaque(seg.plaintext_sha256) or seg.stored_sha256 is None


async def _feed(c: Components, segments: list[SegmentRow], pipe: Pipe[_Item]) -> None:
    """The track's stored objects, in order, into its pipe: every piece as the store sends it
    (the thread hashes and decrypts it), a local store's file for the thread to read itself, or
    the whole object spooled when it must be."""
    seg: SegmentRow | None = None
    files = c.store if isinstance(c.store, LocalObjects) else None
    try:
        for seg in segments:
            if seg.upload_state is UploadState.PENDING:
                raise StorageError(f"{seg.object_key}: not uploaded yet (still in the spool)")
            if _whole_object(seg):
                # Owned by the track's thread once in the pipe (closed there, or by ``_release``).
                spooled = tempfile.SpooledTemporaryFile(  # noqa: SIM115
                    max_size=min(seg.stored_size, IN_MEMORY_BYTES)
                )
                stored = cast(BinaryIO, spooled)
                try:
                    await _fetch(c, seg, stored)
                    await pipe.put(_Whole(stored, seg))
                except BaseException:
                    close_after_error(stored)
                    raise
                continue
            if files is not None:
                handle = await _open_local(files, seg)
                try:
                    await pipe.put(_File(handle))
                except BaseException:
                    handle.close()
                    raise
                continue
            async with c.store.open(seg.object_key, version_id=seg.version_id) as pieces:
                async for piece in pieces:
                    await pipe.put(piece)
            await pipe.put(_END)
        pipe.close()
    except PipeAborted:
        return  # the thread stopped first: its own error says why
    except RecorderError as exc:
        # Raised by the thread when it reaches this segment, as the root cause.
        pipe.fail(_named(exc, seg.object_key) if seg is not None else exc)
    except OSError as exc:
        name = seg.object_key if seg is not None else "the store"
        pipe.fail(StorageError(f"{name}: {exc}"))
    except BaseException:
        _release(pipe.abort())
        raise


def _copy_segment(
    keyring: SegmentKeyOpener, seg: SegmentRow, sink: SegmentSink, pipe: Pipe[_Item]
) -> None:
    """One segment from its track's pipe into the track's WAV, one pass per byte: each stored
    piece is hashed (the stored digest), its chunks authenticated and decrypted into the WAV's
    buffer, hashed there for the output file and written."""
    item = pipe.get()
    if isinstance(item, _Whole):
        with item.spool as stored:
            if is_opaque(seg.plaintext_sha256):
                # Uploaded by a host that could not decrypt: recovered and authenticated here.
                with recovered_copy(stored, keyring) as sealed:
                    _drain(sink, iter_plaintext(sealed, keyring), None)
            else:
                _drain(sink, iter_plaintext(stored, keyring), seg.plaintext_sha256)
        return
    assert seg.stored_sha256 is not None  # else the feeder sent the object whole
    stored_hash = hashlib.sha256()
    opener = SegmentOpener(sink, keyring, source=seg.object_key, check_header=_check_identity(seg))
    if isinstance(item, _File):
        with item.handle as handle:
            _read_file(handle, stored_hash, opener, pipe)
    while not isinstance(item, (_End, _File)):
        if not isinstance(item, bytes):
            raise StorageError(f"{seg.object_key}: the store's stream ended inside the object")
        stored_hash.update(item)
        opener.feed(item)
        item = pipe.get()
    if not hmac.compare_digest(stored_hash.hexdigest(), seg.stored_sha256.lower()):
        raise DigestMismatch(f"{seg.object_key}: stored object differs from the catalog's digest")
    opener.finish()
    sink.finish()


def _read_file(
    handle: FileIO, stored_hash: hashlib._Hash, opener: SegmentOpener, pipe: Pipe[_Item]
) -> None:
    """A local store's object read whole into one reused buffer, each read hashed (the stored
    digest) and fed to the opener; stops between reads once the export is stopped."""
    buffer = bytearray(FILE_READ_BYTES)
    view = memoryview(buffer)
    while count := handle.readinto(buffer):
        pipe.check()
        piece = view[:count]
        stored_hash.update(piece)
        opener.feed(piece)


def _drain(sink: SegmentSink, chunks: Iterator[bytes], expected: str | None) -> None:
    """An object read whole (recovered from an opaque upload): its plaintext into ``sink``."""
    del expected  # the sink was made with it
    first = True
    for chunk in chunks:
        if first:
            sink.prologue(chunk)
            first = False
            continue
        sink.reserve(len(chunk))[:] = chunk
        sink.commit(len(chunk))
    sink.finish()


def _track_thread(
    keyring: SegmentKeyOpener,
    plan: TrackPlan,
    target: Path,
    pipe: Pipe[_Item],
    progress: TrackProgress,
    done: Callable[[int, str], None],
) -> tuple[str, int, int]:
    """A whole track in one worker thread: every segment read from the pipe, verified,
    decrypted and written, silence between them; returns (sha256, size, channels)."""
    holder: list[WavWriter] = []
    open_writer = _open_track_writer(plan, target, holder, progress)
    try:
        for piece in plan.pieces:
            if isinstance(piece, Filler):
                assert holder  # a track's first piece is always a segment
                holder[0].write_silence(piece.count)
                continue
            seg = piece.segment
            sink = SegmentSink(
                seg.object_key,
                open_writer,
                expected_frames=seg.sample_count,
                expected_sha256=(
                    seg.plaintext_sha256
                    if seg.stored_sha256 is None and not is_opaque(seg.plaintext_sha256)
                    else None
                ),
            )
            try:
                _copy_segment(keyring, seg, sink, pipe)
            except BundleWriteFailed:
                raise  # names the bundle file: the stored object is not at fault
            except RecorderError as exc:
                raise _named(exc, seg.object_key) from exc
            except OSError as exc:
                raise StorageError(f"{seg.object_key}: {exc}") from exc
            done(seg.plaintext_size, seg.object_key)
        assert holder
        sha, size = holder[0].close()
        return sha, size, holder[0].channels
    except BaseException:
        _release(pipe.abort())
        if holder:
            holder[0].abort()
        progress.failed()  # wakes the listening file's mix, which waits on it
        raise


async def _write_track(
    c: Components, plan: TrackPlan, target: Path, tally: _Tally, progress: TrackProgress
) -> tuple[str, int, int]:
    """One track: its stored objects fed from the trio loop (prefetching ``PREFETCH_PIECES``),
    everything else in one worker thread, with no hop through the loop per piece."""
    pipe: Pipe[_Item] = Pipe(PREFETCH_PIECES, target.name)
    segments = [p.segment for p in plan.pieces if isinstance(p, Placed)]

    def done(size: int, label: str) -> None:
        trio.from_thread.run_sync(tally.add, size, label)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_feed, c, segments, pipe)
            return await trio.to_thread.run_sync(
                _track_thread, c.keyring, plan, target, pipe, progress, done
            )
    except BaseExceptionGroup as group:
        raise root_cause(group) from None


async def _export_records(
    c: Components, detail: RecordingDetail, rdir: Path, tally: _Tally
) -> transcript.RecordsSplitter:
    with (
        open_bundle_file(rdir / "chat.json") as chat,
        open_bundle_file(rdir / "events.json") as events,
    ):
        splitter = transcript.RecordsSplitter(chat, events)
        # Video records are MP4, not JSON lines (``recorder.video.export`` takes them).
        rows = [r for r in detail.records if r.kind not in VIDEO_RECORD_KINDS]
        for row in sorted(rows, key=lambda r: r.record_index):

            def split(
                chunks: Iterator[bytes], expected: str | None, row: RecordFileRow = row
            ) -> None:
                hasher = hashlib.sha256()
                pending = b""
                for chunk in chunks:
                    hasher.update(chunk)
                    *lines, pending = (pending + chunk).split(b"\n")
                    for line in lines:
                        splitter.feed(line)
                splitter.feed(pending)
                if expected is not None and not hmac.compare_digest(hasher.hexdigest(), expected):
                    raise DigestMismatch(
                        f"{row.object_key}: decrypted content differs from the digest sealed "
                        "at recording"
                    )

            try:
                await with_object(c, row, split)
            except BundleWriteFailed:
                raise  # names the bundle file: the stored object is not at fault
            except RecorderError as exc:
                raise _named(exc, row.object_key) from exc
            except (OSError, ValueError) as exc:
                raise StorageError(f"{row.object_key}: {exc}") from exc
            tally.add(row.plaintext_size, row.object_key)
        splitter.finish()
    return splitter


def _file(
    root: Path, path: Path, sha256: str, size: int, kind: str, **extra: object
) -> dict[str, object]:
    return file_entry(path.relative_to(root).as_posix(), sha256, size, kind, **extra)


def _hash_file(path: Path) -> tuple[str, int]:
    hasher = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            hasher.update(block)
            size += len(block)
    return hasher.hexdigest(), size


async def _export_recording(
    c: Components, detail: RecordingDetail, root: Path, audit: AuditEvent, tally: _Tally
) -> dict[str, object]:
    r = detail.recording
    rdir = root / r.recording_id
    (rdir / "audio").mkdir(mode=0o700, parents=True)
    out = _RecordingOut()
    by_track: dict[str, list[SegmentRow]] = {}
    for seg in detail.segments:
        by_track.setdefault(seg.track, []).append(seg)
    plans = {
        track: plan_track(track, segs, [g for g in detail.gaps if g.track == track])
        for track, segs in by_track.items()
    }
    # The records first: the listening file's sides come from the roles they name.
    splitter = await _export_records(c, detail, rdir, tally)
    roles = {p.user_id: p.role for p in detail.participants if p.role}
    roles.update(splitter.track_roles)
    targets = {track: rdir / "audio" / f"{track}.wav" for track in plans}
    progress = {track: TrackProgress(str(targets[track].name)) for track in plans}
    sources = [
        listening.Source(
            track,
            targets[track],
            plans[track].start_ms,
            plans[track].sample_rate,
            0,  # known once the track's first segment is read (``progress``)
            plans[track].total_samples,
            listening.Side.MONO,
        )
        for track in sorted(plans)
    ]
    layout = listening.choose_layout(r.product, sources, roles)
    mixed = listening.plan_mix(layout) if layout is not None else None
    written: dict[str, tuple[str, int, int]] = {}
    mixed_out: list[tuple[str, int]] = []

    async def one_track(track: str) -> None:
        try:
            async with limiter:
                written[track] = await _write_track(
                    c, plans[track], targets[track], tally, progress[track]
                )
        except BaseException:
            progress[track].failed()  # wakes the listening file's mix, which waits on it
            raise

    async def listening_file(layout: listening.Layout, mixed: listening.Mixed) -> None:
        mixed_out.append(
            await trio.to_thread.run_sync(
                listening.write_listening, rdir / "listening.wav", layout, mixed, progress
            )
        )

    # Tracks are independent files, each in its own worker thread: decrypting, hashing and
    # writing release the GIL, so ``TRACKS_AT_ONCE`` tracks use that many cores; the listening
    # file is mixed beside them, each block as soon as its samples are in the track files.
    limiter = trio.CapacityLimiter(TRACKS_AT_ONCE)
    try:
        async with trio.open_nursery() as nursery:
            for track in sorted(plans):
                nursery.start_soon(one_track, track)
            if layout is not None and mixed is not None:
                nursery.start_soon(listening_file, layout, mixed)
    except BaseExceptionGroup as group:
        # Ranked, not first to arrive: the officer sees the root cause (``failure``).
        raise root_cause(group) from group
    for track in sorted(plans):
        plan = plans[track]
        target = targets[track]
        sha, size, channels = written[track]
        out.audio_bytes += size
        out.files.append(
            _file(
                root,
                target,
                sha,
                size,
                "track",
                track=track,
                sample_rate=plan.sample_rate,
                channels=channels,
                frames=plan.total_samples,
                start_ms=plan.start_ms,
            )
        )
        out.tracks.append(_track_entry(plan, target.relative_to(root).as_posix(), channels))
        out.sources += [
            source_entry(s) for s in sorted(by_track[track], key=lambda s: s.segment_index)
        ]
    out.sources += [
        source_entry(row) for row in sorted(detail.records, key=lambda r: r.record_index)
    ]
    zero_ms = r.started_ms
    if layout is not None and mixed is not None:
        target = rdir / "listening.wav"
        [(sha, size)] = mixed_out
        zero_ms = mixed.start_ms
        out.files.append(
            _file(
                root,
                target,
                sha,
                size,
                "listening",
                sample_rate=mixed.sample_rate,
                channels=layout.channels,
                frames=mixed.frames,
                start_ms=mixed.start_ms,
            )
        )
        out.listening = {
            "file": target.relative_to(root).as_posix(),
            "layout": layout.note,
            "start_ms": mixed.start_ms,
            "tracks": [
                {
                    "track": src.track,
                    "side": src.side.value,
                    "role": src.role,
                    "offset_frames": mixed.offsets[src.track],
                }
                for src in layout.sources
            ],
        }
    elif layout is not None:
        out.listening = {"file": None, "layout": "none: the tracks' sample rates differ"}
    video = await export_video(
        detail,
        root,
        rdir,
        functools.partial(with_object, c),
        listening=(rdir / "listening.wav", mixed.start_ms) if out.listening and mixed else None,
        progress=tally.add,
    )
    out.files += video.files
    for name, writer_fn in (
        ("transcript.txt", transcript.write_text),
        ("transcript.vtt", transcript.write_vtt),
    ):
        path = rdir / name
        with open_bundle_file(path) as handle:
            writer_fn(handle, splitter.cues, zero_ms)
    for name, kind in (
        ("transcript.txt", "transcript_text"),
        ("transcript.vtt", "transcript_webvtt"),
        ("chat.json", "chat"),
        ("events.json", "events"),
    ):
        path = rdir / name
        sha, size = await trio.to_thread.run_sync(_hash_file, path)
        extra: dict[str, object] = {"zero_ms": zero_ms} if name.startswith("transcript") else {}
        out.files.append(_file(root, path, sha, size, kind, **extra))
    policy = await c.catalog.recording_policy(detail.recording.recording_id)
    entry = recording_entry(detail, audit, policy)
    entry.update(
        {
            "files": out.files,
            "sources": out.sources,
            "tracks": out.tracks,
            "listening": out.listening,
            "transcript_cues": len(splitter.cues),
            "video": video.summary,
        }
    )
    return entry


def _track_entry(plan: TrackPlan, path: str, channels: int) -> dict[str, object]:
    return {
        "track": plan.track,
        "file": path,
        "sample_rate": plan.sample_rate,
        "channels": channels,
        "start_ms": plan.start_ms,
        "frames": plan.total_samples,
        "segments": [
            {
                "segment_index": p.segment.segment_index,
                "object_key": p.segment.object_key,
                "wav_start_frame": p.position,
                "frames": p.segment.sample_count,
                "start_ms": p.segment.start_ms,
                "end_ms": p.segment.end_ms,
            }
            for p in plan.pieces
            if isinstance(p, Placed)
        ],
        "filled": [
            {
                "wav_start_frame": f.position,
                "frames": f.count,
                "start_ms": f.start_ms,
                "end_ms": f.end_ms,
                "cause": f.cause,
            }
            for f in plan.fillers
        ],
        "gaps": [
            {
                "start_ms": g.start_ms,
                "end_ms": g.end_ms,
                "wav_start_frame": g.wav_start_sample,
                "wav_end_frame": g.wav_end_sample,
                "cause": g.cause,
                "detail": g.detail,
            }
            for g in plan.gaps
        ],
    }


async def _details(c: Components, recording_ids: list[str]) -> list[RecordingDetail]:
    details = []
    for recording_id in dict.fromkeys(recording_ids):
        detail = await c.catalog.show(recording_id)
        if detail is None:
            raise RecorderError(f"no recording {recording_id!r} in the catalog")
        if detail.recording.status is RecordingStatus.ACTIVE:
            raise RecorderError(
                f"recording {recording_id} is still being recorded: export it once it has ended"
            )
        details.append(detail)
    if not details:
        raise RecorderError("nothing to export: no recording named or found")
    return details


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


async def export_bundle(
    c: Components,
    recording_ids: list[str],
    out_dir: Path,
    *,
    actor: str,
    reason: str,
    signing_key: Ed25519PrivateKey,
    progress: Progress | None = None,
) -> BundleResult:
    out_dir = Path(await trio.Path(out_dir).absolute())
    if out_dir.exists():
        raise StorageError(f"{out_dir} exists already: an export never overwrites")
    if not out_dir.parent.is_dir():
        raise StorageError(f"{out_dir.parent} is not a directory")
    if not reason.strip():
        raise RecorderError("an export needs a reason (written to the audit log)")
    details = await _details(c, recording_ids)
    await trio.to_thread.run_sync(remove_abandoned, out_dir)
    try:
        root = Path(tempfile.mkdtemp(prefix=_partial_prefix(out_dir), dir=out_dir.parent))
        create_synced(root / OWNER_FILE, str(os.getpid()).encode())
    except OSError as exc:
        raise StorageError(f"cannot create a directory beside {out_dir}: {exc.strerror}") from exc
    tally = _Tally(
        total=sum(
            sum(s.plaintext_size for s in d.segments) + sum(r.plaintext_size for r in d.records)
            for d in details
        ),
        progress=progress,
    )
    try:
        entries = []
        audio_bytes = 0
        for detail in details:
            # Audited first: a decrypt that fails half way was still attempted.
            audit = await c.catalog.append_audit(
                actor=actor,
                action="export",
                target=detail.recording.recording_id,
                reason=reason,
                now_ms=now_ms(),
                details={"bundle": out_dir.name, "recordings": len(details)},
            )
            entry = await _export_recording(c, detail, root, audit, tally)
            audio_bytes += sum(
                int(cast(int, f["size"]))
                for f in cast(list[dict[str, object]], entry["files"])
                if f["kind"] == "track"
            )
            entries.append(entry)
        manifest = {
            "format": BUNDLE_FORMAT,
            "created_ms": now_ms(),
            "actor": actor,
            "reason": reason,
            "signing_key_id": key_id(signing_key.public_key()),
            "recordings": entries,
        }
        body = canonical(manifest)
        for name, data in (
            (MANIFEST_NAME, body),
            (SIGNATURE_NAME, sign(signing_key, body).to_json()),
        ):
            try:
                create_synced(root / name, data)
            except OSError as exc:
                raise BundleWriteFailed.of(root / name, exc) from exc
        (root / OWNER_FILE).unlink()
        _fsync_tree(root)
        publish(root, out_dir)
    except BaseException:
        with trio.move_on_after(CLEANUP_TIMEOUT_S) as scope:
            scope.shield = True
            await trio.to_thread.run_sync(_remove, root)
        raise
    files = sum(len(cast(list[object], e["files"])) for e in entries) + 2
    return BundleResult(
        out_dir,
        [d.recording.recording_id for d in details],
        files,
        audio_bytes,
        hashlib.sha256(body).hexdigest(),
    )


def _partial_prefix(out_dir: Path) -> str:
    return f".{out_dir.name}.partial-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_abandoned(out_dir: Path) -> list[Path]:
    """Remove what an export to ``out_dir`` killed outright (SIGKILL, power loss) left behind.

    A partial directory whose owner process is gone holds decrypted audio nobody will finish;
    one whose owner still runs is another export in progress and is left alone.
    """
    removed = []
    for partial in out_dir.parent.glob(_partial_prefix(out_dir) + "*"):
        try:
            owner = int((partial / OWNER_FILE).read_text())
        except (OSError, ValueError):
            # No owner yet: an export just starting, or one killed before it wrote it.
            try:
                age_s = time.time() - partial.stat().st_mtime
            except OSError:
                continue
            if age_s < OWNERLESS_GRACE_S:
                continue
            owner = -1
        if owner > 0 and _alive(owner):
            continue
        shutil.rmtree(partial, ignore_errors=True)
        removed.append(partial)
    return removed


def _fsync_tree(root: Path) -> None:
    for directory, _, _ in os.walk(root):
        fsync_directory(Path(directory))


def manifest_json(root: Path) -> dict[str, object]:
    """The manifest of a bundle, parsed (for tests and tools)."""
    loaded = json.loads((root / MANIFEST_NAME).read_bytes())
    assert isinstance(loaded, dict)
    return loaded
