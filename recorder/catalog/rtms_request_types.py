"""Rows and the catalog seam of RTMS control requests (``recorder rtms``; see
``recorder.catalog._rtms_requests`` for the rules)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from recorder.catalog.base import AuditEvent


@dataclass(frozen=True, slots=True)
class RtmsRequestRow:
    request_id: int
    product: str
    target_id: str
    action: str
    actor: str
    reason: str
    requested_ms: int
    #: ``pending`` (Zoom not answered yet), ``accepted`` or ``refused``.
    outcome: str
    #: Zoom's answer when refused (code and message; never a token).
    error: str | None
    #: The recording whose pause this request explains (pause requests only).
    matched_recording_id: str | None
    matched_ms: int | None
    #: Where its audit events went: the live recording of the instance, else ``product:id``.
    audit_target: str


class RtmsRequestCatalog(Protocol):
    """The blocking catalog calls of RTMS control requests (part of ``Catalog``)."""

    def add_rtms_request(
        self,
        *,
        product: str,
        target_id: str,
        action: str,
        actor: str,
        reason: str,
        now_ms: int,
        via: str | None = None,
    ) -> tuple[RtmsRequestRow, AuditEvent]: ...

    def finish_rtms_request(
        self, request_id: int, *, outcome: str, error: str | None, now_ms: int
    ) -> RtmsRequestRow: ...

    def match_pause_request(
        self,
        *,
        product: str,
        instance_ids: Sequence[str],
        recording_id: str,
        paused_ms: int,
        window_ms: int,
    ) -> RtmsRequestRow | None: ...

    def unconfirmed_pause_requests(
        self, *, product: str, instance_ids: Sequence[str], since_ms: int, before_ms: int
    ) -> list[RtmsRequestRow]: ...

    def rtms_requests(
        self, *, target_id: str | None = None, limit: int = 100
    ) -> list[RtmsRequestRow]: ...
