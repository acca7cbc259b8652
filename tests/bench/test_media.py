"""The media benchmark runs in its smallest configuration (no timing asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.bench import media


def test_every_figure_is_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert media.main(["--minutes", "6", "--reads", "2", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for label in ("sealed", "open", "range read", "sequential pass", "peaks"):
        assert any(line.startswith(label) for line in out.splitlines()), out
    assert "36000 peaks" in out  # 6 min at 100 a second
    assert list(tmp_path.iterdir()) == []  # nothing left behind
