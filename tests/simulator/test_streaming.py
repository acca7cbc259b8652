"""Paced audio, transcripts and the stop sequence, seen by a raw client over real sockets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trio

from recorder.simulator import Product, Scenario, SimulatorConfig, open_simulator
from recorder.testing.tls import SelfSignedCertificate

from .rawclient import Received, audio_params, media, read_all, recv, send, signaling


async def test_mixed_l16_meeting_streams_exact_audio_then_stops() -> None:
    """The one test on the real clock: pacing works without a MockClock too."""
    scenario = Scenario(product=Product.MEETING, duration_s=2.0, t0_ms=1_795_276_197_000)
    with trio.fail_after(20):
        async with open_simulator(SimulatorConfig()) as sim:
            eng = await sim.start(scenario)
            target = eng.target
            async with signaling(target) as (sig, resp):
                assert resp["status_code"] == 0
                urls = resp["media_server"]["server_urls"]
                assert set(urls) == {"audio", "transcript", "all"}
                first = await recv(sig)
                assert first["msg_type"] == 6
                assert first["event"]["event_type"] == 1
                assert first["event"]["timestamp"] == scenario.t0_ms
                async with media(target, urls["audio"], 1, audio_params()) as (ws, resp4):
                    assert resp4["msg_type"] == 4
                    assert resp4["status_code"] == 0
                    assert resp4["media_params"]["audio"]["codec"] == 1
                    await send(sig, {"msg_type": 7, "rtms_stream_id": target.rtms_stream_id})
                    got = Received()
                    sig_got = Received()
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(read_all, sig, sig_got)
                        await read_all(ws, got)
            await eng.finished.wait()
    timestamps = [ts for ts, _ in got.payloads()]
    assert timestamps == [scenario.t0_ms + 20 * k for k in range(100)]
    assert all(m["content"]["user_id"] == 0 for m in got.audio)
    assert all("user_name" not in m["content"] for m in got.audio)
    assert all(m["content"]["length"] == 640 for m in got.audio)
    pcm = b"".join(p for _, p in got.payloads())
    expected = eng.program.track("mixed").pcm[: 100 * 320].astype("<i2").tobytes()
    assert pcm == expected
    assert np.frombuffer(pcm, "<i2").std() > 100  # real speech, not silence
    assert got.close_code == 1000
    states = [(m["msg_type"], m["state"]) for m in sig_got.other if m["msg_type"] in (8, 9)]
    assert states == [(8, 4), (9, 5)]
    assert eng.stats.stop_reason == 6


async def test_with_a_server_context_every_url_is_wss_and_signaling_runs_over_tls(
    tmp_path: Path,
) -> None:
    certificate = SelfSignedCertificate.create(tmp_path)
    config = SimulatorConfig(ssl_context=certificate.server_context())
    with trio.fail_after(20):
        async with open_simulator(config) as sim:
            eng = await sim.start(Scenario(product=Product.MEETING, duration_s=2.0))
            target = eng.target
            assert target.server_urls.startswith("wss://127.0.0.1:")
            async with signaling(target, ssl_context=certificate.client_context()) as (ws, resp):
                assert isinstance(ws._stream, trio.SSLStream)
                assert resp["status_code"] == 0
                urls = resp["media_server"]["server_urls"]
                assert urls, resp
                assert all(url.startswith("wss://127.0.0.1:") for url in urls.values()), urls
