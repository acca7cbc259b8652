"""Building frozen slotted dataclasses on a per-message hot path.

A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__`` (about 0.2 µs a
field). The slots' own descriptors set the same fields in a third of that, and the instance is
the same frozen value: ``obj = object.__new__(cls)``, then each setter ``(obj, value)``. Only for
code that builds one per 20 ms message (``rtms.events.audio_packet``, the timeline's ``Audio``),
each under a test that the result equals the ordinary construction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

new_object = object.__new__


def slot_setters(cls: type, names: tuple[str, ...]) -> tuple[Callable[[Any, Any], None], ...]:
    """The slot descriptors' setters of ``cls``'s fields, which must be exactly ``names`` in
    order: a field added or renamed fails at import, never builds a half-set instance."""
    actual = tuple(f.name for f in dataclasses.fields(cls))
    if actual != names:
        raise RuntimeError(f"{cls.__name__}'s fields are {actual}, not {names}: update its builder")
    return tuple(getattr(cls, name).__set__ for name in names)
