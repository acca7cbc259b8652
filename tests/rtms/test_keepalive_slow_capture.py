"""Keep-alive replies do not depend on what capture costs: a decode that never finishes (its
worker thread cannot even start) must not delay the reply, and what could not be delivered in
the meantime is reported as dropped, never lost silently.

Real parts: the RTMS client over loopback WebSockets against the scripted server, the real
``run_capture`` with G.711 decoded off the event loop (``decode_inline=False``); the stall is the
decode limiter itself, borrowed by the test (the seam ``run_capture`` exposes for it).
"""

from __future__ import annotations

import base64
from typing import Any

import trio

from recorder.audio.manifest import EngagementManifest
from recorder.capture.core import CaptureConfig
from recorder.capture.pipeline import run_capture
from recorder.rtms.client import audio_params, open_rtms_stream
from recorder.rtms.events import AudioCodec
from recorder.testing.memory_sink import MemorySinkFactory
from tests.rtms.test_client import STREAM_ID, audio_frame, config, ready_media, target

G711_20MS = base64.b64encode(bytes(range(160))).decode("ascii")
FRAMES = 40
#: A plausible RTMS timestamp (epoch ms), so drops can be placed on the timeline.
T0_MS = 1_780_000_000_000


async def test_a_stalled_decode_never_delays_a_keepalive_reply(rtms_server: Any) -> None:
    cfg = config(audio_params=audio_params(AudioCodec.G711, 8000))
    decode = trio.CapacityLimiter(1)
    stall = object()
    await decode.acquire_on_behalf_of(stall)  # every decode waits for a thread, indefinitely
    manifests: list[EngagementManifest] = []
    with trio.fail_after(15):
        async with open_rtms_stream(target(rtms_server), cfg, event_buffer=8) as stream:

            async def capture() -> None:
                manifests.append(
                    await run_capture(
                        stream.events,
                        MemorySinkFactory(),
                        recording_id=STREAM_ID,
                        config=CaptureConfig(decode_inline=False, decode_batch=1),
                        decode_limiter=decode,
                        # The inline hand-off attached, as in the service: it must decline
                        # audio that needs a worker thread, whatever the consumer is doing.
                        inline=stream.inline,
                    )
                )

            async with trio.open_nursery() as nursery:
                nursery.start_soon(capture)
                [audio] = await ready_media(rtms_server)
                for index in range(FRAMES):
                    await audio.send(audio_frame(T0_MS + 20 * index, data=G711_20MS))
                await audio.send({"msg_type": 12, "timestamp": 4242})
                await rtms_server.until(
                    lambda: any(
                        m.get("msg_type") == 13 and m.get("timestamp") == 4242
                        for m in audio.received
                    )
                )
                # Answered while capture is stuck in its first decode.
                assert decode.statistics().tasks_waiting == 1
                assert stream.stats.keepalives_answered >= 1
                received = stream.stats.frames["audio"]
                assert received == FRAMES
                decode.release_on_behalf_of(stall)
                await stream.close(graceful=False)
    [manifest] = manifests
    dropped = stream.stats.dropped["backpressure"]
    # The channel (8) filled while the decode was stuck: the rest was dropped, and reported.
    assert dropped > 0
    reported = sum(c.get("dropped_packets", 0) for c in manifest.counters.values())
    assert reported == dropped
    # What was not dropped was decoded once the stall ended: 20 ms (160 samples at 8 kHz) each.
    recorded = sum(
        entry.end_sample
        - entry.start_sample
        - sum(span.end_sample - span.start_sample for span in entry.spans if span.kind == "gap")
        for entry in manifest.audio_entries()
    )
    assert recorded == (FRAMES - dropped) * 160 * manifest.audio_entries()[0].sample_rate // 8000
