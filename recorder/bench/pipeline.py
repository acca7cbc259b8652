"""CPU per message of the trio capture pipeline, and where decoding should run.

Run: ``python -m recorder.bench.pipeline [--engagements 20] [--seconds 20] [--paced]``.

K engagements run concurrently in one trio process, each fed its packets over a bounded memory
channel (no sockets: the WebSocket receive cost is in docs/perf-baseline.md §5), through
``run_capture`` into the encrypting spool sink (``recorder.crypto``). For each codec the pipeline
is measured with decoding inline on the trio thread and with batched worker-thread decoding at a
few batch sizes; ``process_time`` covers the worker threads too. It also reports the Python heap
per engagement at the end of the run (``tracemalloc``, a separate pass), against the design's
2 MiB per-engagement budget.

``--paced`` feeds every engagement at real speed instead (one pacer task puts one packet per
engagement on the channels every 20 ms, as a live stream brings them), decoding inline: each
packet then finds the consumer waiting, so the per-wakeup costs of ``run_capture`` (waiting,
checkpoints) show, which a firehose run hides. It takes ``--seconds`` of wall time per round.

Reading the result: passthrough L16 is always handled inline (``CaptureCore.is_inline``), so its
variants only differ by noise. For codecs that need PyAV, one worker-thread hop per packet costs
far more than the decode itself; batched hops cost about what inline decoding costs in CPU, and
PyAV releases the GIL inside FFmpeg for part of the work (two decoding threads ran 1.4x faster
than one on this 2-core machine), so the trio thread keeps receiving while a batch decodes.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from recorder.capture.core import CaptureConfig
from recorder.capture.pipeline import run_capture
from recorder.rtms.events import AudioCodec, AudioFormat, AudioPacket, CaptureEvent, StreamEnded
from recorder.sink import SinkFactory
from recorder.testing.audio_source import encode_speech


@dataclass(frozen=True, slots=True)
class Variant:
    label: str
    inline: bool
    batch: int


VARIANTS = (
    Variant("inline", True, 1),
    Variant("thread, batch 1", False, 1),
    Variant("thread, batch 4", False, 4),
    Variant("thread, batch 16", False, 16),
)

FORMATS = (
    ("L16 16k mono", AudioFormat(AudioCodec.L16, 16_000, 1)),
    ("G.711 8k -> 16k", AudioFormat(AudioCodec.G711, 8_000, 1)),
    ("Opus 48k mono -> 16k", AudioFormat(AudioCodec.OPUS, 48_000, 1)),
)


def _sinks(root: Path) -> SinkFactory:
    from recorder.crypto import DirectoryRecordingKeyStore, RecordingKeyring, SpoolSinkFactory
    from recorder.crypto.keys.local import LocalKeyProvider

    keyring = RecordingKeyring(
        DirectoryRecordingKeyStore(root / "recording-keys"),
        provider=LocalKeyProvider(root / "kek"),
    )
    return SpoolSinkFactory(root / "spool", keyring)


def _events(fmt: AudioFormat, seconds: float) -> list[CaptureEvent]:
    speech = encode_speech("b", fmt, seconds=seconds)
    t0 = 1_763_726_400_000
    events: list[CaptureEvent] = [
        AudioPacket("mixed", t0 + i * speech.packet_ms, payload, fmt)
        for i, payload in enumerate(speech.packets)
    ]
    events.append(StreamEnded(t0 + len(speech.packets) * 20, 1, "HOST_STOPPED", normal=True))
    return events


async def _run(
    events: Sequence[CaptureEvent],
    engagements: int,
    variant: Variant,
    root: Path,
    paced: bool = False,
) -> int:
    sinks = _sinks(root)
    config = CaptureConfig(decode_inline=variant.inline, decode_batch=variant.batch)
    decode_limiter = trio.CapacityLimiter(2)
    io_limiter = trio.CapacityLimiter(2)

    channels = [trio.open_memory_channel[CaptureEvent](64) for _ in range(engagements)]

    async def one(index: int) -> None:
        send, receive = channels[index]

        async def produce() -> None:
            async with send:
                for event in events:
                    await send.send(event)

        async with trio.open_nursery() as nursery:
            if not paced:
                nursery.start_soon(produce)
            await run_capture(
                receive,
                sinks,
                recording_id=f"bench-{index}",
                config=config,
                decode_limiter=decode_limiter,
                io_limiter=io_limiter,
            )

    async def pace() -> None:
        """One packet per engagement every packet interval, like K live streams."""
        start = trio.current_time()
        interval = 0.02
        for step, event in enumerate(events):
            await trio.sleep_until(start + step * interval)
            for send, _ in channels:
                send.send_nowait(event)
        for send, _ in channels:
            await send.aclose()

    async with trio.open_nursery() as nursery:
        for index in range(engagements):
            nursery.start_soon(one, index)
        if paced:
            nursery.start_soon(pace)
    return engagements * (len(events) - 1)


def measure(
    events: Sequence[CaptureEvent], engagements: int, variant: Variant, paced: bool = False
) -> float:
    with tempfile.TemporaryDirectory(prefix="rtms-bench-") as tmp:
        start = time.process_time()
        messages = trio.run(_run, events, engagements, variant, Path(tmp), paced)
        return (time.process_time() - start) / messages * 1e6


def heap_per_engagement(events: Sequence[CaptureEvent], engagements: int) -> float:
    """Peak traced Python heap during the run, per engagement, in KiB (packets excluded)."""
    with tempfile.TemporaryDirectory(prefix="rtms-bench-") as tmp:
        tracemalloc.start()
        baseline = tracemalloc.get_traced_memory()[0]
        trio.run(_run, events, engagements, Variant("default", False, 16), Path(tmp))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return (peak - baseline) / engagements / 1024


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engagements", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--paced", action="store_true", help="real-speed streams, inline decoding only"
    )
    args = parser.parse_args(argv)
    print(
        f"run_capture, {args.engagements} concurrent engagements x {args.seconds:.0f} s"
        f"{' paced at real speed' if args.paced else ''}, encrypting spool sink; CPU µs per "
        f"message incl. worker threads (median [min..max] of {args.rounds})"
    )
    variants = VARIANTS[:1] if args.paced else VARIANTS
    for label, fmt in FORMATS:
        events = _events(fmt, args.seconds)
        # Warm-up: key creation, imports and codec tables are not per-message costs.
        measure(events[:50] + events[-1:], 1, VARIANTS[0])
        cells = []
        for variant in variants:
            runs = [
                measure(events, args.engagements, variant, args.paced) for _ in range(args.rounds)
            ]
            spread = f"[{min(runs):.1f}..{max(runs):.1f}]"
            cells.append(f"{variant.label}: {statistics.median(runs):6.1f} {spread}")
        print(f"{label:22} " + " | ".join(cells))
    if args.paced:
        return 0
    events = _events(FORMATS[2][1], args.seconds)
    heap = heap_per_engagement(events, args.engagements)
    print(f"peak Python heap per Opus engagement (tracemalloc): {heap:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
