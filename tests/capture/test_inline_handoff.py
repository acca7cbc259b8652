"""The inline hand-off: cheap audio handled in the receiving socket's task while the capture
consumer sleeps (``run_capture(inline=stream.inline)``), over real sockets from the simulator.

Checked: the audio is exactly what it is without the hand-off (bit-exact L16, the reference
G.711 decode), most packets really take the inline path, order is kept across the inline path
and the channel, and a failure on the inline path is the capture's (raised by ``run_capture``),
never the socket's: the RTMS client keeps receiving.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import trio

from recorder.audio.decoder import KEEP_SOURCE, VOICE, OutputFormat
from recorder.audio.manifest import EngagementManifest
from recorder.capture.core import CaptureConfig
from recorder.capture.pipeline import run_capture
from recorder.errors import DiskFull
from recorder.rtms.client import (
    ClientConfig,
    InlineSlot,
    audio_params,
    open_rtms_stream,
)
from recorder.rtms.events import AudioCodec, AudioPacket, CaptureEvent
from recorder.simulator import Product, Scenario, SimulatorConfig, open_simulator
from recorder.sink import SegmentIdentity
from recorder.testing.memory_sink import MemorySink, MemorySinkFactory
from tests.capture.test_end_to_end import (
    CLIENT,
    T0,
    Recording,
    reference_decode,
    sent_payloads,
)
from tests.rtms.test_client_simulator import to_target

SPEED = 4.0


class CountingSlot:
    """The client's slot, counting what the inline path took (the ``InlineSlotLike`` seam)."""

    def __init__(self, real: InlineSlot) -> None:
        self._real = real
        self.taken = 0
        self.declined = 0

    @property
    def take(self) -> Callable[[CaptureEvent], bool] | None:
        return self._real.take

    @take.setter
    def take(self, take: Callable[[CaptureEvent], bool] | None) -> None:
        if take is None:
            self._real.take = None
            return

        def counted(event: CaptureEvent) -> bool:
            taken = take(event)
            if taken:
                self.taken += 1
            else:
                self.declined += 1
            return taken

        self._real.take = counted

    @property
    def ready(self) -> bool:
        return self._real.ready

    @ready.setter
    def ready(self, value: bool) -> None:
        self._real.ready = value


@pytest.mark.parametrize(
    ("codec", "rate", "output"),
    [(AudioCodec.L16, 16_000, VOICE), (AudioCodec.G711, 8_000, KEEP_SOURCE)],
)
async def test_inline_audio_is_exactly_what_the_channel_path_records(
    codec: AudioCodec, rate: int, output: OutputFormat
) -> None:
    sinks = MemorySinkFactory()
    params = audio_params(codec, rate, 1)
    client_config = ClientConfig(audio_params=params, transcript=True, **CLIENT)  # type: ignore[arg-type]
    seen_by_consumer: list[CaptureEvent] = []

    async def on_event(event: CaptureEvent) -> None:
        seen_by_consumer.append(event)

    with trio.fail_after(30):
        async with open_simulator(SimulatorConfig(speed=SPEED)) as sim:
            scenario = Scenario(product=Product.MEETING, duration_s=2.0, t0_ms=T0)
            await sim.warm_audio(scenario, [params])
            engagement = await sim.start(scenario)
            async with open_rtms_stream(to_target(engagement), client_config) as stream:
                slot = CountingSlot(stream.inline)
                manifest = await run_capture(
                    stream.events,
                    sinks,
                    recording_id=engagement.target.rtms_stream_id,
                    config=CaptureConfig(output=output),
                    on_event=on_event,
                    inline=slot,
                )
    assert manifest.outcome == "ended"
    [entry] = manifest.audio_entries("mixed")
    assert entry.gaps == ()
    rec = Recording(manifest, sinks, [], engagement)
    recorded = rec.audio("mixed")[:, 0]
    if codec is AudioCodec.L16:
        assert np.array_equal(recorded, rec.source("mixed", 2.0))
    else:
        # Not a packet dropped, reordered or doubled on either path.
        payloads = sent_payloads(rec, "mixed", codec, rate, 1)
        assert np.array_equal(recorded, reference_decode("pcm_alaw", payloads, 100))
    # The first packet of the track went to the consumer (for ``on_event``); most of the rest
    # took the inline path, and the consumer did not see them.
    audio_seen = [e for e in seen_by_consumer if isinstance(e, AudioPacket)]
    assert len(audio_seen) == 1
    assert slot.taken > 50, (slot.taken, slot.declined)
    assert stream.inline.take is None  # detached once the capture ended


class FailingSinks:
    """Segments whose writes fail once ``budget`` bytes went in (a disk that fills up)."""

    def __init__(self, budget: int) -> None:
        self.memory = MemorySinkFactory()
        self.budget = budget

    def open(self, identity: SegmentIdentity, *, prologue_size: int = 0) -> _Failing:
        return _Failing(self, self.memory.open(identity, prologue_size=prologue_size))


class _Failing:
    def __init__(self, owner: FailingSinks, sink: MemorySink) -> None:
        self._owner = owner
        self._sink = sink
        self.identity = sink.identity

    @property
    def body_size(self) -> int:
        return self._sink.body_size

    def write(self, data: bytes) -> None:
        if self._owner.budget < len(data):
            raise DiskFull("no space left for the segment (test)")
        self._owner.budget -= len(data)
        self._sink.write(data)

    def checkpoint(self) -> None:
        self._sink.checkpoint()

    def discard(self) -> None:
        self._sink.discard()

    def close(self, prologue: bytes = b"") -> object:
        return self._sink.close(prologue)


async def test_a_failure_on_the_inline_path_ends_the_capture_not_the_socket() -> None:
    params = audio_params(AudioCodec.L16, 16_000, 1)
    client_config = ClientConfig(audio_params=params, **CLIENT)  # type: ignore[arg-type]
    # Room for about half a second of 16 kHz mono.
    sinks = FailingSinks(budget=16_000)
    with trio.fail_after(30):
        async with open_simulator(SimulatorConfig(speed=1.0)) as sim:
            scenario = Scenario(product=Product.MEETING, duration_s=30.0, t0_ms=T0)
            await sim.warm_audio(scenario, [params])
            engagement = await sim.start(scenario)
            async with open_rtms_stream(to_target(engagement), client_config) as stream:
                slot = CountingSlot(stream.inline)
                manifests: list[EngagementManifest] = []
                with pytest.raises(DiskFull):
                    manifests.append(
                        await run_capture(
                            stream.events,
                            sinks,  # type: ignore[arg-type]
                            recording_id=engagement.target.rtms_stream_id,
                            inline=slot,
                        )
                    )
                assert slot.taken > 0
                # The socket is untouched: the client goes on receiving, now into the channel,
                # audio the failed capture never saw.
                assert not stream.ended
                assert stream.inline.take is None
                before = stream.stats.frames["audio"]
                event = await stream.events.receive()
                while not isinstance(event, AudioPacket):
                    event = await stream.events.receive()
                while stream.stats.frames["audio"] <= before + 1:
                    event = await stream.events.receive()
                assert not stream.ended
                await stream.close(graceful=False)
