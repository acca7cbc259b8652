"""The pure parts of the export bundle: track plans across segment joins and timeline restarts,
and transcripts whatever text and names RTMS sends."""

from __future__ import annotations

import hashlib
import io
import json
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.catalog.base import GapRow, SegmentRow, UploadState
from recorder.errors import BundleInconsistent
from recorder.officer.bundle.manifest import BUNDLE_FORMAT, canonical, file_entry
from recorder.officer.bundle.plan import Filler, Placed, PlanError, plan_track
from recorder.officer.bundle.signing import sign
from recorder.officer.bundle.transcript import RecordsSplitter, write_vtt
from recorder.officer.bundle.verify import verify_bundle
from recorder.officer.bundle.wavio import wav_header
from tests.officer.test_export_bundle import parse_webvtt

RATE = 8000


def segment(
    index: int, start_sample: int, count: int, start_ms: int, rate: int = RATE
) -> SegmentRow:
    return SegmentRow(
        recording_id="r",
        track="mixed",
        segment_index=index,
        participant_id=None,
        object_key=f"k/{index}",
        version_id=None,
        plaintext_sha256="0" * 64,
        stored_sha256=None,
        plaintext_size=0,
        stored_size=0,
        start_ms=start_ms,
        end_ms=start_ms + count * 1000 // rate,
        start_sample=start_sample,
        sample_count=count,
        sample_rate=rate,
        codec="L16",
        key_id="k",
        retain_until_ms=None,
        upload_state=UploadState.VERIFIED,
        recovered=False,
        uploaded_ms=None,
        verified_ms=None,
    )


def gap(start_ms: int, end_ms: int, cause: str, samples: tuple[int, int] | None = None) -> GapRow:
    return GapRow(
        "r", "mixed", start_ms, end_ms, *(samples or (None, None)), cause=cause, detail=""
    )


def test_segments_of_one_timeline_are_laid_end_to_end_in_index_order() -> None:
    plan = plan_track("mixed", [segment(1, 8000, 8000, 1000), segment(0, 0, 8000, 0)], [])
    assert [
        (p.segment.segment_index, p.position) for p in plan.pieces if isinstance(p, Placed)
    ] == [
        (0, 0),
        (1, 8000),
    ]
    assert plan.fillers == ()
    assert plan.total_samples == 16000


def test_a_new_timeline_is_placed_by_the_rtms_clock_with_listed_silence_between() -> None:
    # A takeover: the second owner's timeline starts at sample 0 again, 500 ms later.
    takeover = gap(1000, 1500, "takeover")
    plan = plan_track("mixed", [segment(0, 0, 8000, 0), segment(1, 0, 8000, 1500)], [takeover])
    [filler] = plan.fillers
    assert filler == Filler(position=8000, count=4000, start_ms=1000, end_ms=1500, cause="takeover")
    assert plan.total_samples == 20000
    [listed] = plan.gaps
    assert (listed.wav_start_sample, listed.wav_end_sample) == (8000, 12000)


def test_samples_the_timeline_skipped_between_segments_are_filled() -> None:
    plan = plan_track("mixed", [segment(0, 0, 8000, 0), segment(1, 12000, 8000, 1500)], [])
    [filler] = plan.fillers
    assert (filler.position, filler.count, filler.cause) == (8000, 4000, "not_recorded")


def test_a_gap_inside_a_segment_is_listed_at_its_exact_samples() -> None:
    inside = gap(250, 500, "media_interrupted", (2000, 4000))
    plan = plan_track("mixed", [segment(0, 0, 8000, 0), segment(1, 8000, 8000, 1000)], [inside])
    [listed] = plan.gaps
    assert (listed.wav_start_sample, listed.wav_end_sample, listed.cause) == (
        2000,
        4000,
        "media_interrupted",
    )


def test_a_rate_change_inside_a_track_is_refused_by_name() -> None:
    with pytest.raises(PlanError, match="segment 1 is 16000 Hz"):
        plan_track("mixed", [segment(0, 0, 8000, 0), segment(1, 8000, 16000, 1000, 16000)], [])


texts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=80)


@given(
    st.lists(
        st.tuples(st.integers(0, 10**7), texts, texts),
        min_size=1,
        max_size=20,
    )
)
def test_any_transcript_text_and_speaker_make_a_webvtt_file_that_parses(
    items: list[tuple[int, str, str]],
) -> None:
    chat, events = io.BytesIO(), io.BytesIO()
    splitter = RecordsSplitter(chat, events)
    for start, speaker, text in items:
        record = {"type": "transcript", "ts_ms": start, "user_name": speaker, "text": text}
        splitter.feed(json.dumps(record).encode())
    splitter.finish()
    out = io.BytesIO()
    write_vtt(out, splitter.cues, 0)
    cues = parse_webvtt(out.getvalue().decode("utf-8"))
    assert len(cues) == len(items)
    ordered = sorted(items, key=lambda item: item[0])
    assert [c.start_ms for c in cues] == [start for start, _, _ in ordered]
    # The words come back as sent, one cue each, blank lines and line-end kinds aside.
    expected = []
    for _, _, text in ordered:
        lines = [line.strip() for line in text.replace("\r", "\n").split("\n")]
        expected.append("\n".join(line for line in lines if line) or "...")
    assert [c.text for c in cues] == expected
    assert json.loads(chat.getvalue()) == []
    assert json.loads(events.getvalue()) == []


def _signed_bundle(root: Path, audio: bytes, key: Ed25519PrivateKey) -> None:
    """A one-track bundle whose manifest says frames 4..8 were filled with silence."""
    frames = len(audio) // 2
    (root / "r1" / "audio").mkdir(parents=True)
    wav = root / "r1" / "audio" / "mixed.wav"
    wav.write_bytes(wav_header(sample_rate=RATE, channels=1, frames=frames) + audio)
    digest = hashlib.sha256(wav.read_bytes()).hexdigest()
    manifest = {
        "format": BUNDLE_FORMAT,
        "actor": "o",
        "reason": "r",
        "recordings": [
            {
                "recording_id": "r1",
                "files": [
                    file_entry(
                        "r1/audio/mixed.wav",
                        digest,
                        wav.stat().st_size,
                        "track",
                        sample_rate=RATE,
                        channels=1,
                        frames=frames,
                    )
                ],
                "export_audit_event": {
                    "target": "r1",
                    "action": "export",
                    "actor": "o",
                    "reason": "r",
                },
                "tracks": [
                    {
                        "track": "mixed",
                        "file": "r1/audio/mixed.wav",
                        "channels": 1,
                        "frames": frames,
                        "segments": [
                            {"wav_start_frame": 0, "frames": 4},
                            {"wav_start_frame": 8, "frames": frames - 8},
                        ],
                        "filled": [{"wav_start_frame": 4, "frames": 4}],
                        "gaps": [],
                    }
                ],
            }
        ],
    }
    body = canonical(manifest)
    (root / "manifest.json").write_bytes(body)
    (root / "manifest.sig").write_bytes(sign(key, body).to_json())


def test_verify_export_checks_that_filled_spans_are_silent(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    good = tmp_path / "good"
    _signed_bundle(good, struct.pack("<16h", *([100] * 4 + [0] * 4 + [200] * 8)), key)
    assert verify_bundle(good, key.public_key()).ok
    # Signed and hashed consistently, but "silence" that holds audio: inconsistent (87).
    bad = tmp_path / "bad"
    _signed_bundle(bad, struct.pack("<16h", *([100] * 4 + [0, 7, 0, 0] + [200] * 8)), key)
    report = verify_bundle(bad, key.public_key())
    gravest = report.gravest()
    assert isinstance(gravest, BundleInconsistent)
    assert gravest.exit_code == 87
    assert "filled silence holds audio" in str(gravest)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(value: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_a_hostile_signed_manifest_is_reported_never_crashes_the_verifier(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Whatever a signer put in the manifest, verify-export reports problems and stops."""
    key = Ed25519PrivateKey.generate()
    root = tmp_path_factory.mktemp("bundle")
    _signed_bundle(root, struct.pack("<16h", *([100] * 4 + [0] * 4 + [200] * 8)), key)
    manifest = json.loads((root / "manifest.json").read_bytes())
    target = data.draw(st.sampled_from(_paths(manifest)[1:]))
    replacement = data.draw(json_values)
    holder = manifest
    for step in target[:-1]:
        holder = holder[step]
    holder[target[-1]] = replacement
    body = canonical(manifest)
    (root / "manifest.json").write_bytes(body)
    (root / "manifest.sig").write_bytes(sign(key, body).to_json())
    report = verify_bundle(root, key.public_key())
    assert all(problem.exit_code in (84, 85, 86, 87) for problem in report.problems)


def test_a_non_ascii_file_digest_in_a_signed_manifest_is_a_tampered_file(
    tmp_path: Path,
) -> None:
    """Found by the property above: a digest with non-ASCII text once crashed the verifier."""
    key = Ed25519PrivateKey.generate()
    _signed_bundle(tmp_path, struct.pack("<16h", *([100] * 4 + [0] * 4 + [200] * 8)), key)
    manifest = json.loads((tmp_path / "manifest.json").read_bytes())
    path = next(p for p in _paths(manifest) if p and p[-1] == "sha256" and "files" in p)
    holder = manifest
    for step in path[:-1]:
        holder = holder[step]
    holder["sha256"] = "é" * 64
    body = canonical(manifest)
    (tmp_path / "manifest.json").write_bytes(body)
    (tmp_path / "manifest.sig").write_bytes(sign(key, body).to_json())
    report = verify_bundle(tmp_path, key.public_key())
    assert [p.exit_code for p in report.problems] == [85]
