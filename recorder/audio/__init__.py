"""Audio: PyAV decoders, per-track timelines, WAV/BWF segments and JSON-lines records."""

from __future__ import annotations
