"""The full-path benchmark runs end to end in its smallest configuration (no timing asserted)."""

from __future__ import annotations

import pytest

from recorder.bench import fullpath


def test_smallest_configuration_runs_and_prints_a_per_message_figure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = fullpath.main(["--codecs", "l16", "--engagements", "2", "--seconds", "2", "--ramp", "0"])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = [line for line in out.splitlines() if line.startswith("L16 16k mono")]
    assert len(rows) == 1, out
    assert "µs/msg" in rows[0]
    assert "ERROR" not in rows[0]
