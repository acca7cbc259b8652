"""Benchmarks that print numbers (`recorder bench ...`); tests never assert times."""

from __future__ import annotations
