"""The console plays a recording's video: a meeting with camera and screen share recorded by
the real pipeline (signed webhook, the simulator's H.264 over WebSockets, encrypted MP4
segments), then the console over real HTTP serves its listening video: 206 ranges that make a
valid MP4 (decoded with PyAV: video and the listening audio), only to an officer who gave a
reason, audited as a ``play``; an auditor and a reason-less officer are refused."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import av
import pytest
import trio

from recorder.catalog._web import WebQueries
from recorder.config import Config, MediaKind
from recorder.service.components import now_ms, open_components
from recorder.service.demo import demo_config
from recorder.simulator import Product, Scenario
from recorder.simulator.video import VideoFeedSpec
from recorder.video.settings import VideoConfig
from recorder.web.serve import serve_web
from tests.service.test_service import record_calls, service
from tests.web.conftest import PASSWORDS, ROLES, Console, csrf_of

pytestmark = pytest.mark.slow

SECONDS = 2.5


async def record_video_meeting(tmp_path: Path) -> tuple[Config, str, int]:
    """A meeting with audio, camera (frame 7 dropped) and screen share, recorded end to end
    with 1 s segments: (config, recording id, the simulator's t0_ms)."""
    base = demo_config(tmp_path)
    config = replace(
        base,
        rtms=replace(base.rtms, media=(MediaKind.AUDIO, MediaKind.VIDEO, MediaKind.DESKSHARE)),
        capture=replace(base.capture, segment_seconds=1),
        video=VideoConfig(fps=5, deskshare_fps=5, segment_seconds=1),
    )
    assert config.secrets.zoom_client_id is not None
    assert config.secrets.zoom_client_secret is not None
    scenario = Scenario(
        product=Product.MEETING,
        name="video-console",
        duration_s=SECONDS,
        media=("audio", "video", "deskshare"),
        client_id=config.secrets.zoom_client_id.reveal(),
        client_secret=config.secrets.zoom_client_secret.reveal(),
        video=VideoFeedSpec(keyframe_interval=5, drop_frames=(7,)),
        # Zoom does not buffer video: the drop at 1.4 s must find the service's video socket
        # live, however long a loaded host takes from the webhook to the media handshakes.
        start_when_streaming=("audio", "video", "deskshare"),
    )
    async with service(config) as running:
        [eng] = await record_calls(running, config, scenario)
        [row] = await running.components.catalog.search(stream_id=eng.scenario.rtms_stream_id)
    return config, row.recording_id, eng.scenario.t0_ms


async def test_officer_plays_the_video_in_ranges_audited_others_refused(
    tmp_path: Path, password_hashes: dict[str, str]
) -> None:
    with trio.fail_after(60):
        config, rid, _ = await record_video_meeting(tmp_path)
    async with open_components(config) as c, trio.open_nursery() as nursery:
        with trio.fail_after(60):
            assert isinstance(c.catalog.sync, WebQueries)
            for user, role in ROLES.items():
                c.catalog.sync.web_add_account(
                    username=user, role=role.value, password_hash=password_hashes[user],
                    oidc_subject=None, actor="os:test", reason="test", now_ms=now_ms(),
                )  # fmt: skip
            port = await nursery.start(
                lambda task_status: serve_web(
                    c,
                    replace(c.config.web, bind="127.0.0.1:0"),
                    now_ms=now_ms,
                    task_status=task_status,
                )
            )
            console = Console(f"http://127.0.0.1:{port}", c, None, None, None, None)  # type: ignore[arg-type]
            url = f"/recordings/{rid}/video"
            async with console.client() as anonymous:
                assert (await anonymous.get(url)).status_code == 401
            async with console.session("audrey") as auditor:
                answer = await auditor.get(url)
                assert answer.status_code == 403, answer.text
            async with console.session("alice") as officer:
                # No reason given yet: refused, nothing decrypted, nothing audited as a play.
                answer = await officer.get(url, headers={"range": "bytes=0-99"})
                assert answer.status_code == 403, answer.text
                assert "reason" in answer.text
                assert [e for e in await c.catalog.audit_trail(rid) if e.action == "play"] == []
                page = await officer.get(f"/recordings/{rid}")
                given = await officer.post(
                    f"/recordings/{rid}/access",
                    data={"reason": "complaint 42", "csrf": csrf_of(page.text)},
                )
                assert given.status_code == 303, given.text
                page = await officer.get(f"/recordings/{rid}")
                assert f'<video id="video" controls preload="metadata" src="{url}"' in page.text
                # A browser's way: the first bytes, then the rest in ranges.
                first = await officer.get(url, headers={"range": "bytes=0-999"})
                assert first.status_code == 206, first.text
                assert first.headers["content-type"] == "video/mp4"
                assert first.headers["cache-control"] == "no-store"
                total = int(first.headers["content-range"].rsplit("/", 1)[1])
                assert first.headers["content-range"] == f"bytes 0-999/{total}"
                assert len(first.content) == 1000
                data = bytearray(first.content)
                step = max(1, total // 3)
                for start in range(1000, total, step):
                    stop = min(total, start + step) - 1
                    part = await officer.get(url, headers={"range": f"bytes={start}-{stop}"})
                    assert part.status_code == 206
                    assert part.headers["content-range"] == f"bytes {start}-{stop}/{total}"
                    data += part.content
                assert len(data) == total
                whole = await officer.get(url)
                assert whole.status_code == 200
                assert whole.content == bytes(data)
                bad = await officer.get(url, headers={"range": f"bytes={total}-"})
                assert bad.status_code == 416
                assert bad.headers["content-range"] == f"bytes */{total}"
                hostile = await officer.get(url, headers={"range": "bytes=abc"})
                assert hostile.status_code == 416
                assert "malformed range" in hostile.text
                # A player's parallel range reads: the same bytes (built once, under one play).
                got: dict[int, bytes] = {}

                async def fetch(start: int) -> None:
                    answer = await officer.get(url, headers={"range": f"bytes={start}-"})
                    got[start] = answer.content

                async with trio.open_nursery() as readers:
                    for start in (0, 5, total // 2):
                        readers.start_soon(fetch, start)
                assert got == {start: bytes(data[start:]) for start in (0, 5, total // 2)}
                multi = await officer.get(url, headers={"range": "bytes=0-9,20-29"})
                assert multi.status_code == 206
                assert multi.headers["content-type"].startswith("multipart/byteranges")
                assert bytes(data[0:10]) in multi.content
                assert bytes(data[20:30]) in multi.content
        nursery.cancel_scope.cancel()
    # The bytes are an MP4 with the camera's pictures and the listening audio.
    with av.open(io.BytesIO(bytes(data))) as mp4:
        assert mp4.streams.video[0].codec_context.name == "h264"
        assert mp4.streams.audio[0].codec_context.name == "aac"
        pictures = sum(1 for _ in mp4.decode(video=0))
    assert 5 <= pictures <= SECONDS * 5 + 1  # 5 fps, one dropped
    with av.open(io.BytesIO(bytes(data))) as mp4:
        audio_s = sum(f.samples / f.sample_rate for f in mp4.decode(audio=0))
    assert audio_s > SECONDS - 1.0
    async with open_components(config) as c:
        plays = [e for e in await c.catalog.audit_trail(rid) if e.action == "play"]
    # One play for the whole player (many ranges), by the signed-in officer, with the reason.
    assert [(e.actor, e.reason) for e in plays] == [("web:alice", "complaint 42")]
    assert '"listening-video"' in plays[0].details_json
    assert PASSWORDS["alice"] not in plays[0].details_json


async def test_a_recording_without_video_has_no_video(console: Console) -> None:
    rid = console.state.recording_id
    async with console.session("alice") as officer:
        page = await officer.get(f"/recordings/{rid}")
        given = await officer.post(
            f"/recordings/{rid}/access", data={"reason": "review", "csrf": csrf_of(page.text)}
        )
        assert given.status_code == 303
        page = await officer.get(f"/recordings/{rid}")
        assert 'id="player"' in page.text
        assert "<video" not in page.text
        answer = await officer.get(f"/recordings/{rid}/video")
        assert answer.status_code == 404
        assert answer.json() == {"error": f"recording {rid} has no video"}
    plays = [e for e in await console.c.catalog.audit_trail(rid) if e.action == "play"]
    assert plays == []
