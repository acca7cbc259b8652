"""A bounded hand-over of stored pieces from the trio loop to one track's worker thread.

Why not a trio memory channel: the worker would then call back into the loop for every piece
(``trio.from_thread.run``), a hop through the loop per megabyte. Here the loop only waits in a
thread when the pipe is full, and the worker blocks on a condition variable, never on the loop.

Rule: a pipe ends one of three ways, and the consumer can tell them apart. ``close`` (all sent),
``fail(exc)`` (the producer's own error: re-raised in the consumer as itself, so the error the
officer sees is the root cause, not a symptom) and ``abort`` (the producer was cancelled, or the
consumer gave up: ``PipeAborted``, a derived error ranked below any root cause).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Final, Generic, TypeVar

import trio

from recorder.errors import StorageError

T = TypeVar("T")

_OPEN: Final = 0
_CLOSED: Final = 1
_ABORTED: Final = 2


class PipeAborted(StorageError):
    """The other end of a track's pipe stopped because of something else (never a root cause)."""


class Pipe(Generic[T]):
    """Thread-safe, bounded to ``capacity`` items; one producer (a trio task), one consumer."""

    def __init__(self, capacity: int, name: str) -> None:
        if capacity < 1:
            raise ValueError("a pipe holds at least one item")
        self.name = name
        self._capacity = capacity
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._state = _OPEN
        self._error: BaseException | None = None

    # --- producer (trio) -------------------------------------------------------------------

    async def put(self, item: T) -> None:
        """Wait (in a thread, only while full) for room, then add ``item``."""
        while not self._try_put(item):
            await trio.to_thread.run_sync(self._wait_for_room, abandon_on_cancel=True)

    def _try_put(self, item: T) -> bool:
        with self._cond:
            if self._state == _ABORTED:
                raise PipeAborted(f"{self.name}: the track's writer stopped")
            if len(self._items) >= self._capacity:
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def _wait_for_room(self) -> None:
        # Until half is free, not one slot: the loop then puts several pieces per hop.
        with self._cond:
            while len(self._items) > self._capacity // 2 and self._state == _OPEN:
                self._cond.wait()

    def close(self) -> None:
        """Everything is sent; ``get`` returns ``None`` once the items are taken."""
        with self._cond:
            if self._state == _OPEN:
                self._state = _CLOSED
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        """The producer failed: ``get`` raises ``error`` itself (after the items sent before)."""
        with self._cond:
            if self._state == _OPEN:
                self._state, self._error = _CLOSED, error
            self._cond.notify_all()

    # --- either end ------------------------------------------------------------------------

    def abort(self) -> list[T]:
        """Stop both ends now; returns the items never taken (the caller releases them)."""
        with self._cond:
            self._state = _ABORTED
            left = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return left

    # --- consumer (a worker thread) --------------------------------------------------------

    def check(self) -> None:
        """Raise ``PipeAborted`` if the export was stopped (for a consumer busy between gets)."""
        with self._cond:
            if self._state == _ABORTED:
                raise PipeAborted(f"{self.name}: the export stopped")

    def get(self) -> T | None:
        """The next item, ``None`` at the end; raises the producer's error or ``PipeAborted``."""
        with self._cond:
            while True:
                if self._state == _ABORTED:
                    raise PipeAborted(f"{self.name}: the export stopped")
                if self._items:
                    item = self._items.popleft()
                    self._cond.notify_all()
                    return item
                if self._state == _CLOSED:
                    if self._error is not None:
                        raise self._error
                    return None
                self._cond.wait()
