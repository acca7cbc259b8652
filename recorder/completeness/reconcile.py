"""The reconciler's trio shell: expectations in the window, verdicts (``reconciler``), findings.

Runs in the service every ``reconcile_interval_s`` and as ``recorder completeness reconcile``
(timer in ops/). Idempotent: a run stores each expectation's latest verdict (catalog rule 3).
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import trio

from recorder.catalog.aio import AsyncCatalog
from recorder.completeness.reconciler import Thresholds, settled, verdict
from recorder.completeness.store import call, run
from recorder.config import CompletenessConfig
from recorder.errors import RecorderError
from recorder.service.metrics import RecorderMetrics

logger = logging.getLogger(__name__)

#: Expectations read per catalog call.
BATCH: Final = 200
#: Upper bound on expectations one run looks at (the rest wait for the next run).
MAX_PER_RUN: Final = 100_000


def thresholds(policy: CompletenessConfig) -> Thresholds:
    return Thresholds(
        grace_ms=int(policy.grace_s * 1000),
        late_start_ms=int(policy.late_start_s * 1000),
        early_end_ms=int(policy.early_end_s * 1000),
        max_gap_ms=int(policy.max_gap_s * 1000),
    )


@dataclass(slots=True)
class ReconcileSummary:
    examined: int = 0
    met: int = 0
    waiting: int = 0
    #: Verdicts that became final this run.
    settled: int = 0
    findings: Counter[tuple[str, str]] = field(default_factory=Counter)


async def reconcile_once(
    catalog: AsyncCatalog, policy: CompletenessConfig, now_ms: int, *, recheck: bool = False
) -> ReconcileSummary:
    """One run over the window; ``recheck`` includes settled expectations (reconciler rule 4)."""
    t = thresholds(policy)
    summary = ReconcileSummary()
    since = now_ms - int(policy.reconcile_window_s * 1000)
    # Only expectations past their grace period can get a verdict.
    until = now_ms - t.grace_ms + 1
    after: tuple[int, int] | None = None
    db = catalog.sync
    while summary.examined < MAX_PER_RUN:
        batch = await run(
            catalog,
            functools.partial(
                db.expectations_between,
                since,
                until,
                limit=BATCH,
                after=after,
                unsettled_only=not recheck,
            ),
        )
        if not batch:
            break
        ids = [x.expectation_id for x in batch]
        inputs = await run(catalog, functools.partial(db.reconcile_inputs, ids))
        for one in inputs:
            summary.examined += 1
            v = verdict(one, now_ms, t)
            if v is None:
                summary.waiting += 1
                continue
            if v.met:
                summary.met += 1
                stored = None
            else:
                assert v.kind is not None
                assert v.cause is not None
                summary.findings[(v.kind.value, v.cause.value)] += 1
                stored = (v.kind, v.cause, v.detail, v.recording_id)
            final = settled(one, now_ms)
            summary.settled += final
            await run(
                catalog,
                functools.partial(db.put_finding, one.expectation, stored, now_ms, settled=final),
            )
        if len(batch) < BATCH:
            break
        after = (batch[-1].expected_start_ms, batch[-1].expectation_id)
    return summary


async def run_reconciler(
    catalog: AsyncCatalog,
    policy: CompletenessConfig,
    metrics: RecorderMetrics,
    clock: Callable[[], int],
) -> None:
    """Reconcile, publish open findings in /metrics, sleep; until cancelled."""
    while True:
        try:
            summary = await reconcile_once(catalog, policy, clock())
            if summary.findings:
                logger.warning(
                    "completeness findings: %s",
                    ", ".join(f"{k}/{c}={n}" for (k, c), n in sorted(summary.findings.items())),
                )
            metrics.set_findings(await call(catalog, lambda c: c.finding_counts()))
        except RecorderError as exc:
            logger.warning("reconcile failed: %s", exc)
        await trio.sleep(policy.reconcile_interval_s)
