"""``recorder.frozen``: slot setters build the same frozen value, and refuse a stale field list."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass

import pytest

from recorder.frozen import new_object, slot_setters


@dataclass(frozen=True, slots=True)
class Pair:
    left: int
    right: str


def test_setters_build_a_value_equal_to_the_constructors_and_still_frozen() -> None:
    set_left, set_right = slot_setters(Pair, ("left", "right"))
    built: Pair = new_object(Pair)
    set_left(built, 7)
    set_right(built, "x")
    assert built == Pair(7, "x")
    assert hash(built) == hash(Pair(7, "x"))
    with pytest.raises(FrozenInstanceError):
        built.left = 8  # type: ignore[misc]


@pytest.mark.parametrize("names", [("left",), ("right", "left"), ("left", "right", "extra")])
def test_a_field_list_that_differs_from_the_class_fails_naming_both(
    names: tuple[str, ...],
) -> None:
    with pytest.raises(RuntimeError, match=r"Pair's fields are \('left', 'right'\)"):
        slot_setters(Pair, names)
