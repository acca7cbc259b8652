"""Liveness and readiness, as /healthz and /readyz report them.

Liveness answers "is the service loop still running?": the loop calls ``Liveness.tick()`` each
time round (the same place it pings systemd's watchdog), and /healthz fails once the last tick is
older than ``stale_s``. It says nothing about dependencies, so a restart is never triggered by a
slow bucket.

Readiness answers "should Zoom's webhooks come here now?": named async checks (catalog, store,
keys, spool) run concurrently, each under its own timeout. A check passes by returning and fails
by raising (``RecorderError`` subclasses carry the message shown) or by timing out. A passing
check may return a short note (the spool above its warning size): shown, but still ready.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

import trio

from recorder.errors import RecorderError, StorageError
from recorder.service.metrics import RecorderMetrics

logger = logging.getLogger(__name__)

#: A readiness check: returns when ready (optionally a note worth showing), raises when not.
ReadinessCheck = Callable[[], Awaitable[str | None]]

#: Failure texts are shown to whoever can reach /readyz; keep them short.
_MAX_DETAIL_CHARS: Final = 300


class Liveness:
    """Tracks when the service loop last ran. Starts alive: startup gets one ``stale_s``."""

    def __init__(self, stale_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._stale_s = stale_s
        self._clock = clock
        self._last_tick = clock()

    def tick(self) -> None:
        self._last_tick = self._clock()

    def age_s(self) -> float:
        return self._clock() - self._last_tick

    def alive(self) -> bool:
        return self.age_s() <= self._stale_s


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    #: Why it failed (empty when ok).
    detail: str = ""
    #: What a passing check wants an operator to see (empty when nothing).
    note: str = ""


class Readiness:
    """A registry of named readiness checks, run together with per-check timeouts."""

    def __init__(self, *, timeout_s: float, metrics: RecorderMetrics | None = None) -> None:
        self._timeout_s = timeout_s
        self._metrics = metrics
        self._checks: dict[str, ReadinessCheck] = {}

    def register(self, name: str, check: ReadinessCheck) -> None:
        """Add a check. ``name`` is a short fixed word (it becomes a metrics label)."""
        if name in self._checks:
            raise ValueError(f"readiness check {name!r} is already registered")
        self._checks[name] = check

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._checks)

    async def _run_one(self, name: str, check: ReadinessCheck, results: list[CheckResult]) -> None:
        result: CheckResult
        try:
            with trio.fail_after(self._timeout_s):
                note = await check()
        except trio.TooSlowError:
            result = CheckResult(name, False, f"timed out after {self._timeout_s:g} s")
        except RecorderError as exc:
            result = CheckResult(name, False, f"{type(exc).__name__}: {exc}"[:_MAX_DETAIL_CHARS])
        except Exception as exc:
            # A check must never take the HTTP server down; an unexpected error is a failure
            # of that check, logged in full for the operator, shown only by type.
            logger.exception("readiness check failed unexpectedly", extra={"check": name})
            result = CheckResult(name, False, f"unexpected {type(exc).__name__}")
        else:
            result = CheckResult(name, True, note=(note or "")[:_MAX_DETAIL_CHARS])
        if self._metrics is not None:
            self._metrics.set_ready(name, result.ok)
        results.append(result)

    async def run(self) -> tuple[bool, Mapping[str, CheckResult]]:
        """Run every check concurrently. Ready only if all pass (and vacuously with none)."""
        results: list[CheckResult] = []
        async with trio.open_nursery() as nursery:
            for name, check in self._checks.items():
                nursery.start_soon(self._run_one, name, check, results)
        by_name = {r.name: r for r in sorted(results, key=lambda r: r.name)}
        return all(r.ok for r in by_name.values()), by_name


def spool_below_limit(
    pending_bytes: Callable[[], int], limit_bytes: int, *, warn_bytes: int | None = None
) -> ReadinessCheck:
    """A readiness check that fails while the spool holds more than ``limit_bytes`` and notes
    (still ready) when it holds more than ``warn_bytes``."""

    async def check() -> str | None:
        used = pending_bytes()
        if used > limit_bytes:
            raise StorageError(f"spool holds {used} bytes, above the limit of {limit_bytes}")
        if warn_bytes is not None and used > warn_bytes:
            return f"spool holds {used} bytes, above the warning level of {warn_bytes}"
        return None

    return check
