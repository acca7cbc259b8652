"""Enrichment: who and what a recording was, asked of Zoom's directory off the recording path.

Rule 1: nothing on the recording path waits for it. A scanner (one task) queues a pending
enrichment for every recording of the last ``reconcile_window_s`` without one (the CLI's pass:
every recording), claims due ones in the catalog (so one process asks) and offers them to a
bounded channel; ``workers`` tasks ask the ``ZoomDirectory``.
Rule 2: a failure (``ZoomApiError``, a timeout, even a bug in the directory client) is stored
with the row and retried after ``enrich_backoff_s`` doubling up to ``enrich_backoff_max_s``;
after ``enrich_attempts`` the row is ``failed`` until ``recorder enrich --retry``.
Rule 3: what the directory answers is stored as it is, phone numbers normalised (``+`` and
digits) so that officers find them however they type them. A Zoom Phone call's user is kept as
its agent (the firm's side of the call). Video SDK sessions have no directory: done, empty.
Rule 4: once every recording of an instance is destroyed its row is ``scrubbed`` (final,
``recorder.catalog._scrub``): it is never claimed again, and an answer that was already on its
way is dropped, not stored.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import trio

from recorder.catalog.aio import AsyncCatalog
from recorder.completeness.model import EnrichmentFields, EnrichmentTask
from recorder.completeness.store import call, run
from recorder.config import CompletenessConfig
from recorder.errors import RecorderError
from recorder.products import Product
from recorder.service.metrics import RecorderMetrics
from recorder.zoom.directory import ZoomDirectory

logger = logging.getLogger(__name__)

QUEUE_SIZE: Final = 32
WORKERS: Final = 2
LOOKUP_TIMEOUT_S: Final = 15.0
#: A claimed lookup not settled in this time is due again (its process died).
CLAIM_LEASE_MS: Final = 120_000


async def look_up(directory: ZoomDirectory, task: EnrichmentTask) -> EnrichmentFields:
    """Raises ``RecorderError`` (``ZoomApiError``) when Zoom could not answer."""
    if task.product in (Product.MEETING, Product.WEBINAR):
        m = await directory.meeting(task.lookup_id)
        return EnrichmentFields(topic=m.topic, host_id=m.host_id, host_email=m.host_email)
    if task.product is Product.CONTACT_CENTER:
        e = await directory.engagement(task.lookup_id)
        return EnrichmentFields(
            queue_id=e.queue_id,
            queue_name=e.queue_name,
            agent_id=e.agent_id,
            agent_name=e.agent_name,
            agent_email=e.agent_email,
            consumer_number=e.consumer_number,
            direction=e.direction,
        )
    if task.product is Product.PHONE:
        p = await directory.phone_call(task.lookup_id)
        return EnrichmentFields(
            agent_id=p.user_id,
            caller_number=p.caller_number,
            callee_number=p.callee_number,
            direction=p.direction,
        )
    return EnrichmentFields()


@dataclass(slots=True)
class EnrichStats:
    enriched: int = 0
    failed: int = 0


class Enricher:
    def __init__(
        self,
        catalog: AsyncCatalog,
        directory: ZoomDirectory,
        policy: CompletenessConfig,
        metrics: RecorderMetrics,
        clock: Callable[[], int],
    ) -> None:
        self._catalog = catalog
        self._directory = directory
        self._policy = policy
        self._metrics = metrics
        self._clock = clock
        self.stats = EnrichStats()

    def _backoff_ms(self, attempts: int) -> int:
        p = self._policy
        delay = min(p.enrich_backoff_max_s, p.enrich_backoff_s * 2 ** min(attempts, 30))
        return int(delay * 1000)

    async def enrich_one(self, task: EnrichmentTask) -> bool:
        """Look ``task`` up and store the answer or the failure (rule 2). True if enriched."""
        try:
            with trio.fail_after(LOOKUP_TIMEOUT_S):
                fields = await look_up(self._directory, task)
        except Exception as exc:
            error = (
                str(exc) or type(exc).__name__
                if isinstance(exc, RecorderError | trio.TooSlowError)
                else f"{type(exc).__name__}: {exc}"
            )
            attempts = task.attempts + 1
            give_up = attempts >= self._policy.enrich_attempts
            now = self._clock()
            self.stats.failed += 1
            self._metrics.enrichment("failed")
            logger.warning(
                "enrichment failed product=%s attempts=%d give_up=%s: %s",
                task.product.value,
                attempts,
                give_up,
                error,
            )
            await call(
                self._catalog,
                lambda c: c.enrichment_failed(
                    task.product,
                    task.instance_id,
                    error,
                    now,
                    next_attempt_ms=now + self._backoff_ms(task.attempts),
                    give_up=give_up,
                ),
            )
            return False
        stored = await call(
            self._catalog,
            lambda c: c.store_enrichment(task.product, task.instance_id, fields, self._clock()),
        )
        if not stored:
            # Its recordings were destroyed while Zoom was asked: the answer names people
            # the catalog must no longer hold.
            logger.info("enrichment dropped: the recordings were destroyed meanwhile")
            return False
        self.stats.enriched += 1
        self._metrics.enrichment("enriched")
        return True

    async def pass_once(self) -> int:
        """Queue missing enrichments, then enrich what is due now, inline (the CLI's pass)."""
        await call(self._catalog, lambda c: c.enqueue_enrichments(self._clock()))
        done = 0
        while True:
            tasks = await call(
                self._catalog,
                lambda c: c.claim_due_enrichments(
                    self._clock(), lease_ms=CLAIM_LEASE_MS, limit=QUEUE_SIZE
                ),
            )
            if not tasks:
                return done
            for task in tasks:
                await self.enrich_one(task)
                done += 1

    async def run(self) -> None:
        """Rule 1: the scanner and its workers, until cancelled."""
        send, receive = trio.open_memory_channel[EnrichmentTask](QUEUE_SIZE)
        async with trio.open_nursery() as nursery:
            for _ in range(WORKERS):
                nursery.start_soon(self._worker, receive.clone())
            while True:
                try:
                    now = self._clock()
                    since = now - int(self._policy.reconcile_window_s * 1000)
                    await run(
                        self._catalog,
                        functools.partial(
                            self._catalog.sync.enqueue_enrichments, now, since_ms=since
                        ),
                    )
                    tasks = await call(
                        self._catalog,
                        lambda c: c.claim_due_enrichments(
                            self._clock(), lease_ms=CLAIM_LEASE_MS, limit=QUEUE_SIZE
                        ),
                    )
                except RecorderError as exc:
                    logger.warning("enrichment scan failed: %s", exc)
                    tasks = []
                for task in tasks:
                    # Blocks when the workers are behind: the channel is the bound.
                    await send.send(task)
                await trio.sleep(self._policy.enrich_interval_s)

    async def _worker(self, receive: trio.MemoryReceiveChannel[EnrichmentTask]) -> None:
        async with receive:
            async for task in receive:
                try:
                    await self.enrich_one(task)
                except RecorderError as exc:
                    # The catalog did not take the result: the claim lapses and it is retried.
                    logger.warning("enrichment result not stored: %s", exc)
