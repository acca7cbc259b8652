"""The signed export bundle through the assembled service: real signed webhooks, the project's
RTMS simulator over real WebSockets, the embedded default's SQLite catalog and keys, on the local
store and on moto's S3 (Object Lock); ``recorder verify-export`` as a process.

A recording is made across several segment rotations (1 s segments) with a media drop, so the
whole-call WAVs are checked sample for sample against what the simulator played, with silence
exactly where the catalog's gaps are.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import tempfile
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import trio

from recorder import durable
from recorder.catalog.base import RecordingDetail, RecordingStatus
from recorder.cli import main as cli_main
from recorder.config import Config, ObjectLockMode, S3Config, StoreKind
from recorder.errors import BundleWriteFailed, RecorderError, StorageError
from recorder.officer import verify as officer_verify
from recorder.officer.bundle.export import BundleResult, export_bundle, manifest_json
from recorder.officer.bundle.signing import generate_signing_key, load_signing_key, public_bytes
from recorder.service.components import Components
from recorder.simulator.engagement import Engagement as SimEngagement
from recorder.simulator.scenario import Action, Step
from recorder.store.local import encode_component
from recorder.store.s3 import S3Config as S3StoreConfig
from recorder.store.s3 import build_s3_client
from tests.conftest import fill_filesystem, mounted_tmpfs
from tests.officer.support import sealed_track
from tests.service.test_service import record_calls, service, short_config, zcc_call
from tests.store.s3_helpers import new_locked_bucket

pytestmark = pytest.mark.slow

CONSUMER_ANSWERED, USER_ANSWERED = 8, 10
CALL_S = 4.0
RATE = 8000  # the simulator's ZCC legs: G.711 at 8 kHz

TRANSCRIPTS = (
    (0.6, "ch-caller", "Hello, I would like to sell & buy <now>"),
    (1.4, "ch-agent", "Certainly --> one moment"),
    (3.1, "ch-caller", "Thank you"),
)


def zcc_steps() -> tuple[Step, ...]:
    return (
        Step(0.4, Action.ZCC_EVENT, {"event_type": CONSUMER_ANSWERED, "channel_id": "ch-caller"}),
        Step(0.5, Action.ZCC_EVENT, {"event_type": USER_ANSWERED, "channel_id": "ch-agent"}),
        *(
            Step(at, Action.TRANSCRIPT, {"text": text, "channel_id": channel})
            for at, channel, text in TRANSCRIPTS
        ),
        Step(2.0, Action.DROP_MEDIA, {"lose_s": 0.6}),
    )


#: ``recorder ARGS...`` -> (exit code, stdout and stderr).
Cli = Callable[..., Awaitable[tuple[int, str]]]


def in_process_cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """The ``recorder`` command in this process, in a worker thread with its own trio loop (as
    from a shell). A fresh interpreter per command costs ~0.75 s of CPU importing the package:
    22 of them were 90% of this test's CPU, and on a 2-core host at load 9 that alone ran past
    the 120 s test timeout. ``shell_cli`` keeps the real ``python -m recorder`` path covered."""

    async def run(*args: str) -> tuple[int, str]:
        code: int = await trio.to_thread.run_sync(cli_main, list(args))
        out = capsys.readouterr()
        return code, out.out + out.err

    return run


async def shell_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """``python -m recorder ARGS...`` in a child process, as an officer's shell runs it."""
    done = await trio.run_process(
        [sys.executable, "-m", "recorder", *args],
        env=env,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr).decode()


def one_second_segments(config: Config) -> Config:
    return replace(config, capture=replace(config.capture, segment_seconds=1))


def s3_store_config(config: Config, endpoint: str) -> Config:
    bucket = new_locked_bucket(endpoint, prefix="bundle")
    return replace(
        config,
        storage=replace(
            config.storage,
            store=StoreKind.S3,
            local_store_path=None,
            s3=S3Config(
                bucket=bucket,
                endpoint_url=endpoint,
                region="us-east-1",
                object_lock_mode=ObjectLockMode.GOVERNANCE,
                retention_days=1,
                verify_tls=False,
            ),
        ),
    )


def read_wav(path: Path) -> tuple[int, npt.NDArray[np.int16]]:
    with wave.open(str(path)) as wav:
        frames = wav.readframes(wav.getnframes())
        return wav.getframerate(), np.frombuffer(frames, "<i2").reshape(-1, wav.getnchannels())


@dataclass
class Recorded:
    config: Config
    engagement: SimEngagement
    detail: RecordingDetail
    key: Path


async def export(
    c: Components, detail: RecordingDetail, out: Path, key: Path, reason: str = "FINRA 4511"
) -> BundleResult:
    return await export_bundle(
        c,
        [detail.recording.recording_id],
        out,
        actor="officer-1",
        reason=reason,
        signing_key=load_signing_key(key),
    )


def played_leg(engagement: SimEngagement, track: str) -> npt.NDArray[np.int16]:
    cycle = engagement.program.track(track).pcm[::2]  # the program is 16 kHz
    samples = round(CALL_S * RATE)
    return np.tile(cycle, -(-samples // len(cycle)))[:samples]


async def check_bundle(rec: Recorded, c: Components, out: Path) -> None:
    detail = rec.detail
    rid = detail.recording.recording_id
    manifest = manifest_json(out)
    [entry] = manifest["recordings"]  # type: ignore[misc]
    assert entry["recording_id"] == rid
    # The policy in force, as the catalog stored it when the recording was sealed.
    name, sha256, days = await c.catalog.recording_policy(rid)  # type: ignore[misc]
    assert entry["retention"]["policy"] == {"name": name, "sha256": sha256, "retain_days": days}
    # Every track: one continuous WAV equal to the simulator's audio, silent in the gaps.
    tracks = {t["track"]: t for t in entry["tracks"]}
    assert set(tracks) == {"channel-ch-agent", "channel-ch-caller"}
    legs = {}
    for name, track in tracks.items():
        segments = [s for s in detail.segments if s.track == name]
        assert len(segments) >= 4  # rotated at least every second
        rate, audio = read_wav(out / track["file"])
        assert rate == RATE
        assert audio.shape[1] == 1
        gaps = [g for g in detail.gaps if g.track == name]
        assert gaps, "the media drop left no gap"
        # What the recorder sealed, each segment decrypted on its own.
        sealed_rate, sealed = await sealed_track(c, detail, name)
        assert (sealed_rate, sealed.shape[1]) == (RATE, 1)
        recorded = sealed[:, 0]
        assert len(audio) == sum(s.sample_count for s in segments) == len(recorded)
        # Sample for sample what was sealed, joins included; silent exactly in the gaps.
        assert np.array_equal(audio[:, 0], recorded)
        played = played_leg(rec.engagement, name).astype(np.float64)
        heard = audio[:, 0].astype(np.float64)
        outside = np.ones(len(heard), dtype=bool)
        for gap in gaps:
            assert gap.start_sample is not None
            assert gap.end_sample is not None
            assert not heard[gap.start_sample : gap.end_sample].any()
            outside[gap.start_sample : gap.end_sample] = False
        # G.711 at 8 kHz is lossy: played and recorded agree closely outside the gaps.
        assert len(played) >= len(heard) - RATE // 10
        n = min(len(played), len(heard))
        played, heard = played[:n][outside[:n]], heard[:n][outside[:n]]
        if not played.any():  # this leg's speaker is silent in the call's first seconds
            assert np.abs(heard).max() < 64
        else:
            corr = np.corrcoef(played, heard)[0, 1]
            assert corr > 0.9, (name, corr)
        listed = [(g["wav_start_frame"], g["wav_end_frame"], g["cause"]) for g in track["gaps"]]
        assert listed == [(g.start_sample, g.end_sample, g.cause) for g in gaps]
        assert track["filled"] == []  # one timeline: the recorder wrote the gaps itself
        legs[name] = audio[:, 0]
    # The listening file: agent left, caller right, on one clock.
    listening = entry["listening"]
    sides = {t["track"]: (t["side"], t["role"]) for t in listening["tracks"]}
    events_seen = json.loads(
        (out / next(f for f in entry["files"] if f["kind"] == "events")["path"]).read_text()
    )
    assert sides == {
        "channel-ch-agent": ("left", "callee"),
        "channel-ch-caller": ("right", "caller"),
    }, (sides, [e for e in events_seen if e["type"] == "contact_center"])
    rate, stereo = read_wav(out / listening["file"])
    assert stereo.shape[1] == 2
    offsets = {t["track"]: t["offset_frames"] for t in listening["tracks"]}
    for name, channel in (("channel-ch-agent", 0), ("channel-ch-caller", 1)):
        at = offsets[name]
        leg = legs[name]
        assert np.array_equal(stereo[at : at + len(leg), channel], leg)
    # The transcript: WebVTT that parses, cues equal to the transcript records.
    files = {f["kind"]: f for f in entry["files"]}
    vtt = (out / files["transcript_webvtt"]["path"]).read_text(encoding="utf-8")
    cues = parse_webvtt(vtt)
    zero = files["transcript_webvtt"]["zero_ms"]
    speakers = {"ch-caller": "Caller", "ch-agent": "Agent"}
    assert [(c.speaker, c.text) for c in cues] == [
        (speakers[channel], text) for _, channel, text in TRANSCRIPTS
    ]
    starts = [c.start_ms + zero for c in cues]
    assert starts == sorted(starts)
    text = (out / files["transcript_text"]["path"]).read_text(encoding="utf-8")
    assert (
        "Agent: Certainly --> one moment" in text.replace("->", "-->") or "Agent: Certainly" in text
    )
    events = json.loads((out / files["events"]["path"]).read_text())
    assert [e["event"] for e in events if e["type"] == "contact_center"] == [
        "CONSUMER_ANSWERED",
        "USER_ANSWERED",
    ]
    assert json.loads((out / files["chat"]["path"]).read_text()) == []
    # Sources: the catalog's objects, by version and stored digest; the export's audit event.
    sources = {s["object_key"]: s for s in entry["sources"]}
    for seg in detail.segments:
        src = sources[seg.object_key]
        assert (src["version_id"], src["stored_sha256"], src["plaintext_sha256"]) == (
            seg.version_id,
            seg.stored_sha256,
            seg.plaintext_sha256,
        )
    trail = await c.catalog.audit_trail(rid)
    [audit] = [a for a in trail if a.action == "export" and a.reason == "FINRA 4511"]
    assert entry["export_audit_event"]["audit_id"] == audit.audit_id
    assert entry["export_audit_event"]["row_hash"] == audit.row_hash
    assert audit.reason == "FINRA 4511"


@dataclass
class VttCue:
    start_ms: int
    end_ms: int
    speaker: str
    text: str


_TIMING = re.compile(
    r"^(\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3}) --> (\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3})$"
)
_VOICE = re.compile(r"^<v ([^>]+)>(.*)$", re.DOTALL)


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def parse_webvtt(text: str) -> list[VttCue]:
    """A strict reading of the WebVTT grammar this bundle uses (header, id, timing, voice)."""
    assert "\r" not in text
    blocks = text.split("\n\n")
    assert blocks[0] == "WEBVTT", blocks[0]
    cues = []
    for number, block in enumerate(b for b in blocks[1:] if b.strip()):
        lines = block.rstrip("\n").split("\n")
        assert lines[0] == str(number + 1), lines
        match = _TIMING.match(lines[1])
        assert match, lines[1]
        h1, m1, s1, f1, h2, m2, s2, f2 = (int(g) for g in match.groups())
        start = ((h1 * 60 + m1) * 60 + s1) * 1000 + f1
        end = ((h2 * 60 + m2) * 60 + s2) * 1000 + f2
        assert end > start
        body = "\n".join(lines[2:])
        assert "-->" not in body
        assert body
        assert "&" not in re.sub(r"&(amp|lt|gt);", "", body)
        voice = _VOICE.match(body)
        assert voice, body
        assert "<" not in voice.group(2)
        cues.append(VttCue(start, end, _unescape(voice.group(1)), _unescape(voice.group(2))))
    return cues


async def record_and_check(tmp_path: Path, config: Config, cli: Cli) -> None:
    key = tmp_path / "signing.ed25519"
    generate_signing_key(key)
    public = tmp_path / "signing.pub"
    public.write_bytes(public_bytes(load_signing_key(key)))
    with trio.fail_after(120):
        async with service(config) as running:
            [eng] = await record_calls(
                running, config, zcc_call(config, seconds=CALL_S, steps=zcc_steps())
            )
            c = running.components
            [row] = await c.catalog.search(stream_id=eng.scenario.rtms_stream_id)
            detail = await c.catalog.show(row.recording_id)
            assert detail is not None
            assert detail.recording.status is RecordingStatus.COMPLETE
            rec = Recorded(config, eng, detail, key)
            out = tmp_path / "bundle"
            await export(c, detail, out, key)
            await check_bundle(rec, c, out)

            if config.storage.store is StoreKind.LOCAL:
                await check_cli_export(tmp_path, row.recording_id, cli)
                await check_cli_show(detail, cli)
                await check_a_full_disk_names_the_bundle_file(c, detail, tmp_path, key)
                await check_a_full_temp_dir_names_the_object_staged(c, detail, tmp_path, key)
                await check_failed_export_leaves_nothing(c, config, detail, tmp_path, key)
            else:
                await check_newer_version_is_not_read(c, config, detail, tmp_path, key)
    await check_verify_export(out, public, tmp_path, cli)


def exited_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


async def check_cli_export(tmp_path: Path, recording_id: str, run: Cli) -> None:
    """The commands as an officer runs them, on the embedded default's state (the caller set
    ``XDG_STATE_HOME``); the first one through a real shell's ``python -m recorder``."""
    code, text = await shell_cli(
        "keys", "init", "--export-signing", env={**os.environ, "XDG_STATE_HOME": str(tmp_path)}
    )
    assert code == 0, text
    [key] = (tmp_path / "rtms-recorder").rglob("export-signing.ed25519")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    code, text = await run("keys", "init", "--export-signing")
    assert code == 3, text  # never overwritten
    assert "refusing to overwrite" in text
    public = tmp_path / "cli.pub"
    code, text = await run("keys", "export-signing-public", "--out", str(public))
    assert code == 0, text
    bundle = tmp_path / "cli-bundle"
    # What an export killed outright left beside the target is removed by the next one; a
    # partial directory whose owner still runs is another export at work and stays.
    dead_pid = await trio.to_thread.run_sync(exited_pid)
    abandoned = tmp_path / ".cli-bundle.partial-killed"
    abandoned.mkdir()
    (abandoned / ".owner-pid").write_text(str(dead_pid))
    (abandoned / "decrypted.wav").write_bytes(b"RIFF plaintext")
    busy = tmp_path / ".cli-bundle.partial-busy"
    busy.mkdir()
    (busy / ".owner-pid").write_text(str(os.getpid()))
    await check_text_search(tmp_path, recording_id, run)
    # Many recordings at once by a search (here words of both speakers, in any order).
    code, text = await run(
        "export",
        "--product",
        "contact_center",
        "--text",
        "ONE moment, sell",
        "--out",
        str(bundle),
        "--reason",
        "SEC 17a-4",
    )
    assert code == 0, text
    assert "the search found 1 recording(s) to export" in text
    assert "exported 1 recording(s)" in text
    assert not abandoned.exists()
    assert busy.exists()
    busy.joinpath(".owner-pid").unlink()
    busy.rmdir()
    code, text = await run("verify-export", str(bundle), "--public-key", str(public))
    assert code == 0, text
    assert [r["recording_id"] for r in manifest_json(bundle)["recordings"]] == [recording_id]
    code, text = await run(
        "export", "no-such-recording", "--out", str(tmp_path / "x"), "--reason", "r"
    )
    assert code == 2, text
    assert "no-such-recording" in text
    assert not (tmp_path / "x").exists()


async def check_text_search(
    tmp_path: Path, recording_id: str, run: Callable[..., Awaitable[tuple[int, str]]]
) -> None:
    """``search --text``: the recorder indexed the transcript as MACs at seal time; every word
    of the query must be in the recording, spelled in any case or punctuation; the catalog
    holds no transcript word; the audit log keeps the query's MACs, not its words."""
    code, text = await run("search", "--text", "certainly THANK-you", "--json")
    assert code == 0, text
    assert [r["recording_id"] for r in json.loads(text)["recordings"]] == [recording_id]
    code, text = await run("search", "--text", "certainly unicorn", "--json")
    assert code == 0, text
    assert json.loads(text)["recordings"] == []
    code, text = await run("search", "--text", " ,.!? ")
    assert code != 0
    assert "no word to search for" in text
    [key] = (tmp_path / "rtms-recorder").rglob("search-index.key")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    words = [w.lower().encode() for _, _, said in TRANSCRIPTS for w in re.findall(r"\w{4,}", said)]
    for db in (tmp_path / "rtms-recorder").rglob("*.sqlite3*"):
        data = db.read_bytes().lower()
        assert not [w for w in words if w in data], db


async def check_cli_show(detail: RecordingDetail, run: Cli) -> None:
    """``recorder show --json``: the whole story of the recording in one document."""
    rid = detail.recording.recording_id
    code, text = await run("show", rid, "--json", "--reason", "case 7")
    assert code == 0, text
    doc = json.loads(text)
    assert doc["schema"] == "rtms-recorder.show/1"
    assert doc["recording"]["recording_id"] == rid
    roles = {p["user_name"]: p["role"] for p in doc["participants"]}
    assert roles == {"Agent": "callee", "Caller": "caller"}
    agent = next(p for p in doc["participants"] if p["user_name"] == "Agent")
    assert [e["event"] for e in agent["presence"]] == ["USER_ANSWERED"]
    tracks = {t["track"]: t for t in doc["tracks"]}
    assert set(tracks) == {"channel-ch-agent", "channel-ch-caller"}
    for track in tracks.values():
        gap_ms = sum(g.end_ms - g.start_ms for g in detail.gaps if g.track == track["track"])
        assert track["gap_ms"] == gap_ms > 0
        assert track["captured_ms"] == track["covered_ms"] - gap_ms
        assert track["expected_ms"] == detail.recording.ended_ms - detail.recording.started_ms
        assert len(track["segments"]) >= 4
    assert {g["cause"] for g in doc["gaps"]} == {g.cause for g in detail.gaps}
    assert [c["text"] for c in doc["transcript"]["excerpt"]] == [t for _, _, t in TRANSCRIPTS]
    assert doc["verification"]["ok"] is True
    assert doc["verification"]["last_verified_ms"] is not None
    actions = [(a["action"], a["reason"]) for a in doc["audit_trail"]]
    assert ("export", "FINRA 4511") in actions
    assert ("verify", "case 7") in actions
    assert ("show", "case 7") in actions
    assert doc["legal_holds"] == []
    code, text = await run("show", rid, "--no-verify", "--tz", "Europe/Paris")
    assert code == 0, text
    assert "Agent (callee)" in text
    assert "Certainly --> one moment" in text
    assert "CET" in text


async def check_failed_export_leaves_nothing(
    c: Components, config: Config, detail: RecordingDetail, tmp_path: Path, key: Path
) -> None:
    """One segment altered in the store: nothing decrypted remains beside the target, the
    target does not exist, the error names the object, the exit code is an integrity one."""
    seg = sorted(detail.segments, key=lambda s: (s.track, s.segment_index))[-1]
    root = config.storage.local_store_path
    assert root is not None
    path = root.joinpath(*(encode_component(part) for part in seg.object_key.split("/")))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    os.chmod(path, 0o600)
    path.write_bytes(bytes(data))
    failed = tmp_path / "failed"
    with pytest.raises(RecorderError) as caught:
        await export(c, detail, failed, key, reason="second look")
    assert caught.value.exit_code in (90, 91, 92)
    assert seg.object_key in str(caught.value)
    assert not failed.exists()
    leftovers = await trio.to_thread.run_sync(lambda: [p.name for p in tmp_path.iterdir()])
    assert [name for name in leftovers if "failed" in name] == []


PAGE = 4096


def _pages(size: int) -> int:
    """What a file of ``size`` bytes takes on a tmpfs: whole pages."""
    return -(-size // PAGE) * PAGE


async def check_a_full_disk_names_the_bundle_file(
    c: Components, detail: RecordingDetail, tmp_path: Path, key: Path
) -> None:
    """The bundle on a file system with room for everything written before one file but not
    for that file (a real ENOSPC, sized from the bundle already exported): the error names
    that file, not the object being read, and nothing is left beside the target."""
    rid = detail.recording.recording_id
    sizes = {
        f["path"].split("/", 1)[1]: f["size"]
        for f in manifest_json(tmp_path / "bundle")["recordings"][0]["files"]  # type: ignore[index]
    }
    owner = PAGE  # the partial directory's owner pid
    audio = sum(_pages(size) for name, size in sizes.items() if name.endswith(".wav"))
    records = _pages(sizes["chat.json"]) + _pages(sizes["events.json"])
    # The records first: events (refused while its records are read: a buffer of 64 bytes),
    # then chat. The transcripts after the audio.
    before = {
        "events.json": owner,
        "chat.json": owner + _pages(sizes["events.json"]),
        "transcript.txt": owner + records + audio,
        "transcript.vtt": owner + records + audio + _pages(sizes["transcript.txt"]),
    }
    for name, room in before.items():
        with mounted_tmpfs(tmp_path / f"full-{name}", "4m") as mount:
            fill_filesystem(mount, leave=room + _pages(sizes[name]) - PAGE)
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(durable, "BUNDLE_FILE_BUFFER_BYTES", 64)
                with pytest.raises(BundleWriteFailed) as caught:
                    await export(c, detail, mount / "bundle", key, reason="to a full disk")
            # The file alone, first: not behind the name of the object being read.
            partial = rf"{re.escape(str(mount))}/\.bundle\.partial-[^/]+"
            assert re.fullmatch(
                rf"{partial}/{rid}/{re.escape(name)}: cannot write: No space left on device",
                str(caught.value),
            ), (name, str(caught.value))
            assert caught.value.exit_code == BundleWriteFailed("").exit_code
            assert sorted(p.name for p in mount.iterdir()) == ["filler"]


async def check_a_full_temp_dir_names_the_object_staged(
    c: Components, detail: RecordingDetail, tmp_path: Path, key: Path
) -> None:
    """Records are staged in the temporary directory when larger than what is held in memory
    (here 16 bytes): with no room there, the export fails naming the object and the directory
    (this host's problem), and leaves nothing beside its target."""
    [first, *_] = sorted(detail.records, key=lambda r: r.record_index)
    with mounted_tmpfs(tmp_path / "full-tmp", "256k") as mount:
        fill_filesystem(mount)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(officer_verify, "IN_MEMORY_BYTES", 16)
            patch.setattr(tempfile, "tempdir", str(mount))
            with pytest.raises(StorageError) as caught:
                await export(c, detail, tmp_path / "staged", key, reason="a full /tmp")
        assert str(caught.value) == (
            f"{first.object_key}: cannot stage it in {mount}: No space left on device"
        )
        assert os.listdir(mount) == ["filler"]
    assert not [p for p in os.listdir(tmp_path) if "staged" in p]


async def check_newer_version_is_not_read(
    c: Components, config: Config, detail: RecordingDetail, tmp_path: Path, key: Path
) -> None:
    """A different newer version planted under a segment's key: the export reads the version
    the catalog names, so the bundle is unchanged."""
    s3 = config.storage.s3
    assert s3 is not None
    seg = sorted(detail.segments, key=lambda s: (s.track, s.segment_index))[-1]
    assert seg.version_id is not None
    client = build_s3_client(
        S3StoreConfig(bucket=s3.bucket, endpoint_url=s3.endpoint_url, verify_tls=False)
    )
    name = (s3.prefix + seg.object_key) if s3.prefix else seg.object_key
    await trio.to_thread.run_sync(
        lambda: client.put_object(Bucket=s3.bucket, Key=name, Body=b"not the evidence")
    )
    again = tmp_path / "again"
    await export(c, detail, again, key, reason="second look")
    first = manifest_json(tmp_path / "bundle")["recordings"][0]  # type: ignore[index]
    second = manifest_json(again)["recordings"][0]  # type: ignore[index]
    assert [f["sha256"] for f in first["files"] if f["kind"] == "track"] == [
        f["sha256"] for f in second["files"] if f["kind"] == "track"
    ]


async def check_verify_export(out: Path, public: Path, tmp_path: Path, cli: Cli) -> None:
    """``recorder verify-export``: offline, with the public key; each kind of damage has its
    exit code (the first run through a real shell)."""

    async def verify_cli(bundle: Path, key: Path) -> tuple[int, str]:
        return await cli("verify-export", str(bundle), "--public-key", str(key))

    code, text = await shell_cli("verify-export", str(out), "--public-key", str(public))
    assert code == 0, text
    manifest = manifest_json(out)
    wav = out / manifest["recordings"][0]["tracks"][0]["file"]  # type: ignore[index]
    # A flipped sample: tampered (85).
    data = bytearray(wav.read_bytes())
    data[-3] ^= 0x40
    wav.write_bytes(bytes(data))
    code, text = await verify_cli(out, public)
    assert code == 85, text
    assert wav.name in text
    data[-3] ^= 0x40
    wav.write_bytes(bytes(data))
    # A removed file: missing (86).
    moved = tmp_path / "moved.wav"
    wav.rename(moved)
    code, text = await verify_cli(out, public)
    assert code == 86, text
    moved.rename(wav)
    # An edited manifest (still valid JSON): bad signature (84).
    manifest_path = out / "manifest.json"
    original = manifest_path.read_bytes()
    manifest_path.write_bytes(original.replace(b'"FINRA 4511"', b'"FINRA 4512"'))
    code, text = await verify_cli(out, public)
    assert code == 84, text
    manifest_path.write_bytes(original)
    # Another key: bad signature (84).
    other_key = tmp_path / "other.ed25519"
    generate_signing_key(other_key)
    other_public = tmp_path / "other.pub"
    other_public.write_bytes(public_bytes(load_signing_key(other_key)))
    code, text = await verify_cli(out, other_public)
    assert code == 84, text
    # An extra file slipped in: inconsistent (87).
    (out / "extra.wav").write_bytes(b"RIFF")
    code, text = await verify_cli(out, public)
    assert code == 87, text
    (out / "extra.wav").unlink()
    code, text = await verify_cli(out, public)
    assert code == 0, text


async def test_bundle_on_the_local_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))  # the CLI's embedded default state
    config = one_second_segments(short_config(tmp_path))
    await record_and_check(tmp_path, config, in_process_cli(capsys))


async def test_bundle_on_moto_s3(
    tmp_path: Path, moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = await trio.to_thread.run_sync(
        s3_store_config, one_second_segments(short_config(tmp_path)), moto_endpoint
    )
    await record_and_check(tmp_path, config, in_process_cli(capsys))
