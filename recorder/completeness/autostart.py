"""Auto-start: ask Zoom to start RTMS for pending expectations (``RtmsController``).

Rule 1: a start is claimed in the catalog first (one process asks, even in a fleet), then asked
for at most ``start_attempts`` times, with doubling backoff from ``start_backoff_s``.
Rule 2: a ``ZoomApiError`` with HTTP status 429, 5xx or none (network) is retried; any other is
Zoom's refusal and final. Either way the last error is stored on the expectation with Zoom's
code, HTTP status and message: that is the cause a ``missing`` finding will name.
Rule 3: every request is audited (actor ``recorder:auto-start``, the policy as reason, the
result with Zoom's code). Rule 4: one expectation's failure never stops the others; a failure
to store the result leaves the claim to go stale and be taken again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import trio

from recorder.catalog.aio import AsyncCatalog
from recorder.completeness.model import ExpectationRow
from recorder.completeness.store import call
from recorder.config import CompletenessConfig
from recorder.errors import RecorderError, ZoomApiError
from recorder.service.metrics import RecorderMetrics
from recorder.zoom.directory import RtmsAction, RtmsController

logger = logging.getLogger(__name__)

#: One start request may take this long before it counts as a failed attempt.
START_TIMEOUT_S: Final = 10.0
#: A claim not settled in this time (its process died) is taken again.
CLAIM_STALE_MS: Final = 120_000
#: Expectations claimed per pass.
CLAIM_BATCH: Final = 32
#: The audit log's actor for start requests the service makes on its own.
AUDIT_ACTOR: Final = "recorder:auto-start"
#: Without a wake-up, pending starts are looked for this often.
POLL_S: Final = 5.0


def retryable(exc: ZoomApiError) -> bool:
    return exc.status is None or exc.status == 429 or exc.status >= 500


@dataclass(frozen=True, slots=True)
class StartOutcome:
    ok: bool
    attempts: int
    error: ZoomApiError | None = None


async def request_start(
    controller: RtmsController, x: ExpectationRow, *, attempts: int, backoff_s: float
) -> StartOutcome:
    """Rules 1 and 2 for one expectation (no catalog)."""
    last: ZoomApiError | None = None
    for attempt in range(1, attempts + 1):
        try:
            with trio.fail_after(START_TIMEOUT_S):
                await controller.change(x.product, x.target_id, RtmsAction.START)
            return StartOutcome(True, attempt)
        except trio.TooSlowError:
            last = ZoomApiError(f"start request timed out after {START_TIMEOUT_S:g} s")
        except ZoomApiError as exc:
            last = exc
            if not retryable(exc):
                return StartOutcome(False, attempt, exc)
        except Exception as exc:
            logger.exception("RTMS controller failed unexpectedly")
            return StartOutcome(
                False, attempt, ZoomApiError(f"controller error: {type(exc).__name__}: {exc}")
            )
        if attempt < attempts:
            await trio.sleep(backoff_s * math.pow(2, attempt - 1))
    return StartOutcome(False, attempts, last)


class AutoStarter:
    def __init__(
        self,
        catalog: AsyncCatalog,
        controller: RtmsController,
        policy: CompletenessConfig,
        metrics: RecorderMetrics,
        clock: Callable[[], int],
        *,
        on_settled: Callable[[ExpectationRow, StartOutcome], None] | None = None,
    ) -> None:
        self._on_settled = on_settled
        self._catalog = catalog
        self._controller = controller
        self._policy = policy
        self._metrics = metrics
        self._clock = clock

    async def run(self, wake: trio.MemoryReceiveChannel[int]) -> None:
        """Start pending expectations as they are woken for, and on every poll."""
        async with trio.open_nursery() as nursery:
            while True:
                try:
                    claimed = await call(
                        self._catalog,
                        lambda c: c.claim_expectation_starts(
                            self._clock(), stale_ms=CLAIM_STALE_MS, limit=CLAIM_BATCH
                        ),
                    )
                except RecorderError as exc:
                    logger.warning("auto-start: pending starts unavailable: %s", exc)
                    claimed = []
                for x in claimed:
                    nursery.start_soon(self.start_one, x)
                with trio.move_on_after(POLL_S):
                    await wake.receive()

    async def start_one(self, x: ExpectationRow) -> StartOutcome:
        outcome = await request_start(
            self._controller,
            x,
            attempts=self._policy.start_attempts,
            backoff_s=self._policy.start_backoff_s,
        )
        error = outcome.error
        self._metrics.rtms_autostart("requested" if outcome.ok else "failed")
        if outcome.ok:
            logger.info(
                "RTMS start requested",
                extra={"product": x.product.value, "instance_id": x.instance_id},
            )
        else:
            logger.error(
                "RTMS start failed product=%s instance_id=%s code=%s status=%s: %s",
                x.product.value,
                x.instance_id,
                None if error is None else error.code,
                None if error is None else error.status,
                error,
            )
        try:
            await call(
                self._catalog,
                lambda c: c.set_start_result(
                    x.expectation_id,
                    self._clock(),
                    ok=outcome.ok,
                    attempts=outcome.attempts,
                    status=None if error is None else error.status,
                    code=None if error is None else error.code,
                    message=None if error is None else str(error),
                ),
            )
        except RecorderError as exc:
            logger.error("auto-start result not stored (the claim will be retried): %s", exc)
        try:
            # Asking Zoom to record a call is an action on evidence: who, when, why, result.
            await self._catalog.append_audit(
                actor=AUDIT_ACTOR,
                action="rtms_start",
                target=f"{x.product.value}:{x.instance_id}",
                reason=f"completeness policy ({x.event})",
                now_ms=self._clock(),
                details={
                    "ok": outcome.ok,
                    "attempts": outcome.attempts,
                    "zoom_code": None if error is None else error.code,
                    "http_status": None if error is None else error.status,
                },
            )
        except RecorderError as exc:
            logger.error("auto-start request not audited: %s", exc)
        if self._on_settled is not None:
            self._on_settled(x, outcome)
        return outcome
