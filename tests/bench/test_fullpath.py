"""The full-path benchmark runs end to end in its smallest configuration (no timing asserted)."""

from __future__ import annotations

import re

import pytest

from recorder.bench import fullpath


def test_smallest_configuration_prints_every_row_side_by_side_with_ratios(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = fullpath.main(
        [
            "--codecs",
            "l16",
            "--modes",
            "floor,bare,full",
            "--engagements",
            "2",
            "--seconds",
            "3",
            "--ramp",
            "0",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    rows = [line for line in out.splitlines() if line.startswith("L16 16k mono")]
    assert [row.split("K=")[0].strip() for row in rows] == [
        "L16 16k mono floor: trio receive_some",
        "L16 16k mono bare trio-websocket recv",
        "L16 16k mono full path, one task",
    ], out
    for row in rows:
        assert "ERROR" not in row, row
        assert "µs/msg" in row, row
    # The full path recorded every frame the simulator sent.
    assert "lost +0 " in rows[2], rows[2]
    # The comparison: every row as µs/msg and as ratios to bare and to the floor.
    table = out.split("== L16 16k mono, K=2, this run:", 1)[1].splitlines()[1:4]
    assert len(table) == 3, out
    bare = next(line for line in table if "bare trio-websocket" in line)
    assert re.search(r"\s1\.00x\s", bare), bare
    assert all(re.search(r"\d+\.\d+\s+\d+\.\d\dx\s+\d+\.\d\dx", line) for line in table), table
    assert "scaling: not measured" in out


@pytest.mark.parametrize(("output", "rate"), [("service", 8000), ("voice", 16000)])
def test_g711_is_written_at_the_rate_the_chosen_output_records(
    output: str, rate: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """``service`` measures what `recorder serve` records with the shipped ``[capture]``
    ("source": G.711 stays at 8 kHz); ``voice`` doubles it to 16 kHz."""
    code = fullpath.main(
        [
            *("--codecs", "g711", "--modes", "full", "--engagements", "1"),
            *("--seconds", "3", "--ramp", "0", "--output", output),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"output ({output}): " in out, out
    row = next(line for line in out.splitlines() if line.startswith("G.711 8k"))
    assert "lost +0 " in row, row
    assert f" written at {rate} Hz " in row, row
