"""Fakes and helpers shipped with the package, so tests and benchmarks need no Zoom and no AWS."""

from __future__ import annotations
