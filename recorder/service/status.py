"""What an engagement is started from (``EngagementSpec``) and what it reports as it runs
(``EngagementStatus``): shared by the engagement, its stream observer and the supervisor."""

from __future__ import annotations

from dataclasses import dataclass, field

from recorder.rtms.events import StreamEnded
from recorder.rtms.webhook import Product


@dataclass(frozen=True, slots=True)
class EngagementSpec:
    """What a ``*.rtms_started`` webhook (or the catalog, on a takeover) says about a stream."""

    product: Product
    instance_id: str
    rtms_stream_id: str
    server_urls: tuple[str, ...]
    event_ts_ms: int
    operator_id: str | None = None
    account_id: str | None = None


@dataclass(slots=True)
class EngagementStatus:
    """Live figures of one engagement, for the demo's progress line and for tests."""

    recording_id: str | None = None
    segments_sealed: int = 0
    seconds_captured: float = 0.0
    gap_seconds: dict[str, float] = field(default_factory=dict)
    interruptions: int = 0
    #: Frames the RTMS client could not parse (counted, dropped, never fatal).
    frames_malformed: int = 0
    ended: StreamEnded | None = None
    outcome: str | None = None
    error: str | None = None
    #: The lease was taken over, or this process fenced itself (``LeaseExpired``).
    lease_lost: bool = False
