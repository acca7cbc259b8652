"""Rows of the completeness tables (catalog migration 14) and the catalog seam that stores them.

No I/O and no catalog import here: the catalog's query mixin (``recorder.catalog._completeness``)
builds these rows, and ``recorder.catalog.base.Catalog`` includes ``CompletenessCatalog``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from recorder.products import Product


class ExpectationSource(enum.StrEnum):
    #: A verified webhook announced it (``meeting.started``, ...).
    WEBHOOK = "webhook"
    #: ``recorder completeness pull`` listed it at Zoom.
    PULL = "pull"


class StartState(enum.StrEnum):
    """Auto-start of an expectation's RTMS stream (``RtmsController.change(..., START)``)."""

    #: Auto-start is off (no controller, or the policy does not ask for it).
    OFF = "off"
    #: To be requested.
    PENDING = "pending"
    #: Claimed by one process, request in flight (reclaimed when stale).
    REQUESTING = "requesting"
    #: Zoom accepted the start request.
    REQUESTED = "requested"
    #: Zoom refused it, or every attempt failed: ``start_error_*`` say why.
    FAILED = "failed"
    #: A stream of the instance was already known when the start was due: not asked for.
    NOT_NEEDED = "not_needed"


class FindingKind(enum.StrEnum):
    MISSING = "missing"
    INCOMPLETE = "incomplete"


class FindingCause(enum.StrEnum):
    #: Zoom sent ``rtms.start_failed`` naming the instance.
    START_FAILED = "rtms.start_failed"
    #: Our start request was refused by Zoom (its code is in the detail).
    START_REFUSED = "start_refused"
    #: No recording, and nothing says why.
    NEVER_STARTED = "never_started"
    STARTED_LATE = "started_late"
    ENDED_EARLY = "ended_early"
    LARGE_GAPS = "large_gaps"


@dataclass(frozen=True, slots=True)
class NewExpectation:
    product: Product
    #: The id recordings carry (meeting/webinar uuid, engagement id, call id).
    instance_id: str
    #: The id Zoom's REST APIs take (meeting number; engagement and call ids as above).
    target_id: str
    source: ExpectationSource
    event: str
    expected_start_ms: int
    created_ms: int
    start_state: StartState
    account_id: str | None = None
    user_id: str | None = None
    queue_id: str | None = None
    expected_end_ms: int | None = None
    #: Enrichment the announcement itself carried (stored with the pending enrichment row).
    known: EnrichmentFields | None = None


@dataclass(frozen=True, slots=True)
class ExpectationRow:
    expectation_id: int
    product: Product
    instance_id: str
    target_id: str
    source: ExpectationSource
    event: str
    account_id: str | None
    user_id: str | None
    queue_id: str | None
    expected_start_ms: int
    expected_end_ms: int | None
    created_ms: int
    start_state: StartState
    start_attempts: int
    start_error_status: int | None
    start_error_code: int | None
    start_error: str | None


@dataclass(frozen=True, slots=True)
class RecordingFacts:
    """What the reconciler needs of one recording of an expected instance."""

    recording_id: str
    started_ms: int
    ended_ms: int | None
    #: The longest single gap of any track, ms (gaps of different tracks overlap in time).
    longest_gap_ms: int


@dataclass(frozen=True, slots=True)
class ReconcileInputs:
    expectation: ExpectationRow
    recordings: tuple[RecordingFacts, ...]
    #: Reasons of ``rtms.start_failed`` events naming the instance (None: no reason given).
    start_failures: tuple[str | None, ...]


@dataclass(frozen=True, slots=True)
class FindingRow:
    expectation_id: int
    product: Product
    instance_id: str
    kind: FindingKind
    cause: FindingCause
    detail: str
    recording_id: str | None
    first_found_ms: int
    updated_ms: int
    #: Set when a later reconcile found the expectation met (the row is kept as history).
    resolved_ms: int | None


class EnrichmentState(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    #: Gave up after the configured attempts; ``recorder enrich --retry`` makes it pending again.
    FAILED = "failed"
    #: Every recording of the instance was destroyed: its personal fields were erased and the
    #: row is final (migration 17's trigger); a pending lookup is cancelled, a late answer dropped.
    SCRUBBED = "scrubbed"


@dataclass(frozen=True, slots=True)
class EnrichmentFields:
    """What Zoom's directory said; every field optional (Zoom may not know it)."""

    topic: str | None = None
    host_id: str | None = None
    host_email: str | None = None
    queue_id: str | None = None
    queue_name: str | None = None
    agent_id: str | None = None
    agent_name: str | None = None
    agent_email: str | None = None
    consumer_number: str | None = None
    direction: str | None = None
    caller_number: str | None = None
    callee_number: str | None = None


@dataclass(frozen=True, slots=True)
class EnrichmentTask:
    product: Product
    instance_id: str
    lookup_id: str
    attempts: int


@dataclass(frozen=True, slots=True)
class EnrichmentRow:
    product: Product
    instance_id: str
    lookup_id: str
    state: EnrichmentState
    attempts: int
    next_attempt_ms: int
    last_error: str | None
    fields: EnrichmentFields
    updated_ms: int


class CompletenessCatalog(Protocol):
    """The catalog calls of this package (``recorder.catalog._completeness``)."""

    def add_expectation(self, new: NewExpectation) -> tuple[ExpectationRow, bool]: ...

    def claim_expectation_starts(
        self, now_ms: int, *, stale_ms: int, limit: int
    ) -> list[ExpectationRow]: ...

    def set_start_result(
        self,
        expectation_id: int,
        now_ms: int,
        *,
        ok: bool,
        attempts: int,
        status: int | None = None,
        code: int | None = None,
        message: str | None = None,
    ) -> None: ...

    def expectations_between(
        self,
        since_ms: int,
        until_ms: int,
        *,
        limit: int,
        after: tuple[int, int] | None = None,
        unsettled_only: bool = False,
    ) -> list[ExpectationRow]: ...

    def reconcile_inputs(self, expectation_ids: Sequence[int]) -> list[ReconcileInputs]: ...

    def put_finding(
        self,
        expectation: ExpectationRow,
        verdict: tuple[FindingKind, FindingCause, str, str | None] | None,
        now_ms: int,
        *,
        settled: bool = False,
    ) -> None: ...

    def findings(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        include_resolved: bool = False,
        limit: int = 100,
    ) -> list[FindingRow]: ...

    def finding_counts(self) -> list[tuple[str, str, int]]: ...

    def findings_of_recording(self, recording_id: str) -> list[FindingRow]: ...

    def enqueue_enrichments(self, now_ms: int, *, since_ms: int | None = None) -> int: ...

    def claim_due_enrichments(
        self, now_ms: int, *, lease_ms: int, limit: int
    ) -> list[EnrichmentTask]: ...

    def store_enrichment(
        self, product: Product, instance_id: str, fields: EnrichmentFields, now_ms: int
    ) -> bool:
        """False: dropped, the instance's recordings were destroyed (its row is scrubbed)."""
        ...

    def enrichment_failed(
        self,
        product: Product,
        instance_id: str,
        error: str,
        now_ms: int,
        *,
        next_attempt_ms: int,
        give_up: bool,
    ) -> None: ...

    def retry_enrichments(self, now_ms: int) -> int: ...

    def enrichment_of(self, product: Product, instance_id: str) -> EnrichmentRow | None: ...


def normalise_number(text: str | None) -> str | None:
    """A phone number as stored and searched: a leading ``+`` kept, then its digits only
    (``+1 (555) 010-0199`` is ``+15550100199``); None when no digit is left."""
    if text is None:
        return None
    digits = "".join(ch for ch in text if ch.isascii() and ch.isdigit())
    if not digits:
        return None
    return ("+" if text.strip().startswith("+") else "") + digits
