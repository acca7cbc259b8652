"""Video end to end through the assembled service: a signed webhook, the simulator's real H.264
over real WebSockets, the engagement's video capture, the spool, the local store (uploaded and
verified), the catalog (SQLite), and the signed export bundle. The exported MP4s decode, hold
exactly the pictures the simulator sent at the RTMS times it sent them (missing only inside
recorded gaps), and the MP4 with the listening audio puts both on the same clock."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import trio

from recorder.catalog.base import RecordingStatus, UploadState
from recorder.config import CatalogConfig, CatalogKind, MediaKind
from recorder.officer.bundle.export import export_bundle, manifest_json
from recorder.officer.bundle.signing import generate_signing_key, load_signing_key, public_bytes
from recorder.officer.bundle.verify import verify_bundle
from recorder.officer.show import read_records
from recorder.officer.verify import verify_recording
from recorder.service.demo import demo_config
from recorder.simulator import Product, Scenario
from recorder.simulator.video import VideoFeedSpec
from recorder.video.probe import pictures
from recorder.video.settings import VideoConfig
from tests.service.test_service import record_calls, service

pytestmark = pytest.mark.slow

INTERVAL = 200  # 5 fps
#: MP4 boxes: any of them on disk outside the export means plaintext video.
PLAINTEXT_MARKERS = (b"ftypisom", b"moof", b"mdat", b"avcC")


def plaintext_files(root: Path) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and any(m in path.read_bytes() for m in PLAINTEXT_MARKERS):
            found.append(path)
    return found


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def catalog_kind(request: pytest.FixtureRequest) -> CatalogConfig | None:
    """The embedded SQLite catalog, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return None
    dsn: str = request.getfixturevalue("postgres_dsn")
    return CatalogConfig(kind=CatalogKind.POSTGRES, postgres_dsn=dsn)


async def test_video_from_webhook_to_export(
    tmp_path: Path, catalog_kind: CatalogConfig | None
) -> None:
    base = demo_config(tmp_path)
    if catalog_kind is not None:
        base = replace(base, catalog=catalog_kind)
    config = replace(
        base,
        rtms=replace(base.rtms, media=(MediaKind.AUDIO, MediaKind.VIDEO, MediaKind.DESKSHARE)),
        capture=replace(base.capture, segment_seconds=2),
        video=VideoConfig(fps=5, deskshare_fps=2, segment_seconds=2),
    )
    assert config.secrets.zoom_client_id is not None
    assert config.secrets.zoom_client_secret is not None
    scenario = Scenario(
        product=Product.MEETING,
        name="video-meeting",
        duration_s=5.0,
        media=("audio", "video", "deskshare"),
        client_id=config.secrets.zoom_client_id.reveal(),
        client_secret=config.secrets.zoom_client_secret.reveal(),
        video=VideoFeedSpec(keyframe_interval=5, drop_frames=(13, 14)),
        # Zoom does not buffer video: the drop at 2.6 s must find the service's video socket
        # live, however long a loaded host takes from the webhook to the media handshakes.
        start_when_streaming=("audio", "video", "deskshare"),
    )
    with trio.fail_after(90):
        async with service(config) as running:
            [eng] = await record_calls(running, config, scenario)
            c = running.components
            [row] = await c.catalog.search(stream_id=eng.scenario.rtms_stream_id)
            detail = await c.catalog.show(row.recording_id)
            assert detail is not None
            assert detail.recording.status is RecordingStatus.COMPLETE
            video_rows = [r for r in detail.records if r.kind in ("video", "deskshare")]
            assert {r.kind for r in video_rows} == {"video", "deskshare"}
            assert all(r.upload_state is UploadState.VERIFIED for r in video_rows)
            assert all(r.object_key.endswith(".mp4.rec") for r in video_rows)
            video_gaps = [g for g in detail.gaps if g.track == "video"]
            assert ("lost_packets", eng.scenario.t0_ms + 13 * INTERVAL) in {
                (g.cause, g.start_ms) for g in video_gaps
            }
            # No plaintext video anywhere the recorder keeps state (spool, store, journals).
            assert await trio.to_thread.run_sync(plaintext_files, tmp_path) == []
            # Officers' other views: `show` reads only JSON-lines records (no video "problem"),
            # `verify` checks the MP4 objects like any other; the bundle below exports them.
            view = await read_records(c, detail)
            assert view.problems == []
            verdict = await verify_recording(c, row.recording_id, actor="t", reason="t")
            assert verdict.ok, verdict
            text = c.metrics.render().decode()
            assert re.search(
                r'rtmsrec_video_frames_total\{kind="video",outcome="frames"\} [1-9]', text
            )
            assert 'rtmsrec_video_gap_seconds_total{cause="lost_packets",kind="video"}' in text
            assert re.search(r'rtmsrec_video_segments_sealed_total\{kind="deskshare"\} [1-9]', text)
            key_path = tmp_path / "signing.key"
            generate_signing_key(key_path)
            out = tmp_path / "bundle"
            await export_bundle(
                c,
                [row.recording_id],
                out,
                actor="officer-1",
                reason="FINRA 4511",
                signing_key=load_signing_key(key_path),
            )
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    public = Ed25519PublicKey.from_public_bytes(public_bytes(load_signing_key(key_path)))
    report = verify_bundle(out, public)
    assert not report.problems, report.problems
    [entry] = manifest_json(out)["recordings"]  # type: ignore[misc]
    files = {f["path"].split("/", 1)[1]: f for f in entry["files"]}
    gaps = entry["video"]["tracks"]["video"]["gaps"]
    for kind in ("video", "deskshare"):
        f = files[f"video/{kind}.mp4"]
        got = [
            (f["start_ms"] + p.time_ms, p.number)
            for p in pictures(out / row.recording_id / "video" / f"{kind}.mp4")
        ]
        sent = dict(eng.video.sent[kind])
        assert len(got) == f["frames"] >= 4
        for at_ms, number in got:
            assert at_ms in sent, (kind, at_ms)
            assert number in (sent[at_ms], None)
        readable = [n for _, n in got if n is not None]
        assert len(readable) >= len(got) - 5  # only pictures after the injected loss may blur
        recorded = {t for t, _ in got}
        kind_gaps = entry["video"]["tracks"][kind]["gaps"]
        for at_ms in sent:
            if at_ms not in recorded:
                assert any(g["start_ms"] <= at_ms < g["end_ms"] for g in kind_gaps), at_ms
    assert any(g["cause"] == "lost_packets" for g in gaps)
    # The browser file: camera + listening audio on one clock.
    both = files["listening-video.mp4"]
    zero = both["zero_ms"]
    listening_start = entry["listening"]["start_ms"]
    path = out / row.recording_id / "listening-video.mp4"
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac"
        first_audio = next(iter(container.decode(audio)))
        assert first_audio.pts is not None
        audio_start_ms = float(first_audio.pts * first_audio.time_base * 1000)
    # The audio begins at its RTMS time (within one video frame; AAC priming is ~21 ms).
    assert abs(zero + audio_start_ms - listening_start) < INTERVAL
    sent = dict(eng.video.sent["video"])
    for pic in pictures(path):
        assert pic.number is None or sent[zero + pic.time_ms] == pic.number
    # The audio itself sits where the listening WAV says: the AAC track, correlated with the
    # verified listening.wav, is offset by (listening start - zero) within one video frame.
    lag_ms = audio_lag_ms(path, out / row.recording_id / "listening.wav")
    assert abs(lag_ms - (listening_start - zero)) < INTERVAL


def audio_lag_ms(mp4: Path, wav: Path) -> float:
    """Where ``wav``'s first 2 s of sound begin inside ``mp4``'s audio, in ms."""
    with av.open(str(wav)) as container:
        rate = container.streams.audio[0].codec_context.sample_rate
        ref = np.concatenate(
            [f.to_ndarray().astype(np.float64).mean(axis=0) for f in container.decode(audio=0)]
        )
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    with av.open(str(mp4)) as container:
        parts = []
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                parts.append(out.to_ndarray().reshape(-1).astype(np.float64))
        start = container.streams.audio[0].start_time or 0
        start_ms = float(start * container.streams.audio[0].time_base * 1000)
    got = np.concatenate(parts)[: 4 * rate]
    window = ref[: 2 * rate]
    size = len(got) + len(window)
    corr = np.fft.irfft(np.fft.rfft(got, size) * np.conj(np.fft.rfft(window, size)), size)
    lag = int(np.argmax(corr[: len(got) - len(window) + 1]))
    return start_ms + lag * 1000 / rate
