"""Reconnect delays (rtms-protocol.md §9.2): initial, doubling, capped; reset by a handshake."""

from __future__ import annotations


class Backoff:
    """``next()`` gives 3, 6, 12, 24, 30, 30 ... seconds with the defaults; ``reset()`` restarts."""

    def __init__(self, initial_s: float = 3.0, max_s: float = 30.0) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError("backoff needs 0 < initial_s <= max_s")
        self.initial_s = initial_s
        self.max_s = max_s
        self._next_s = initial_s
        #: Delays handed out since the last reset.
        self.attempts = 0

    def next(self) -> float:
        delay = self._next_s
        self._next_s = min(self._next_s * 2, self.max_s)
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self._next_s = self.initial_s
        self.attempts = 0
