"""A value that selects recordings may not be empty: ``--id "$ID"`` with ``ID`` unset must not
widen a search, an export, a hold or a verify run to every recording."""

from __future__ import annotations

import itertools

import pytest

from recorder.cli import build_parser

EMPTY_SELECTIONS = [
    ["search", "--id", ""],
    ["search", "--participant", " "],
    ["search", "--since", ""],
    ["export", "--out", "bundle", "--reason", "r", "--id", ""],
    ["export", "--out", "bundle", "--reason", "r", "--instance", ""],
    ["export", "--out", "bundle", "--reason", "r", "--since", ""],
    ["hold", "place", "--matter", "m", "--reason", "r", "--instance", ""],
    ["verify", "--since", ""],
]


@pytest.mark.parametrize("argv", EMPTY_SELECTIONS, ids=" ".join)
def test_an_empty_selection_is_refused_naming_the_option(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    option = next(a for a, b in itertools.pairwise(argv) if not b.strip())
    err = capsys.readouterr().err
    assert f"argument {option}: must not be empty" in err


def test_a_selection_with_a_value_is_taken_as_given() -> None:
    args = build_parser().parse_args(["export", "--out", "b", "--reason", "r", "--id", "x"])
    assert args.any_id == "x"
