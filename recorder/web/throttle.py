"""Failed sign-ins slow a guesser down (sans-IO: fed keys and ``now_ms``, no clock of its own).

A key (a user name with the client's address, or the address alone) that failed
``max_failures`` times within ``window_ms`` is refused for ``lock_ms`` from its last failure.
Keyed by user *and* address, a guesser cannot lock an officer out from elsewhere; keyed by
address alone (with a higher limit), one client cannot try many names. Memory is bounded: the
oldest keys are forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

MAX_KEYS: Final = 10_000


@dataclass(slots=True)
class FailureThrottle:
    max_failures: int
    window_ms: int
    lock_ms: int
    _failures: OrderedDict[str, list[int]] = field(default_factory=OrderedDict)

    def retry_after_ms(self, key: str, now_ms: int) -> int:
        """0 when ``key`` may try now, else how long until it may."""
        recent = [t for t in self._failures.get(key, []) if now_ms - t < self.window_ms]
        if len(recent) < self.max_failures:
            return 0
        return max(0, recent[-1] + self.lock_ms - now_ms)

    def failed(self, key: str, now_ms: int) -> None:
        recent = [t for t in self._failures.pop(key, []) if now_ms - t < self.window_ms]
        recent.append(now_ms)
        self._failures[key] = recent[-self.max_failures :]
        while len(self._failures) > MAX_KEYS:
            self._failures.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
