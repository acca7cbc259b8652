"""The per-engagement capture pipeline: client events in, sealed segments and records out."""

from __future__ import annotations
