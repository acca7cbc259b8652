"""Which error a failed export reports when several of its parts fail at once (pure).

A tampered segment makes its track fail; the listening file, which reads that track, then gives
up (``TrackAbandoned``), the other tracks are stopped (``PipeAborted``, ``trio.Cancelled``). All of
these reach the nursery, in an order set by thread timing. The officer must always see the root
cause, naming the object and what was wrong with it, so the choice is by rank, never by arrival:

1. an integrity error (digest, authentication, truncation, header: the evidence itself);
2. any other ``RecorderError`` that is not derived (the store, a key, the disk);
3. derived errors (a part that stopped because another failed), only when nothing else is there;
   when the export was cancelled from outside, the cancellation itself.

Ties are broken by the message (it starts with the object's name), so the same failures always
give the same report. An unexpected exception (a bug) is never hidden behind a derived error:
without a root ``RecorderError`` the whole group is raised.
"""

from __future__ import annotations

import trio

from recorder.errors import IntegrityError, RecorderError
from recorder.officer.bundle.pipe import PipeAborted
from recorder.officer.bundle.wavio import TrackAbandoned

DERIVED = (TrackAbandoned, PipeAborted)

_INTEGRITY, _ROOT, _DERIVED, _BUG, _CANCELLED = range(5)


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out += leaves(exc)
        else:
            out.append(exc)
    return out


def _rank(exc: BaseException) -> int:
    if isinstance(exc, DERIVED):
        return _DERIVED
    if isinstance(exc, IntegrityError):
        return _INTEGRITY
    if isinstance(exc, RecorderError):
        return _ROOT
    if isinstance(exc, trio.Cancelled):
        return _CANCELLED
    return _BUG


def root_cause(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error to raise for ``group``, or ``group`` itself (a bug, or only cancellation)."""
    found = leaves(group)
    if not found:
        return group
    best = min(found, key=lambda e: (_rank(e), str(e)))
    if _rank(best) in (_INTEGRITY, _ROOT):
        return best
    if any(_rank(e) == _BUG for e in found):
        return group
    # Cancelled from outside: the derived errors are its consequences, the cancellation is
    # what must propagate (its scope catches it).
    cancelled = group.subgroup(trio.Cancelled)
    if cancelled is not None:
        return cancelled
    return best
