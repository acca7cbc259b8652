"""``bench compare`` runs two real trees' ``python -m recorder bench`` in alternation. The trees
here are stand-ins (a ``recorder`` package whose ``__main__`` prints a figure and logs its
turn), so the test checks the order, the figures and the failures, never a timing."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.bench import compare

pytestmark = pytest.mark.timeout(120)

STAND_IN = """\
import os
import sys

with open(os.environ["COMPARE_LOG"], "a") as log:
    log.write({name!r} + " " + " ".join(sys.argv[1:]) + "\\n")
print("warming up")
print("figure 1")
print({output!r})
sys.exit({code})
"""


def stand_in(tmp_path: Path, name: str, output: str, code: int = 0) -> Path:
    tree = tmp_path / name
    (tree / "recorder").mkdir(parents=True)
    (tree / "recorder" / "__init__.py").write_text("")
    (tree / "recorder" / "__main__.py").write_text(
        STAND_IN.format(name=name, output=output, code=code)
    )
    return tree


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "turns.log"
    monkeypatch.setenv("COMPARE_LOG", str(path))
    # Run from a directory holding a real checkout: the stand-ins must still be the ones run.
    monkeypatch.chdir(Path(compare.__file__).parents[2])
    return path


def test_the_trees_run_in_alternation_and_their_figures_are_compared_pair_by_pair(
    tmp_path: Path, log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = stand_in(tmp_path, "A", "track audio: median 400 MB/s")
    b = stand_in(tmp_path, "B", "track audio: median 440 MB/s")
    trees = ["--tree", str(a), "--tree", str(b)]
    code = compare.main(
        [*trees, "--figure", r"median (\d+) MB/s", "--pairs", "3", "--", "export", "--rounds", "4"]
    )
    assert code == 0
    turns = log.read_text().splitlines()
    assert turns == ["A bench export --rounds 4", "B bench export --rounds 4"] * 3
    out = capsys.readouterr().out
    assert "median A 400 (400, 400, 400); median B 440 (440, 440, 440)" in out
    assert "B/A per pair: 1.100, 1.100, 1.100; median 1.100 (B ahead in 3 of 3 pairs" in out


def test_a_run_that_fails_or_prints_no_figure_stops_the_comparison_naming_it(
    tmp_path: Path, log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = stand_in(tmp_path, "A", "median 400 MB/s")
    broken = stand_in(tmp_path, "B", "Traceback: boom", code=3)
    mute = stand_in(tmp_path, "C", "nothing to see")
    figure = ["--figure", r"median (\d+) MB/s", "--", "export"]
    assert compare.main(["--tree", str(a), "--tree", str(broken), *figure]) == 1
    assert f"pair 1 B: failed: {broken.resolve()}: bench exited 3" in capsys.readouterr().err
    assert compare.main(["--tree", str(a), "--tree", str(mute), *figure]) == 1
    assert "pair 1 B: --figure matched nothing" in capsys.readouterr().err


def test_a_tree_without_a_recorder_package_is_refused_before_anything_runs(
    tmp_path: Path, log: Path
) -> None:
    a = stand_in(tmp_path, "A", "median 1 MB/s")
    with pytest.raises(SystemExit):
        compare.main(["--tree", str(a), "--tree", str(tmp_path), "--figure", "x", "--", "export"])
    assert not log.exists()


def test_a_tree_compared_with_itself_gives_two_columns_the_noise_floor(
    tmp_path: Path, log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = stand_in(tmp_path, "A", "median 400 MB/s")
    assert (
        compare.main(["--tree", str(a), "--tree", str(a), "--figure", r"(\d+) MB", "--", "x"]) == 0
    )
    assert log.read_text().splitlines() == ["A bench x"] * 6
    out = capsys.readouterr().out
    assert "median A 400 (400, 400, 400); median B 400 (400, 400, 400)" in out
