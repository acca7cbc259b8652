"""The per-engagement capture pipeline: client events in, sealed segments and records out."""

from __future__ import annotations

from recorder.capture.core import CaptureConfig as CaptureConfig
from recorder.capture.pipeline import OnSealed as OnSealed
from recorder.capture.pipeline import run_capture as run_capture

__all__ = ["CaptureConfig", "OnSealed", "run_capture"]
