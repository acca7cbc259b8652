"""A track as a random-access WAV for the web console's player, on a recording made by the real
pipeline (signed webhooks, the simulator over real WebSockets, 1 s segments, a media drop): every
byte equals the export bundle's track WAV, any range reads only what it covers, damage in one
segment fails only the ranges in that segment, and the peaks are the min/max of that WAV."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.audio.wav import HEADER_SIZE
from recorder.catalog.base import AuditEvent, RecordingDetail, SegmentRow, UploadState
from recorder.crypto.opaque import OPAQUE_PLAINTEXT_DIGEST
from recorder.crypto.writer import SpoolSinkFactory
from recorder.errors import IntegrityError, LocalProtocolError, StorageError
from recorder.officer import media as officer_media
from recorder.officer.bundle.export import export_bundle, manifest_json
from recorder.officer.bundle.plan import plan_track
from recorder.officer.bundle.signing import generate_signing_key, load_signing_key
from recorder.officer.httprange import parse_range
from recorder.officer.listening_media import open_listening_media
from recorder.officer.media import (
    ConsoleMedia,
    MediaError,
    PeakAccumulator,
    PeaksCache,
    StoreObjects,
    TrackMedia,
    open_track_media,
    peaks_key,
    track_peaks,
    track_regions,
)
from recorder.service.components import Components, now_ms
from recorder.sink import SegmentIdentity
from recorder.store.local import encode_component
from recorder.store.memory import MemoryStore
from tests.conftest import fill_filesystem
from tests.crypto.conftest import make_keyring
from tests.officer.test_export_bundle import CALL_S, one_second_segments, zcc_steps
from tests.service.test_service import record_calls, service, short_config, zcc_call

pytestmark = pytest.mark.slow


async def _audit(c: Components, rid: str, reason: str = "QA review 7") -> AuditEvent:
    return await c.catalog.append_audit(
        actor="officer-1", action="play", target=rid, reason=reason, now_ms=now_ms()
    )


async def _media(c: Components, detail: RecordingDetail, track: str) -> TrackMedia:
    audit = await _audit(c, detail.recording.recording_id)
    return await open_track_media(StoreObjects(c.store, c.keyring), c.keyring, detail, track, audit)


async def test_track_media_is_the_bundle_wav_read_at_random(tmp_path: Path) -> None:
    config = one_second_segments(short_config(tmp_path))
    key = tmp_path / "signing.ed25519"
    generate_signing_key(key)
    with trio.fail_after(120):
        async with service(config) as running:
            [eng] = await record_calls(
                running, config, zcc_call(config, seconds=CALL_S, steps=zcc_steps())
            )
            c = running.components
            [row] = await c.catalog.search(stream_id=eng.scenario.rtms_stream_id)
            rid = row.recording_id
            detail = await c.catalog.show(rid)
            assert detail is not None
            out = tmp_path / "bundle"
            await export_bundle(
                c, [rid], out, actor="t", reason="t", signing_key=load_signing_key(key)
            )
            [entry] = manifest_json(out)["recordings"]  # type: ignore[misc]
            files = {f["track"]: f for f in entry["files"] if f["kind"] == "track"}
            loudest = 0
            for track in sorted(files):
                wav = (out / files[track]["path"]).read_bytes()
                media = await _media(c, detail, track)
                try:
                    loudest = max(loudest, await check_track(media, detail, wav))
                finally:
                    await media.aclose()
            assert loudest > 1000  # speech on at least one leg
            await check_console_media(c, rid, files)
            await check_listening(c, detail, entry, out)
            await check_refusals(c, detail)
            await check_damage(c, config.storage.local_store_path, detail)


async def check_track(media: TrackMedia, detail: RecordingDetail, wav: bytes) -> int:
    assert media.length == len(wav)
    assert await media.read(0, media.length) == wav
    # Ranges as a player asks them: the first bytes, a seek into the middle, the tail.
    for header in ("bytes=0-1", "bytes=44-", "bytes=-1000", "bytes=3000-9000,100-200"):
        ranges = parse_range(header, media.length)
        assert ranges is not None
        for r in ranges:
            got = b"".join([b async for b in media.iter_range(*r, block=777)])
            assert got == wav[r.start : r.stop], header
    # Any range, through joins between segments and into the gap.
    await check_random_reads(media, wav)
    # Regions: the catalog's gaps at their samples, with their cause.
    gaps = [g for g in detail.gaps if g.track == media.track]
    assert gaps
    regions = [r for r in track_regions(media.plan, detail) if r.kind == "gap"]
    assert [(r.start_s, r.end_s, r.cause) for r in regions] == [
        (g.start_sample / media.sample_rate, g.end_sample / media.sample_rate, g.cause)  # type: ignore[operator]
        for g in gaps
    ]
    # Peaks: min/max per 80 frames (100/s at 8 kHz), computed in one verifying pass.
    cache = PeaksCache()
    peaks = await track_peaks(media, detail, cache)
    samples = np.frombuffer(wav[44:], dtype="<i2")
    n = peaks.samples_per_peak
    assert n == media.sample_rate // 100
    count = -(-len(samples) // n)
    assert peaks.count == count
    for i in (0, count // 3, count // 2, count - 1):
        group = samples[i * n : (i + 1) * n]
        assert (peaks.minima[i], peaks.maxima[i]) == (group.min(), group.max())
    gap = gaps[0]
    assert gap.start_sample is not None
    assert gap.end_sample is not None
    inside = range(-(-gap.start_sample // n), gap.end_sample // n)
    assert len(inside) > 0
    assert not peaks.maxima[inside.start : inside.stop].any()
    assert peaks.maxima.max() > 0  # decoded audio elsewhere (G.711 silence is not 0)
    # Cached: the same object comes back without another decrypt; another version is not it.
    assert await track_peaks(media, detail, cache) is peaks
    first = next(s for s in detail.segments if s.track == media.track)
    newer = replace(first, version_id="another-version")
    changed = replace(detail, segments=(newer, *(s for s in detail.segments if s != first)))
    assert peaks_key(changed, media.track, 100) != peaks_key(detail, media.track, 100)
    assert cache.get(peaks_key(changed, media.track, 100)) is None
    payload = peaks.to_json()
    assert payload["length"] == count
    assert len(payload["data"]) == 2 * count  # type: ignore[arg-type]
    return int(peaks.maxima.max())


async def check_random_reads(media: TrackMedia, wav: bytes) -> None:
    found: list[tuple[int, int]] = []

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
        derandomize=True,
    )
    @given(a=st.integers(0, len(wav)), length=st.integers(0, 40_000))
    def pick(a: int, length: int) -> None:
        found.append((a, min(len(wav), a + length)))

    pick()
    for start, stop in found:
        assert await media.read(start, stop) == wav[start:stop], (start, stop)
    with pytest.raises(LocalProtocolError, match="outside"):
        await media.read(0, len(wav) + 1)


async def check_console_media(c: Components, rid: str, files: dict[str, Any]) -> None:
    console = ConsoleMedia(max_open=1)
    audit = await _audit(c, rid)
    track = sorted(files)[0]
    media = await console.open_track(c, rid, track, audit)
    assert await console.open_track(c, rid, track, audit) is media  # kept for the next range
    payload = await console.peaks(c, rid, track, audit)
    assert payload["sample_rate"] == media.sample_rate
    assert payload["samples_per_pixel"] == media.sample_rate // 100
    # A long call (here: a small cap) gets fewer peaks a second, never more than the cap.
    capped = ConsoleMedia(max_peaks=100, peaks_cache=console.peaks_cache)
    few = await capped.peaks(c, rid, track, audit)
    assert few["samples_per_pixel"] == media.sample_rate // int(100 / media.duration_s)
    assert 0 < few["length"] <= 100  # type: ignore[operator]
    await capped.aclose()
    assert console.parse_range("bytes=-10", media.length) == [(media.length - 10, media.length)]
    # Another audit event (another reason given) opens its own; the oldest leaves the cache
    # with its segments let go, but a response still streaming from it goes on.
    head = await media.read(0, 100)
    again = await console.open_track(c, rid, track, await _audit(c, rid, "second look"))
    assert again is not media
    assert await console.open_track(c, rid, track, audit) is not media  # opened anew
    assert await media.read(0, 100) == head
    # Two requests opening the same track at once: one is kept, the other closed.
    third = await _audit(c, rid, "third look")
    async with trio.open_nursery() as nursery:
        opened: list[TrackMedia] = []

        async def open_one() -> None:
            opened.append(await console.open_track(c, rid, track, third))

        nursery.start_soon(open_one)
        nursery.start_soon(open_one)
    assert opened[0] is opened[1]
    with pytest.raises(MediaError, match="no recording"):
        await console.open_track(c, "no-such-recording", track, audit)
    await console.aclose()
    assert len(console.peaks_cache) == 0
    with pytest.raises(LocalProtocolError, match="closed"):
        await opened[0].read(0, 1)


async def check_listening(
    c: Components, detail: RecordingDetail, entry: dict[str, Any], out: Path
) -> None:
    """The listening mix, made by range from the tracks, is the bundle's listening.wav."""
    wav = (out / entry["listening"]["file"]).read_bytes()
    roles = {t["track"]: t["role"] for t in entry["listening"]["tracks"] if t["role"]}
    assert set(roles.values()) == {"callee", "caller"}  # stereo: agent left, caller right
    audit = await _audit(c, detail.recording.recording_id)
    objects = StoreObjects(c.store, c.keyring)
    mix = await open_listening_media(objects, c.keyring, detail, audit, roles)
    assert mix is not None
    try:
        assert (mix.channels, mix.length) == (2, len(wav))
        assert await mix.read(0, mix.length) == wav
        for start, stop in ((0, 3), (45, 46), (1001, 9003), (len(wav) - 7, len(wav))):
            assert await mix.read(start, stop) == wav[start:stop], (start, stop)
        got = b"".join([b async for b in mix.iter_range(50, len(wav), block=4099)])
        assert got == wav[50:]
    finally:
        await mix.aclose()
    # Without roles both legs go on both sides (summed, as the bundle would): same length.
    both = await open_listening_media(objects, c.keyring, detail, audit, {})
    assert both is not None
    try:
        assert both.length == len(wav)
        assert both.layout.note.startswith("stereo")
        assert "no role known" in both.layout.note
        mixed = np.frombuffer(await both.read(44, both.length), "<i2").reshape(-1, 2)
        assert np.array_equal(mixed[:, 0], mixed[:, 1])
    finally:
        await both.aclose()


async def check_refusals(c: Components, detail: RecordingDetail) -> None:
    rid = detail.recording.recording_id
    objects = StoreObjects(c.store, c.keyring)
    track = detail.segments[0].track
    other = await c.catalog.append_audit(
        actor="officer-1", action="play", target="another-recording", reason="x", now_ms=now_ms()
    )
    with pytest.raises(LocalProtocolError, match="not recording"):
        await open_track_media(objects, c.keyring, detail, track, other)
    with pytest.raises(MediaError, match="no track 'nope'"):
        await open_track_media(objects, c.keyring, detail, "nope", await _audit(c, rid))


async def check_damage(c: Components, root: Path | None, detail: RecordingDetail) -> None:
    """One segment altered in the store: ranges in it fail naming the object, the others read."""
    assert root is not None
    track = detail.segments[0].track
    segs = sorted((s for s in detail.segments if s.track == track), key=lambda s: s.segment_index)
    bad = segs[1]
    path = root.joinpath(*(encode_component(part) for part in bad.object_key.split("/")))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    os.chmod(path, 0o600)
    path.write_bytes(bytes(data))
    media = await _media(c, detail, track)
    try:
        frame = 2 * media.channels
        first = 44 + segs[0].sample_count * frame  # the altered segment's first byte
        assert len(await media.read(0, first)) == first
        with pytest.raises(IntegrityError, match=bad.object_key):
            await media.read(first, first + 10)
        tail = media.length - 100
        assert len(await media.read(tail, media.length)) == 100
        with pytest.raises(IntegrityError, match=bad.object_key):
            await media.peaks()
    finally:
        await media.aclose()
    with pytest.raises(LocalProtocolError, match="closed"):
        await media.read(0, 10)


def test_peaks_of_pcm_and_silence_in_pieces() -> None:
    rng = np.random.default_rng(7)
    pcm = rng.integers(-32768, 32767, size=(1003, 2), dtype=np.int16)
    acc = PeakAccumulator(10, 2)
    acc.add(pcm[:333].tobytes())
    acc.add_silence(25)
    acc.add(pcm[333:].tobytes())
    peaks = acc.finish(8000, 1028)
    whole = np.concatenate([pcm[:333], np.zeros((25, 2), np.int16), pcm[333:]])
    assert peaks.count == 103
    for i in range(peaks.count):
        group = whole[i * 10 : (i + 1) * 10]
        assert (peaks.minima[i], peaks.maxima[i]) == (group.min(), group.max())
    with pytest.raises(IntegrityError, match="whole frames"):
        acc.add(b"\x00\x01\x02")
    with pytest.raises(IntegrityError, match="track plan says"):
        PeakAccumulator(10, 1).finish(8000, 5)


def test_the_peaks_cache_is_bounded_and_keyed_by_the_objects() -> None:
    acc = PeakAccumulator(1, 1)
    acc.add(np.arange(100, dtype="<i2").tobytes())
    peaks = acc.finish(8000, 100)
    cache = PeaksCache(max_peaks=250)
    keys = [("r", f"t{i}", 100, (("k", None, "d"),)) for i in range(3)]
    for key in keys:
        cache.put(key, peaks)
    assert len(cache) == 2
    assert cache.get(keys[0]) is None  # least recently used went first
    assert cache.get(keys[2]) is peaks
    big = PeakAccumulator(1, 1)
    big.add(bytes(2 * 300))
    cache.put(("r", "huge", 100, ()), big.finish(8000, 300))  # larger than the whole cache
    assert cache.get(("r", "huge", 100, ())) is None
    assert cache.get(keys[2]) is peaks


def _opaque_identity(index: int) -> SegmentIdentity:
    return SegmentIdentity(
        recording_id="rec-opaque",
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


async def test_an_opaque_upload_plays_once_recovered(
    tmp_path: Path, tiny_filesystem: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A segment a host could not seal (uploaded as an unclosed ``.part``, opaque digest) is
    recovered into a sealed copy on the officer's side and read like any other. No room to
    stage it is this host's problem, named (before: a raw ``OSError``, a 500 in the console)."""
    keyring = make_keyring(tmp_path / "keys")
    factory = SpoolSinkFactory(tmp_path / "spool", keyring, chunk_size=4096)
    pcm = np.arange(-6000, 6000, dtype="<i2").tobytes() * 2  # 48,000 bytes
    sink = factory.open(_opaque_identity(0), prologue_size=HEADER_SIZE)
    sink.write(pcm)
    sink.checkpoint()
    part = sink.part_path
    os.close(sink._fd)  # the writer died: never closed
    store = MemoryStore()
    digest = hashlib.sha256(part.read_bytes()).hexdigest()
    with trio.fail_after(30):
        await store.put("k/0", part, sha256=digest, retain_until=None)
        row = SegmentRow(
            recording_id="rec-opaque",
            track="mixed",
            segment_index=0,
            participant_id=None,
            object_key="k/0",
            version_id=None,
            plaintext_sha256=OPAQUE_PLAINTEXT_DIGEST,
            stored_sha256=digest,
            plaintext_size=0,
            stored_size=part.stat().st_size,
            start_ms=1_767_225_600_000,
            end_ms=1_767_225_600_000 + 1500,
            start_sample=0,
            sample_count=len(pcm) // 2,
            sample_rate=16000,
            codec="L16",
            key_id="",
            retain_until_ms=None,
            upload_state=UploadState.VERIFIED,
            recovered=True,
            uploaded_ms=None,
            verified_ms=None,
        )
        objects = StoreObjects(store, keyring)
        plan = plan_track("mixed", [row], [])
        media = TrackMedia(
            objects, keyring, plan, recording_id="rec-opaque", channels=1, audit_id=1
        )
        try:
            assert media.length == 44 + len(pcm)
            assert await media.read(44, media.length) == pcm
            assert await media.read(1000, 1100) == pcm[956:1056]
            peaks = await media.peaks(100)
            assert peaks.count == len(pcm) // 2 // 160
            assert int(peaks.minima.min()) == -6000
        finally:
            await media.aclose()
        # A stored object that differs from the catalog's digest is refused before any key use.
        bad = replace(row, stored_sha256="0" * 64)
        with pytest.raises(IntegrityError, match="differs from the catalog's digest"):
            await objects.fetch(bad)
        fill_filesystem(tiny_filesystem)
        monkeypatch.setattr(officer_media, "IN_MEMORY_BYTES", 1024)
        monkeypatch.setattr(tempfile, "tempdir", str(tiny_filesystem))
        with pytest.raises(
            StorageError, match=f"^k/0: cannot stage it in {tiny_filesystem}: No space left"
        ):
            await objects.fetch(row)
    assert os.listdir(tiny_filesystem) == ["filler"]
