"""The ``recorder`` command's own behaviour, outside any subcommand."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

POLICIES = Path(__file__).resolve().parents[1] / "policies"


@pytest.mark.timeout(60)
def test_a_reader_that_stops_early_ends_the_command_quietly() -> None:
    """``recorder audit list | head -1``: stdout's reader is gone before the output is written;
    the command ends with the shell's SIGPIPE status and no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "recorder", "policies", "check", "--dir", str(POLICIES)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=50,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.stderr.decode() == ""
    assert done.returncode == 141
