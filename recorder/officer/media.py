"""One recording's track as a continuous WAV for a player: random access, decrypted in memory.

The WAV is the one the export bundle writes (``bundle/plan.py`` lays the segments on the
recording clock, gaps between segments as silence of their exact length; ``bundle/wavio.py``
makes its header), byte for byte, but never written anywhere: ``TrackMedia.read(start, end)``
fetches the sealed segments the range touches from the store (ciphertext only, spooled like the
export does), and decrypts only the chunks covering the range (``crypto/random_access.py``).
Silence and the header are made, not stored. A handful of segments stay open per track, so a
player's consecutive range requests do not fetch the same object again.

``peaks`` walks the whole track once (every chunk authenticated and each segment's plaintext
digest compared with the one sealed at recording, which random access alone cannot do) and
keeps min/max per ``samples_per_peak`` frames, so a waveform of a two-hour call draws at once.

Peaks are kept in memory only (``PeaksCache``, bounded, per process), never in the catalog:
100 min/max pairs a second are an amplitude envelope of the speech, which tells who spoke when
and how loud, and an envelope is enough to recover some of what was said. They are treated as
the audio they come from: derived by an audited decrypt, never on disk, gone with the process.

Rule: no decrypt without an audit event. ``open_track_media`` takes the ``AuditEvent`` the
caller (the web console) wrote for this recording, with the signed-in actor and reason, and
refuses one for another recording; the ``TrackMedia`` remembers it (``audit_id``).
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import tempfile
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Final, Protocol, cast

import numpy as np
import numpy.typing as npt
import trio

from recorder.audio.wav import HEADER_SIZE
from recorder.catalog.base import AuditEvent, RecordingDetail, SegmentRow, UploadState
from recorder.crypto.keyring import SegmentKeyOpener
from recorder.crypto.random_access import MAX_READ, SealedIndex
from recorder.crypto.reader import iter_plaintext
from recorder.errors import (
    DigestMismatch,
    IntegrityError,
    LocalProtocolError,
    RecorderError,
    StorageError,
)
from recorder.officer.bundle.plan import Filler, Placed, TrackPlan, plan_track
from recorder.officer.bundle.wavio import parse_segment_header, wav_header
from recorder.officer.httprange import ByteRange, parse_range
from recorder.officer.opaque import is_opaque, recovered_copy
from recorder.store.base import ObjectStore, close_after_error, staging

if TYPE_CHECKING:
    from recorder.service.components import Components

CONTENT_TYPE: Final = "audio/wav"
#: Bytes of the whole-track WAV's header (plain RIFF/WAVE/fmt/data, as the bundle writes).
WAV_HEADER_SIZE: Final = 44
#: Ciphertext of one fetched segment kept in memory; past it, spooled to a temporary file
#: (ciphertext only: what the store holds anyway). With ``OPEN_SEGMENTS`` per track and
#: ``ConsoleMedia``'s 8 open tracks, at most 96 MiB of a console process's memory.
IN_MEMORY_BYTES: Final = 4 * 1024 * 1024
#: Sealed segments kept open per track.
OPEN_SEGMENTS: Final = 3
#: Bytes per block of a range response.
BLOCK_BYTES: Final = 256 * 1024
DEFAULT_PEAKS_PER_SECOND: Final = 100
#: At most this many peaks per track from ``ConsoleMedia.peaks`` (a long call gets fewer a second).
MAX_PEAKS_PER_TRACK: Final = 200_000


async def iter_blocks(
    read: Callable[[int, int], Awaitable[bytes]], start: int, stop: int, block: int
) -> AsyncIterator[bytes]:
    """``read`` over ``[start, stop)`` in blocks of at most ``block`` bytes, in order."""
    position = start
    while position < stop:
        end = min(stop, position + block)
        yield await read(position, end)
        position = end


class MediaError(RecorderError):
    """A track cannot be served (the message names the recording, track or object)."""


class SealedObjects(Protocol):
    """Where sealed segments come from: the object store (``StoreObjects``) or a test's files.

    ``fetch`` returns a seekable stream of the segment's *sealed* bytes, authenticated by
    nothing yet (the reader does that); the caller closes it.
    """

    async def fetch(self, segment: SegmentRow) -> BinaryIO: ...


class StoreObjects:
    """Sealed segments from an ``ObjectStore``: the catalog's version, its stored digest checked
    (like the export), ciphertext spooled to a temporary file past ``IN_MEMORY_BYTES``.
    An opaque upload (from a host that could not decrypt) is recovered into a sealed copy."""

    def __init__(self, store: ObjectStore, keyring: SegmentKeyOpener) -> None:
        self._store = store
        self._keyring = keyring

    async def fetch(self, segment: SegmentRow) -> BinaryIO:
        if segment.upload_state is UploadState.PENDING:
            raise StorageError(f"{segment.object_key}: not uploaded yet (still in the spool)")
        spool = cast(
            BinaryIO,
            tempfile.SpooledTemporaryFile(  # noqa: SIM115 - returned open, the caller closes it
                max_size=min(max(segment.stored_size, 1), IN_MEMORY_BYTES)
            ),
        )
        try:
            hasher = hashlib.sha256()

            def take(chunk: bytes) -> None:  # hashing and a spill to disk: off the event loop
                hasher.update(chunk)
                with staging(segment.object_key):
                    spool.write(chunk)

            async with self._store.open(segment.object_key, version_id=segment.version_id) as it:
                async for chunk in it:
                    await trio.to_thread.run_sync(take, chunk)
            if segment.stored_sha256 is not None and not hmac.compare_digest(
                hasher.hexdigest(), segment.stored_sha256.lower()
            ):
                raise DigestMismatch(
                    f"{segment.object_key}: stored object differs from the catalog's digest"
                )
            with staging(segment.object_key):
                spool.seek(0)  # flushes what a spilled temporary file still buffered
            if is_opaque(segment.plaintext_sha256):
                return await trio.to_thread.run_sync(self._recover, spool, segment.object_key)
            return spool
        except BaseException:
            close_after_error(spool)
            raise

    def _recover(self, stored: BinaryIO, key: str) -> BinaryIO:
        with stored, recovered_copy(stored, self._keyring) as sealed:
            copy = cast(BinaryIO, tempfile.SpooledTemporaryFile(max_size=IN_MEMORY_BYTES))  # noqa: SIM115
            try:
                with staging(key):
                    while block := sealed.read(1 << 20):
                        copy.write(block)
                    copy.seek(0)
            except BaseException:
                close_after_error(copy)
                raise
            return copy


@dataclass(slots=True)
class _OpenSegment:
    stream: BinaryIO
    index: SealedIndex
    #: Plaintext offset of the segment's first PCM byte (after its own WAV header).
    pcm_offset: int
    channels: int


@dataclass(frozen=True, slots=True)
class _Span:
    """Bytes ``[start, stop)`` of the whole-track WAV and what fills them."""

    start: int
    stop: int
    piece: Placed | Filler | None  # None: the WAV header


def segment_format(head: bytes, *, name: str) -> tuple[int, int, int]:
    """(channels, sample_rate, data_length) of a segment's WAV header, checked like the export
    checks it."""
    return parse_segment_header(head[:HEADER_SIZE], name=name)


class _SegmentPcm:
    """The ``data`` samples of one decrypted segment, checked against the digest sealed at
    recording when the last chunk has been read (``None``: an opaque upload, AEAD only)."""

    def __init__(self, name: str, plaintext: Iterable[bytes], expected_sha256: str | None) -> None:
        self.name = name
        self._plaintext = plaintext
        self._expected = expected_sha256
        self.channels = 0

    def __iter__(self) -> Iterator[memoryview]:
        hasher = hashlib.sha256()
        head = bytearray()
        remaining = -1
        for chunk in self._plaintext:
            hasher.update(chunk)
            view = memoryview(chunk)
            if remaining < 0:
                head += chunk
                if len(head) < HEADER_SIZE:
                    continue
                self.channels, _, remaining = segment_format(bytes(head), name=self.name)
                view = memoryview(bytes(head[HEADER_SIZE:]))
            if remaining > 0 and len(view):
                piece = view[:remaining] if len(view) > remaining else view
                remaining -= len(piece)
                yield piece
        if remaining != 0:
            raise IntegrityError(f"{self.name}: the WAV data ends before its header says")
        if self._expected is not None and not hmac.compare_digest(
            hasher.hexdigest(), self._expected
        ):
            raise DigestMismatch(
                f"{self.name}: decrypted content differs from the digest sealed at recording"
            )


class TrackMedia:
    """The whole-track WAV of one track as a random-access byte source. Use ``aclose``."""

    def __init__(
        self,
        objects: SealedObjects,
        keyring: SegmentKeyOpener,
        plan: TrackPlan,
        *,
        recording_id: str,
        channels: int,
        audit_id: int,
    ) -> None:
        self.recording_id = recording_id
        self.track = plan.track
        self.plan = plan
        self.channels = channels
        self.sample_rate = plan.sample_rate
        self.audit_id = audit_id
        self._objects = objects
        self._keyring = keyring
        self._frame = 2 * channels
        self._header = wav_header(
            sample_rate=plan.sample_rate, channels=channels, frames=plan.total_samples
        )
        assert len(self._header) == WAV_HEADER_SIZE
        #: Bytes of the whole-track WAV.
        self.length = WAV_HEADER_SIZE + plan.total_samples * self._frame
        self._spans = self._layout()
        self._starts = [s.start for s in self._spans]
        self._open: OrderedDict[int, _OpenSegment] = OrderedDict()
        self._lock = trio.Lock()
        self._closed = False

    @property
    def content_type(self) -> str:
        return CONTENT_TYPE

    @property
    def duration_s(self) -> float:
        return self.plan.total_samples / self.sample_rate

    def _layout(self) -> list[_Span]:
        spans = [_Span(0, WAV_HEADER_SIZE, None)]
        for piece in self.plan.pieces:
            start = WAV_HEADER_SIZE + piece.position * self._frame
            count = piece.segment.sample_count if isinstance(piece, Placed) else piece.count
            if count:
                spans.append(_Span(start, start + count * self._frame, piece))
        return spans

    async def read(self, start: int, stop: int) -> bytes:
        """Bytes ``[start, stop)`` of the WAV (at most ``MAX_READ`` at once)."""
        if not 0 <= start <= stop <= self.length:
            raise LocalProtocolError(
                f"{self.recording_id}/{self.track}: read [{start}, {stop}) outside 0..{self.length}"
            )
        if stop - start > MAX_READ:
            raise LocalProtocolError(
                f"{self.recording_id}/{self.track}: one read is at most {MAX_READ} bytes "
                "(iter_range streams any length)"
            )
        parts: list[bytes] = []
        number = bisect.bisect_right(self._starts, start) - 1
        async with self._lock:
            if self._closed:
                raise LocalProtocolError(f"{self.recording_id}/{self.track}: media is closed")
            while number < len(self._spans) and self._spans[number].start < stop:
                span = self._spans[number]
                lo, hi = max(start, span.start), min(stop, span.stop)
                if isinstance(span.piece, Placed):
                    parts.append(await self._segment_bytes(span, lo, hi))
                elif isinstance(span.piece, Filler):
                    parts.append(bytes(hi - lo))
                else:
                    parts.append(self._header[lo:hi])
                number += 1
        return b"".join(parts)

    def iter_range(self, start: int, stop: int, block: int = BLOCK_BYTES) -> AsyncIterator[bytes]:
        """Bytes ``[start, stop)`` in blocks of at most ``block`` (for a streamed response)."""
        return iter_blocks(self.read, start, stop, block)

    async def _segment_bytes(self, span: _Span, lo: int, hi: int) -> bytes:
        piece = cast(Placed, span.piece)
        opened = await self._segment(piece.segment)
        base = opened.pcm_offset - span.start
        return await trio.to_thread.run_sync(opened.index.read, base + lo, base + hi)

    async def _segment(self, seg: SegmentRow) -> _OpenSegment:
        key = seg.segment_index
        if key in self._open:
            self._open.move_to_end(key)
            return self._open[key]
        opened = await open_segment(self._objects, self._keyring, seg, self.channels)
        self.adopt(key, opened)
        return opened

    def adopt(self, segment_index: int, opened: _OpenSegment) -> None:
        """Keep ``opened`` (closing the least recently used past ``OPEN_SEGMENTS``)."""
        self._open[segment_index] = opened
        while len(self._open) > OPEN_SEGMENTS:
            _, old = self._open.popitem(last=False)
            old.stream.close()

    async def release(self) -> None:
        """Close the segments kept open; later reads fetch what they need again."""
        async with self._lock:
            self._release()

    def _release(self) -> None:
        while self._open:
            _, old = self._open.popitem()
            old.stream.close()

    async def aclose(self) -> None:
        """Release everything; any later read is refused."""
        async with self._lock:
            self._closed = True
            self._release()

    async def peaks(self, peaks_per_second: int = DEFAULT_PEAKS_PER_SECOND) -> Peaks:
        """Min/max per ``sample_rate // peaks_per_second`` frames, in one verifying pass."""
        if not 1 <= peaks_per_second <= self.sample_rate:
            raise LocalProtocolError(f"peaks_per_second {peaks_per_second} out of range")
        acc = PeakAccumulator(max(1, self.sample_rate // peaks_per_second), self.channels)
        for piece in self.plan.pieces:
            if isinstance(piece, Filler):
                acc.add_silence(piece.count)
                continue
            seg = piece.segment
            stream = await self._objects.fetch(seg)
            try:
                await trio.to_thread.run_sync(self._peaks_of, stream, seg, acc)
            finally:
                stream.close()
        return acc.finish(self.sample_rate, self.plan.total_samples)

    def _peaks_of(self, stream: BinaryIO, seg: SegmentRow, acc: PeakAccumulator) -> None:
        expected = None if is_opaque(seg.plaintext_sha256) else seg.plaintext_sha256
        pcm = _SegmentPcm(seg.object_key, iter_plaintext(stream, self._keyring), expected)
        frames = 0
        for block in pcm:
            acc.add(block)
            frames += len(block) // self._frame
        if pcm.channels != self.channels or frames != seg.sample_count:
            raise IntegrityError(
                f"{seg.object_key}: {frames} frames of {pcm.channels} channel(s), the catalog "
                f"says {seg.sample_count} of {self.channels}"
            )


async def open_segment(
    objects: SealedObjects, keyring: SegmentKeyOpener, seg: SegmentRow, channels: int | None
) -> _OpenSegment:
    """Fetch, index and check one sealed segment against its catalog row (and the track's
    channel count, when known)."""
    stream = await objects.fetch(seg)
    try:
        index = await trio.to_thread.run_sync(
            lambda: SealedIndex(stream, keyring, source=seg.object_key)
        )
        identity = index.header.identity
        if (identity.recording_id, identity.track, identity.segment_index) != (
            seg.recording_id,
            seg.track,
            seg.segment_index,
        ):
            raise IntegrityError(
                f"{seg.object_key}: the sealed header names recording {identity.recording_id} "
                f"track {identity.track} segment {identity.segment_index}, not this segment"
            )
        head = await trio.to_thread.run_sync(index.read, 0, min(HEADER_SIZE, index.size))
        found, rate, data_length = segment_format(head, name=seg.object_key)
        if (
            rate != seg.sample_rate
            or data_length != seg.sample_count * 2 * found
            or found != (channels or found)
        ):
            raise IntegrityError(
                f"{seg.object_key}: {data_length} bytes at {rate} Hz of {found} channel(s), "
                f"the catalog says {seg.sample_count} frames at {seg.sample_rate} Hz"
                + (f" of {channels} channel(s)" if channels else "")
            )
        if HEADER_SIZE + data_length > index.size:
            raise IntegrityError(f"{seg.object_key}: the WAV data ends before its header says")
        return _OpenSegment(stream, index, HEADER_SIZE, found)
    except BaseException:
        stream.close()
        raise


async def open_track_media(
    objects: SealedObjects,
    keyring: SegmentKeyOpener,
    detail: RecordingDetail,
    track: str,
    audit: AuditEvent,
) -> TrackMedia:
    """The whole-track WAV of ``track``; ``audit`` is the caller's audit event for this decrypt
    (actor and reason), already written for this recording."""
    rid = detail.recording.recording_id
    if audit.target != rid:
        raise LocalProtocolError(
            f"audit event {audit.audit_id} is for {audit.target!r}, not recording {rid}"
        )
    if not audit.actor.strip() or not audit.reason.strip():
        raise LocalProtocolError(f"audit event {audit.audit_id} names no actor or no reason")
    segments = [s for s in detail.segments if s.track == track]
    if not segments:
        raise MediaError(f"recording {rid} has no track {track!r}")
    plan = plan_track(track, segments, [g for g in detail.gaps if g.track == track])
    first = next(p for p in plan.pieces if isinstance(p, Placed)).segment
    opened = await open_segment(objects, keyring, first, None)
    media = TrackMedia(
        objects, keyring, plan, recording_id=rid, channels=opened.channels, audit_id=audit.audit_id
    )
    media.adopt(first.segment_index, opened)  # the first read needs it: not fetched twice
    return media


@dataclass(frozen=True, slots=True)
class Peaks:
    """Min and max of every ``samples_per_peak`` frames (all channels), as int16."""

    sample_rate: int
    samples_per_peak: int
    frames: int
    minima: npt.NDArray[np.int16]
    maxima: npt.NDArray[np.int16]

    @property
    def count(self) -> int:
        return len(self.minima)

    def to_json(self) -> dict[str, object]:
        """For a waveform view: ``data`` interleaves min, max per peak, scaled to -1..1 with
        8-bit resolution (``bits``: 8), as audiowaveform's JSON does."""
        inter = np.empty(2 * self.count, dtype=np.int16)
        inter[0::2] = self.minima >> 8
        inter[1::2] = self.maxima >> 8
        return {
            "version": 2,
            "channels": 1,
            "sample_rate": self.sample_rate,
            "samples_per_pixel": self.samples_per_peak,
            "bits": 8,
            "length": self.count,
            "duration_s": self.frames / self.sample_rate,
            "data": inter.tolist(),
        }


class PeakAccumulator:
    """Fed PCM (s16le, interleaved) and silence in order; keeps min/max per group of frames.
    Memory: the peaks (4 bytes each) plus less than one group of carried frames."""

    def __init__(self, samples_per_peak: int, channels: int) -> None:
        if samples_per_peak < 1 or channels < 1:
            raise LocalProtocolError("samples_per_peak and channels must be at least 1")
        self.samples_per_peak = samples_per_peak
        self.channels = channels
        self._carry: npt.NDArray[np.int16] = np.zeros((0, channels), dtype=np.int16)
        self._mins: list[npt.NDArray[np.int16]] = []
        self._maxs: list[npt.NDArray[np.int16]] = []
        self.frames = 0

    def add(self, pcm: bytes | memoryview) -> None:
        if len(pcm) % (2 * self.channels):
            raise IntegrityError("PCM block is not whole frames")
        samples = np.frombuffer(pcm, dtype="<i2").reshape(-1, self.channels)
        self._add(samples)

    def add_silence(self, frames: int) -> None:
        while frames:
            take = min(frames, 1 << 20)
            self._add(np.zeros((take, self.channels), dtype=np.int16))
            frames -= take

    def _add(self, frames2d: npt.NDArray[np.int16]) -> None:
        self.frames += len(frames2d)
        if len(self._carry):
            frames2d = np.concatenate([self._carry, frames2d])
        n = self.samples_per_peak
        whole = len(frames2d) // n * n
        if whole:
            groups = frames2d[:whole].reshape(-1, n * self.channels)
            self._mins.append(groups.min(axis=1))
            self._maxs.append(groups.max(axis=1))
        self._carry = frames2d[whole:].copy()

    def finish(self, sample_rate: int, expected_frames: int) -> Peaks:
        if self.frames != expected_frames:
            raise IntegrityError(
                f"{self.frames} frames read, the track plan says {expected_frames}"
            )
        if len(self._carry):
            self._mins.append(np.array([self._carry.min()], dtype=np.int16))
            self._maxs.append(np.array([self._carry.max()], dtype=np.int16))
            self._carry = self._carry[:0]
        empty = np.zeros(0, dtype=np.int16)
        return Peaks(
            sample_rate,
            self.samples_per_peak,
            self.frames,
            np.concatenate(self._mins) if self._mins else empty,
            np.concatenate(self._maxs) if self._maxs else empty,
        )


def peaks_key(
    detail: RecordingDetail, track: str, peaks_per_second: int
) -> tuple[str, str, int, tuple[tuple[str, str | None, str], ...]]:
    """What identifies a track's peaks: the exact objects (versions, digests) they came from."""
    segs = sorted((s for s in detail.segments if s.track == track), key=lambda s: s.segment_index)
    objects = tuple((s.object_key, s.version_id, s.plaintext_sha256) for s in segs)
    return (detail.recording.recording_id, track, peaks_per_second, objects)


PeaksKey = tuple[str, str, int, tuple[tuple[str, str | None, str], ...]]


class PeaksCache:
    """Peaks in memory only (never on disk, see the module doc), least recently used dropped
    first once ``max_peaks`` peaks are held. One per process; trio only (no locking needed)."""

    def __init__(self, max_peaks: int = 8_000_000) -> None:
        self.max_peaks = max_peaks
        self._items: OrderedDict[PeaksKey, Peaks] = OrderedDict()
        self._held = 0

    def get(self, key: PeaksKey) -> Peaks | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: PeaksKey, peaks: Peaks) -> None:
        if key in self._items:
            self._held -= self._items.pop(key).count
        if peaks.count > self.max_peaks:
            return
        self._items[key] = peaks
        self._held += peaks.count
        while self._held > self.max_peaks:
            _, old = self._items.popitem(last=False)
            self._held -= old.count

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()
        self._held = 0


async def track_peaks(
    media: TrackMedia,
    detail: RecordingDetail,
    cache: PeaksCache,
    peaks_per_second: int = DEFAULT_PEAKS_PER_SECOND,
) -> Peaks:
    """The track's peaks from ``cache``, else computed (a full decrypt under ``media``'s audit
    event) and cached."""
    key = peaks_key(detail, media.track, peaks_per_second)
    found = cache.get(key)
    if found is None:
        found = await media.peaks(peaks_per_second)
        cache.put(key, found)
    return found


@dataclass(frozen=True, slots=True)
class Region:
    """A gap or pause on the track's WAV clock (seconds from its first sample)."""

    start_s: float
    end_s: float
    cause: str
    kind: str  # "gap" (catalog gap), "filled" (silence between segments), "pause"
    detail: str


def track_regions(plan: TrackPlan, detail: RecordingDetail) -> list[Region]:
    """Where the silence is and why, for regions drawn over the waveform (no decrypt needed)."""
    rate = plan.sample_rate
    regions = [
        Region(g.wav_start_sample / rate, g.wav_end_sample / rate, g.cause, "gap", g.detail)
        for g in plan.gaps
    ]
    listed = {(round(r.start_s * rate), round(r.end_s * rate)) for r in regions}
    for f in plan.fillers:
        if (f.position, f.position + f.count) not in listed:
            regions.append(
                Region(f.position / rate, (f.position + f.count) / rate, f.cause, "filled", "")
            )
    for p in detail.pauses:  # a pause is the whole recording's: on every track
        start = plan.ms_to_sample(p.start_ms)
        end = plan.ms_to_sample(p.end_ms) if p.end_ms is not None else plan.total_samples
        who = f"by {p.actor}" if p.actor else ""
        regions.append(Region(start / rate, end / rate, "paused", "pause", who))
    return sorted(regions, key=lambda r: (r.start_s, r.end_s))


class ConsoleMedia:
    """What the web console calls, one per process: opens a track once per (recording, track,
    audit event) and keeps the ``max_open`` most recent open (a player's range requests reuse
    them), and keeps peaks in memory (``PeaksCache``).

    ``audit`` is the event the console wrote when the signed-in user gave a reason to play this
    recording (actor ``web:<name>``, action ``play``); every decrypt here happens under one.
    """

    def __init__(
        self,
        *,
        max_open: int = 8,
        peaks_cache: PeaksCache | None = None,
        max_peaks: int = MAX_PEAKS_PER_TRACK,
    ) -> None:
        self.max_open = max_open
        self.max_peaks = max_peaks
        self.peaks_cache = peaks_cache if peaks_cache is not None else PeaksCache()
        self._open: OrderedDict[tuple[str, str, int], tuple[TrackMedia, RecordingDetail]] = (
            OrderedDict()
        )

    async def open_track(
        self, c: Components, recording_id: str, track: str, audit: AuditEvent
    ) -> TrackMedia:
        media, _ = await self._opened(c, recording_id, track, audit)
        return media

    async def peaks(
        self,
        c: Components,
        recording_id: str,
        track: str,
        audit: AuditEvent,
        per_second: int = DEFAULT_PEAKS_PER_SECOND,
    ) -> dict[str, object]:
        media, detail = await self._opened(c, recording_id, track, audit)
        # A long call gets fewer peaks a second: a screen is a few thousand pixels wide, and
        # the JSON stays a few MB (a two-hour call at 100/s would be ~8 MB).
        per_second = max(1, min(per_second, int(self.max_peaks / max(media.duration_s, 1e-3))))
        found = await track_peaks(media, detail, self.peaks_cache, per_second)
        return found.to_json()

    @staticmethod
    def parse_range(header: str | None, length: int) -> list[ByteRange] | None:
        """``None``: no header (200); raises ``RangeNotSatisfiable`` (416)."""
        return parse_range(header, length)

    async def _opened(
        self, c: Components, recording_id: str, track: str, audit: AuditEvent
    ) -> tuple[TrackMedia, RecordingDetail]:
        key = (recording_id, track, audit.audit_id)
        found = self._open.get(key)
        if found is not None:
            self._open.move_to_end(key)
            return found
        detail = await c.catalog.show(recording_id)
        if detail is None:
            raise MediaError(f"no recording {recording_id!r}")
        media = await open_track_media(
            StoreObjects(c.store, c.keyring), c.keyring, detail, track, audit
        )
        raced = self._open.get(key)
        if raced is not None:  # another request opened it meanwhile: keep one
            await media.aclose()
            return raced
        self._open[key] = (media, detail)
        while len(self._open) > self.max_open:
            # Dropped from the cache, not closed: a response still streaming from it goes on
            # (fetching again what it needs); only its open segments are let go now.
            _, (old, _) = self._open.popitem(last=False)
            await old.release()
        return media, detail

    async def aclose(self) -> None:
        while self._open:
            _, (old, _) = self._open.popitem()
            await old.aclose()
        self.peaks_cache.clear()
