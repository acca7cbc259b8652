"""In-memory Zoom REST seams for tests: ``ZoomDirectory``, ``RtmsController``, ``ZoomListing``.

Each records what it was asked and answers from what the test put in; ``fail_next`` queues
``ZoomApiError``s to raise first (one per call), so retries and refusals can be driven exactly.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import trio

from recorder.completeness.announcements import Announcement
from recorder.errors import ZoomApiError
from recorder.products import Product
from recorder.zoom.directory import (
    EngagementInfo,
    MeetingInfo,
    PhoneCallInfo,
    RtmsAction,
)

_V = TypeVar("_V")


@dataclass
class _Failing:
    fail_next: deque[ZoomApiError] = field(default_factory=deque)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    called: trio.Event = field(default_factory=trio.Event)

    def _enter(self, *call: str) -> None:
        self.calls.append(call)
        self.called.set()
        self.called = trio.Event()
        if self.fail_next:
            raise self.fail_next.popleft()


@dataclass
class MemoryDirectory(_Failing):
    meetings: dict[str, MeetingInfo] = field(default_factory=dict)
    engagements: dict[str, EngagementInfo] = field(default_factory=dict)
    phone_calls: dict[str, PhoneCallInfo] = field(default_factory=dict)

    @staticmethod
    def _found(table: dict[str, _V], key: str, what: str) -> _V:
        try:
            return table[key]
        except KeyError:
            raise ZoomApiError(f"{what} does not exist", status=404, code=3001) from None

    async def meeting(self, meeting_id: str) -> MeetingInfo:
        self._enter("meeting", meeting_id)
        return self._found(self.meetings, meeting_id, "meeting")

    async def engagement(self, engagement_id: str) -> EngagementInfo:
        self._enter("engagement", engagement_id)
        return self._found(self.engagements, engagement_id, "engagement")

    async def phone_call(self, call_id: str) -> PhoneCallInfo:
        self._enter("phone_call", call_id)
        return self._found(self.phone_calls, call_id, "call")


@dataclass
class MemoryController(_Failing):
    """Every change that did not fail is in ``changed``."""

    changed: list[tuple[Product, str, RtmsAction]] = field(default_factory=list)

    async def change(self, product: Product, target_id: str, action: RtmsAction) -> None:
        self._enter(product.value, target_id, action.value)
        self.changed.append((product, target_id, action))


@dataclass
class MemoryListing(_Failing):
    started: list[Announcement] = field(default_factory=list)

    async def started_between(self, since_ms: int, until_ms: int) -> Sequence[Announcement]:
        self._enter("started_between", str(since_ms), str(until_ms))
        return [a for a in self.started if since_ms <= a.started_ms < until_ms]
