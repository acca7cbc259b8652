"""A recorder process killed mid-segment: the encrypted .part file is recovered with a WAV header
rebuilt from its authenticated metadata, and the result is a valid WAV with everything up to the
last checkpoint (compliance row 9; invariant 6)."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import wave
from pathlib import Path

import av
import numpy as np

from recorder.audio.wav import HEADER_SIZE, parse_bext, recovery_prologue
from recorder.crypto import (
    DirectoryRecordingKeyStore,
    PrologueStatus,
    RecordingKeyring,
    iter_plaintext,
    recover,
)
from recorder.crypto.keys.local import LocalKeyProvider

WRITER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import numpy as np
    from recorder.audio.segments import SegmentWriter, TrackFormat
    from recorder.audio.timeline import Audio, Gap, SpanKind
    from recorder.crypto import DirectoryRecordingKeyStore, RecordingKeyring, SpoolSinkFactory
    from recorder.crypto.keys.local import LocalKeyProvider
    from recorder.rtms.events import GapCause

    root = Path(sys.argv[1])
    keyring = RecordingKeyring(
        DirectoryRecordingKeyStore(root / "recording-keys"),
        provider=LocalKeyProvider(root / "kek"),
    )
    sinks = SpoolSinkFactory(root / "spool", keyring, chunk_size=4096)
    fmt = TrackFormat("mixed", 16000, 1, "OPUS 48000 stereo", "pyav=test")
    writer = SegmentWriter(
        sinks, recording_id="rec-crash", originator_reference="engagement-42", fmt=fmt,
        sample_to_ms=lambda s: 1763726400000 + s // 16, now_ms=lambda: 1763726400000,
    )
    tone = (np.arange(48000) % 20000 + 1).astype("<i2").tobytes()
    writer.write(Audio(0, tone[: 16000 * 2]))
    writer.write(Gap(16000, 24000, SpanKind.GAP, GapCause.MEDIA_INTERRUPTED))
    writer.write(Audio(24000, tone[24000 * 2 :]))
    writer.checkpoint()
    # Written after the last checkpoint: a crash may lose it (at most about a second).
    writer.write(Audio(48000, tone[:3200]))
    os._exit(9)
    """
)


def test_a_killed_writer_leaves_a_recoverable_valid_wav(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", WRITER, str(tmp_path)], timeout=60, check=False)
    assert done.returncode == 9
    parts = list((tmp_path / "spool").glob("*.part"))
    assert len(parts) == 1
    keyring = RecordingKeyring(
        DirectoryRecordingKeyStore(tmp_path / "recording-keys"),
        provider=LocalKeyProvider(tmp_path / "kek"),
    )
    report = recover(parts[0], keyring, prologue_builder=recovery_prologue)
    assert report.prologue is PrologueStatus.REBUILT
    assert report.sealed.recovered
    assert report.sealed.path is not None
    plaintext = b"".join(iter_plaintext(report.sealed.path, keyring))
    with wave.open(io.BytesIO(plaintext)) as wav:
        assert (wav.getframerate(), wav.getnchannels()) == (16_000, 1)
        frames = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    # Everything up to the checkpoint (48000 samples) survived; what came after may not have.
    assert len(frames) >= 48_000
    expected = (np.arange(48_000) % 20_000 + 1).astype("<i2")
    expected[16_000:24_000] = 0
    assert np.array_equal(frames[:48_000], expected)
    with av.open(io.BytesIO(plaintext), format="wav") as container:
        assert sum(f.samples for f in container.decode(audio=0)) == len(frames)
    bext = parse_bext(plaintext[:HEADER_SIZE])
    assert bext.originator_reference == "engagement-42"
    assert "source=OPUS 48000 stereo" in bext.coding_history
