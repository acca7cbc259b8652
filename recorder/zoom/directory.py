"""The seams between Zoom's REST APIs and the rest of the recorder.

Two narrow ``Protocol``s: a directory that answers who and what a meeting, Contact Center
engagement or phone call was (enrichment), and a controller that asks Zoom to start, stop,
pause or resume RTMS. The HTTP implementations live in ``recorder.zoom``; the completeness
reconciler, the service and the tests depend only on these.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from recorder.products import Product


@dataclass(frozen=True, slots=True)
class MeetingInfo:
    """What Zoom says about a meeting or webinar (``GET /v2/meetings/{id}`` and friends)."""

    meeting_id: str
    topic: str | None
    host_id: str | None
    host_email: str | None
    account_id: str | None


@dataclass(frozen=True, slots=True)
class EngagementInfo:
    """What Zoom says about a Contact Center engagement."""

    engagement_id: str
    queue_id: str | None
    queue_name: str | None
    agent_id: str | None
    agent_name: str | None
    agent_email: str | None
    consumer_number: str | None
    #: ``inbound`` or ``outbound`` as Zoom names it.
    direction: str | None


@dataclass(frozen=True, slots=True)
class PhoneCallInfo:
    """What Zoom says about a Zoom Phone call."""

    call_id: str
    caller_number: str | None
    callee_number: str | None
    direction: str | None
    user_id: str | None


class ZoomDirectory(Protocol):
    """Looks things up at Zoom. Raises ``recorder.errors.ZoomApiError`` on failure."""

    async def meeting(self, meeting_id: str) -> MeetingInfo: ...

    async def engagement(self, engagement_id: str) -> EngagementInfo: ...

    async def phone_call(self, call_id: str) -> PhoneCallInfo: ...


class RtmsAction(enum.StrEnum):
    START = "start"
    STOP = "stop"
    PAUSE = "pause"
    RESUME = "resume"


class RtmsController(Protocol):
    """Asks Zoom to change a stream's RTMS state (``.../rtms_app/status``).

    ``target_id`` is the product's instance id (meeting id or uuid, engagement id, call id).
    Raises ``recorder.errors.ZoomApiError`` (carrying Zoom's code and message) on refusal.
    """

    async def change(self, product: Product, target_id: str, action: RtmsAction) -> None: ...
