"""The export's progress: one redrawn bar on a terminal, a plain line per tenth otherwise."""

from __future__ import annotations

import io

from recorder.officer.bundle.commands import ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_one_redrawn_bar_and_a_final_newline() -> None:
    out = Terminal()
    bar = ProgressBar(out)
    for done in range(0, 101, 25):
        bar(done * 10_000, 1_000_000, "rec/track/000001.wav.rec")
    bar.close()
    text = out.getvalue()
    assert "\n" not in text[:-1]
    assert text.endswith("\n")
    frames = text.strip("\n").split("\r")[1:]
    assert len(frames) == 5
    assert frames[-1].startswith("[" + "#" * 30 + "] 100%")
    assert frames[0].startswith("[" + "-" * 30 + "]   0%")


def test_a_log_or_pipe_gets_plain_lines_once_per_tenth() -> None:
    out = io.StringIO()
    bar = ProgressBar(out)
    for done in range(0, 1_000_001, 10_000):  # a hundred updates
        bar(done, 1_000_000, "object")
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 11  # 0%, 10%, ... 100%
    assert "\r" not in out.getvalue()
    assert lines[-1].startswith("export: 100%")
