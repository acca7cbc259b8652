"""The completeness parts of ``recorder serve``: the ingress's announcement sink and the tasks
(auto-starter, enricher, reconciler), each started only when configured and given what it needs.

- expectations: ``[completeness] enabled``;
- auto-start: also ``auto_start`` and an ``RtmsController`` in ``Components`` (none by default);
- enrichment: ``enrich`` and a ``ZoomDirectory`` in ``Components`` (none by default);
- reconciler: ``enabled``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from recorder.completeness.autostart import AutoStarter
from recorder.completeness.enrichment import Enricher
from recorder.completeness.expectations import CatalogExpectations
from recorder.completeness.reconcile import run_reconciler
from recorder.service.components import Components, now_ms

logger = logging.getLogger(__name__)

#: Wake-ups of the auto-starter waiting to be read (it also polls, so a full channel is fine).
WAKE_QUEUE: Final = 64


class CompletenessService:
    def __init__(self, c: Components) -> None:
        self._c = c
        policy = c.config.completeness
        self._wake_send, self._wake_receive = trio.open_memory_channel[int](WAKE_QUEUE)
        auto_start = policy.auto_start and c.rtms_controller is not None
        if policy.auto_start and c.rtms_controller is None:
            logger.warning("[completeness] auto_start is set but no RTMS controller is configured")
        self.announcements: CatalogExpectations | None = (
            CatalogExpectations(
                c.catalog,
                policy,
                controller_present=auto_start,
                wake=self._wake_send if auto_start else None,
            )
            if policy.enabled
            else None
        )

    async def run(self) -> None:
        c = self._c
        policy = c.config.completeness
        async with trio.open_nursery() as nursery:
            if policy.enabled:
                reconcile = functools.partial(run_reconciler, c.catalog, policy, c.metrics, now_ms)
                nursery.start_soon(supervised, "reconciler", reconcile)
                if policy.auto_start and c.rtms_controller is not None:
                    starter = AutoStarter(c.catalog, c.rtms_controller, policy, c.metrics, now_ms)
                    start = functools.partial(starter.run, self._wake_receive)
                    nursery.start_soon(supervised, "auto-start", start)
            if policy.enrich and c.zoom_directory is not None:
                enricher = Enricher(c.catalog, c.zoom_directory, policy, c.metrics, now_ms)
                nursery.start_soon(supervised, "enrichment", enricher.run)


#: A completeness task that failed unexpectedly is started again after this long.
RESTART_DELAY_S: Final = 1.0


async def supervised(name: str, task: Callable[[], Awaitable[None]]) -> None:
    """Run ``task`` for good: an unexpected error (a bug, or a Zoom client raising outside the
    ``RecorderError`` tree) is logged and the task restarted, never propagated, so that nothing
    of completeness can take the recording service down (invariant 10)."""
    while True:
        try:
            await task()
        except Exception:
            logger.exception("completeness %s failed unexpectedly: restarting it", name)
        await trio.sleep(RESTART_DELAY_S)
