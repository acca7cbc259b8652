"""``recorder show`` lists a recording's video and screen-share tracks (segments, duration,
gaps, resolution changes) in text and in ``--json``, from a meeting recorded with camera and
screen share by the real pipeline (the simulator's H.264 over WebSockets, a dropped frame)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import trio

from recorder.officer.show import show
from recorder.service.components import open_components
from recorder.video.track import RESOLUTION_CHANGE
from tests.web.test_video_console import record_video_meeting

pytestmark = pytest.mark.slow

INTERVAL = 200  # 5 fps


async def test_show_lists_video_tracks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with trio.fail_after(60):
        config, rid, t0 = await record_video_meeting(tmp_path)
    async with open_components(config) as c:
        with trio.fail_after(60):
            detail = await c.catalog.show(rid)
            assert detail is not None
            rows = {r.kind: [x for x in detail.records if x.kind == r.kind] for r in detail.records}
            # A resolution change as the capture records it (the simulator sends one size).
            at = rows["deskshare"][-1].start_ms
            await c.catalog.add_gap(
                rid, "deskshare", start_ms=at, end_ms=at, cause=RESOLUTION_CHANGE,
                detail="160x90 -> 320x180",
            )  # fmt: skip
            args = argparse.Namespace(recording_id=rid, json=True, no_verify=True, reason="t")
            assert await show(c, args) == 0
            doc = json.loads(capsys.readouterr().out)
            args.json = False
            assert await show(c, args) == 0
            text = capsys.readouterr().out
    videos = {v["track"]: v for v in doc["video_tracks"]}
    assert set(videos) == {"video", "deskshare"}
    assert "video" not in {t["track"] for t in doc["tracks"]}  # audio tracks only there
    cam = videos["video"]
    assert [s["index"] for s in cam["segments"]] == sorted(r.record_index for r in rows["video"])
    assert len(cam["segments"]) >= 2
    assert all(s["upload_state"] == "verified" for s in cam["segments"])
    assert cam["start_ms"] == min(r.start_ms for r in rows["video"])
    assert cam["duration_ms"] == cam["end_ms"] - cam["start_ms"]
    assert 1500 <= cam["duration_ms"] <= 3000
    # The dropped frame 7, and any wait for the first keyframe (the socket may open late).
    [lost] = [g for g in cam["gaps"] if g["cause"] == "lost_packets"]
    assert lost["start_ms"] == t0 + 7 * INTERVAL
    assert {g["cause"] for g in cam["gaps"]} <= {"lost_packets", "awaiting_keyframe"}
    assert cam["gap_ms"] == sum(g["end_ms"] - g["start_ms"] for g in cam["gaps"])
    assert cam["gap_ms"] >= INTERVAL
    assert cam["resolution_changes"] == []
    share = videos["deskshare"]
    assert share["resolution_changes"] == [{"at_ms": at, "change": "160x90 -> 320x180"}]
    # A resolution change is not missing time.
    assert RESOLUTION_CHANGE not in {g["cause"] for g in share["gaps"]}
    assert "video:" in text
    assert f"  video (camera): {len(cam['segments'])} segment(s), H.264 MP4" in text
    assert "1 resolution change(s)" in text
    assert "resolution 160x90 -> 320x180 at" in text
    assert "lost_packets" in text
