"""The RTMS simulator: a docs-faithful Zoom RTMS server and webhook sender, with fault injection."""

from __future__ import annotations
