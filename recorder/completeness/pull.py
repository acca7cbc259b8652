"""The scheduled source of expectations: ``recorder completeness pull --since``.

``ZoomListing`` is the seam: what Zoom's list APIs (meetings, Contact Center engagements, phone
call logs) say started in a time range, as ``Announcement``s. The HTTP implementation belongs
with the Zoom REST client (``recorder.zoom``); tests use ``recorder.testing.zoom_fakes``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from recorder.catalog.aio import AsyncCatalog
from recorder.completeness.announcements import Announcement
from recorder.completeness.model import ExpectationSource, NewExpectation
from recorder.completeness.policy import initial_start_state, must_record
from recorder.completeness.store import run
from recorder.config import CompletenessConfig


class ZoomListing(Protocol):
    """Lists what started at Zoom. Raises ``recorder.errors.ZoomApiError`` on failure."""

    async def started_between(self, since_ms: int, until_ms: int) -> Sequence[Announcement]: ...


@dataclass(frozen=True, slots=True)
class PullSummary:
    listed: int
    matching: int
    added: int


def new_expectation(
    a: Announcement,
    source: ExpectationSource,
    now_ms: int,
    policy: CompletenessConfig,
    *,
    controller_present: bool,
) -> NewExpectation:
    return NewExpectation(
        product=a.product,
        instance_id=a.instance_id,
        target_id=a.target_id,
        source=source,
        event=a.event,
        expected_start_ms=a.started_ms,
        expected_end_ms=a.ended_ms,
        created_ms=now_ms,
        start_state=initial_start_state(policy, controller_present=controller_present),
        account_id=a.account_id,
        user_id=a.user_id,
        queue_id=a.queue_id,
        known=a.known,
    )


async def pull(
    catalog: AsyncCatalog,
    listing: ZoomListing,
    policy: CompletenessConfig,
    *,
    since_ms: int,
    until_ms: int,
    now_ms: int,
) -> PullSummary:
    """Record an expectation for every listed instance the policy says must be recorded.

    A pull never asks Zoom to start anything (what it lists may have ended long ago): its
    expectations are reconciled, not started."""
    listed = await listing.started_between(since_ms, until_ms)
    matching = [a for a in listed if must_record(policy, a)]
    added = 0
    for a in matching:
        new = new_expectation(a, ExpectationSource.PULL, now_ms, policy, controller_present=False)
        _, inserted = await run(catalog, functools.partial(catalog.sync.add_expectation, new))
        added += inserted
    return PullSummary(len(listed), len(matching), added)
