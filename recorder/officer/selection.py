"""Command-line values that select recordings (kept free of heavy imports: ``recorder.cli``
builds its parsers with it before any subcommand runs)."""

from __future__ import annotations

import argparse


def selection_text(value: str) -> str:
    """An argparse ``type`` for a value that selects recordings: an empty one is refused.

    Why: ``--id "$ID"`` with ``ID`` unset would otherwise filter on nothing, and a search, an
    export or a hold would then take every recording instead of one."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty (an unset shell variable?)")
    return value
