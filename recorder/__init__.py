"""rtms-recorder: a compliance recorder for Zoom Realtime Media Streams."""

from __future__ import annotations

__version__ = "0.1.0"
