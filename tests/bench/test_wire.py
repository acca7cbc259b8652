"""The wire benchmark runs in its smallest configuration (no timing asserted)."""

from __future__ import annotations

import pytest

from recorder.bench import wire


def test_every_frame_shape_is_measured(capsys: pytest.CaptureFixture[str]) -> None:
    assert wire.main(["--messages", "20", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    for label in (
        "documented",
        "unknown fields",
        "tolerant path",
        "RTP G.711",
        "wsproto",
        "take_frames",
    ):
        assert any(line.startswith(label) for line in out.splitlines()), out
