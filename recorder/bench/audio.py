"""Per-message CPU cost of decode + timeline + segment write, for each codec.

Run: ``python -m recorder.bench.audio [--seconds 60] [--rounds 3] [--memory-sink]``.

What is measured: ``CaptureCore.handle_audio`` for one RTMS audio packet (20 ms of real speech
from ``recorder.testing.audio_source``), i.e. decoding with PyAV, placing on the timeline and
appending to the segment, through the encrypting spool sink of ``recorder.crypto`` (real
AES-GCM chunks written to a temporary directory; no fsync inside the timed loop, checkpoints are
the pipeline's business) or, with ``--memory-sink``, the in-memory test sink. CPU time is
``time.process_time`` per message, median over rounds; the output says which sink was used.
WebSocket receive, JSON and base64 are not included (see docs/perf-baseline.md §5 and
``recorder.bench.pipeline`` for the trio path).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from recorder.audio.decoder import VOICE, OutputFormat
from recorder.capture.core import CaptureConfig, CaptureCore
from recorder.rtms.events import AudioCodec, AudioFormat, AudioPacket
from recorder.sink import SinkFactory
from recorder.testing.audio_source import encode_speech
from recorder.testing.memory_sink import MemorySinkFactory


@dataclass(frozen=True, slots=True)
class Case:
    label: str
    fmt: AudioFormat
    output: OutputFormat = VOICE


CASES: tuple[Case, ...] = (
    Case("L16 16k mono (passthrough)", AudioFormat(AudioCodec.L16, 16_000, 1)),
    Case("L16 48k stereo -> 16k mono", AudioFormat(AudioCodec.L16, 48_000, 2)),
    Case("G.711 A-law 8k -> 16k", AudioFormat(AudioCodec.G711, 8_000, 1)),
    Case(
        "G.711 A-law 8k (upsample=False)",
        AudioFormat(AudioCodec.G711, 8_000, 1),
        OutputFormat(upsample=False),
    ),
    Case("G.722 16k", AudioFormat(AudioCodec.G722, 16_000, 1)),
    Case("Opus 48k mono -> 16k", AudioFormat(AudioCodec.OPUS, 48_000, 1)),
    Case("Opus 48k stereo -> 16k mono", AudioFormat(AudioCodec.OPUS, 48_000, 2)),
)


def _packets(case: Case, seconds: float) -> list[AudioPacket]:
    speech = encode_speech("a", case.fmt, seconds=seconds)
    t0 = 1_763_726_400_000
    return [
        AudioPacket("mixed", t0 + i * speech.packet_ms, payload, case.fmt)
        for i, payload in enumerate(speech.packets)
    ]


def _encrypting_sinks(root: Path) -> SinkFactory:
    from recorder.crypto import DirectoryRecordingKeyStore, RecordingKeyring, SpoolSinkFactory
    from recorder.crypto.keys.local import LocalKeyProvider

    keyring = RecordingKeyring(
        DirectoryRecordingKeyStore(root / "recording-keys"),
        provider=LocalKeyProvider(root / "kek"),
    )
    return SpoolSinkFactory(root / "spool", keyring)


def measure(
    case: Case, packets: Sequence[AudioPacket], make_sinks: Callable[[Path], SinkFactory]
) -> float:
    """CPU µs per message for one pass over ``packets`` with a fresh core and sink."""
    with tempfile.TemporaryDirectory(prefix="rtms-bench-") as tmp:
        core = CaptureCore(
            make_sinks(Path(tmp)),
            recording_id="bench",
            config=CaptureConfig(output=case.output),
            now_ms=lambda: 0,
        )
        handle = core.handle_audio
        # The first packet opens the decoder, timeline and (after hold-back) the segment.
        core.run_inline(handle(packets[0]))
        start = time.process_time()
        for packet in packets[1:]:
            actions = handle(packet)
            if actions:
                # Segment opens and seals, inline here (the service runs them in threads).
                core.run_inline(actions)
        elapsed = time.process_time() - start
        core.run_inline(core.finish(interrupted=False))
    return elapsed / (len(packets) - 1) * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="audio per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory-sink", action="store_true", help="skip encryption")
    args = parser.parse_args(argv)

    make_sinks: Callable[[Path], SinkFactory]
    if args.memory_sink:
        make_sinks = lambda _root: MemorySinkFactory()  # noqa: E731
        sink_name = "memory sink (recorder.testing.MemorySinkFactory), no encryption"
    else:
        make_sinks = _encrypting_sinks
        sink_name = "encrypting spool sink (recorder.crypto.SpoolSinkFactory, AES-GCM, tmpfs/disk)"
    print(f"decode + timeline + segment write per 20 ms message; sink: {sink_name}")
    print(f"{args.seconds:.0f} s of real speech per round, median of {args.rounds} rounds")
    print(f"{'codec':34} {'µs/msg':>8} {'x L16':>7}   (min..max)")
    baseline: float | None = None
    for case in CASES:
        packets = _packets(case, args.seconds)
        runs = [measure(case, packets, make_sinks) for _ in range(args.rounds)]
        median = statistics.median(runs)
        if baseline is None:
            baseline = median
        ratio = median / baseline if baseline else float("nan")
        print(f"{case.label:34} {median:8.1f} {ratio:7.2f}   ({min(runs):.1f}..{max(runs):.1f})")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
