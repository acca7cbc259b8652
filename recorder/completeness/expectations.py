"""The ingress side: a verified announcing webhook becomes an expectation in the catalog before
Zoom gets its 200 (the outbox pattern of ``recorder.service.outbox``).

Rule 1: the expectation row (and its pending enrichment) is committed in one transaction before
the answer; a failed commit raises, and the ingress answers 503 so that Zoom retries.
Rule 2: the wake-up of the auto-starter that follows is only a hint: the auto-starter also polls
the catalog for pending starts, so a full channel or a crash loses nothing.
Rule 3: an announcement the policy does not match stores nothing (and is still answered 200).
Rule 4: an ending event sets the expected end of its expectation, or, when its start was never
announced, records the expectation (never auto-started: the instance is over).
"""

from __future__ import annotations

import logging

import trio

from recorder.catalog.aio import AsyncCatalog
from recorder.completeness.announcements import parse_announcement
from recorder.completeness.model import ExpectationSource
from recorder.completeness.policy import must_record
from recorder.completeness.pull import new_expectation
from recorder.completeness.store import call
from recorder.config import CompletenessConfig
from recorder.rtms.webhook import WebhookEvent

logger = logging.getLogger(__name__)


class CatalogExpectations:
    """The ingress's ``AnnouncementSink``: matching announcements become expectations."""

    def __init__(
        self,
        catalog: AsyncCatalog,
        policy: CompletenessConfig,
        *,
        controller_present: bool,
        wake: trio.MemorySendChannel[int] | None = None,
    ) -> None:
        self._catalog = catalog
        self._policy = policy
        self._controller_present = controller_present
        self._wake = wake

    async def record(self, event: WebhookEvent, raw_body: bytes, received_s: float) -> bool:
        """True when a new expectation was stored. Raises ``WebhookPayloadError`` for an
        announcement without its instance id, ``RecorderError`` when the catalog failed."""
        now_ms = int(received_s * 1000)
        announcement = parse_announcement(event, now_ms)
        if not must_record(self._policy, announcement):
            logger.info(
                "announcement not expected by policy",
                extra={"event": event.event, "product": announcement.product.value},
            )
            return False
        new = new_expectation(
            announcement,
            ExpectationSource.WEBHOOK,
            now_ms,
            self._policy,
            # An instance that already ended is reconciled, never started.
            controller_present=self._controller_present and announcement.ended_ms is None,
        )
        row, inserted = await call(self._catalog, lambda c: c.add_expectation(new))
        logger.info(
            "expectation recorded" if inserted else "expectation already recorded",
            extra={
                "event": event.event,
                "instance_id": announcement.instance_id,
                "start_state": row.start_state.value,
            },
        )
        if inserted and self._wake is not None:
            try:
                self._wake.send_nowait(row.expectation_id)
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                logger.info("auto-start wake-up not delivered: left to its poll")
        return inserted
