"""Audio: PyAV decoders, per-track timelines, WAV/BWF segments and JSON-lines records.

Pure and synchronous; the trio shell that drives them is ``recorder.capture``.
"""

from __future__ import annotations

from recorder.audio.decoder import KEEP_SOURCE as KEEP_SOURCE
from recorder.audio.decoder import VOICE as VOICE
from recorder.audio.decoder import AudioDecoder as AudioDecoder
from recorder.audio.decoder import OutputFormat as OutputFormat
from recorder.audio.decoder import decoder_version as decoder_version
from recorder.audio.decoder import make_decoder as make_decoder
from recorder.audio.manifest import EngagementManifest as EngagementManifest
from recorder.audio.manifest import ManifestEntry as ManifestEntry
from recorder.audio.manifest import RecordsManifestEntry as RecordsManifestEntry
from recorder.audio.manifest import SegmentManifestEntry as SegmentManifestEntry
from recorder.audio.manifest import SpanRecord as SpanRecord
from recorder.audio.wav import build_wav_prologue as build_wav_prologue
from recorder.audio.wav import recovery_prologue as recovery_prologue

__all__ = [
    "KEEP_SOURCE",
    "VOICE",
    "AudioDecoder",
    "EngagementManifest",
    "ManifestEntry",
    "OutputFormat",
    "RecordsManifestEntry",
    "SegmentManifestEntry",
    "SpanRecord",
    "build_wav_prologue",
    "decoder_version",
    "make_decoder",
    "recovery_prologue",
]
