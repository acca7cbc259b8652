"""The start trace ``bench workers burst`` reads: off by default, one line per mark when on."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

from recorder.service import start_trace


def test_marks_nothing_unless_the_environment_names_a_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(start_trace.ENV, raising=False)
    module = importlib.reload(start_trace)
    module.mark("received", "stream-1")
    assert list(tmp_path.iterdir()) == []


def test_marks_each_stage_once_per_stream_and_reads_back_the_first_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(start_trace.ENV, str(tmp_path))
    module = importlib.reload(start_trace)
    try:
        module.mark("received", "stream-1")
        module.mark("received", "stream-1")
        module.mark("queued", "stream-1")
        module.mark("received", None)
        module.mark("received", "stream-2")
        (tmp_path / "broken.trace").write_text("not a trace line\n", encoding="ascii")
        seen = module.read(tmp_path)
    finally:
        monkeypatch.delenv(start_trace.ENV)
        importlib.reload(start_trace)
    assert sorted(seen) == ["stream-1", "stream-2"]
    assert sorted(seen["stream-1"]) == ["queued", "received"]
    assert seen["stream-1"]["received"] <= seen["stream-1"]["queued"]
    lines = (tmp_path / f"{os.getpid()}.trace").read_text().splitlines()
    assert len(lines) == 4  # every mark is written; read() keeps each stage's first time
