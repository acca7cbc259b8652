"""The catalog's vocabulary: the rows it returns, the facts it is given, and the ``Catalog`` seam.

Rules that hold for every engine behind ``Catalog``:

1. Every time is an integer of Unix milliseconds, UTC (``*_ms``). Nothing reads a clock here: the
   caller passes ``now_ms``, so both engines store identical values and tests need no sleeping.
2. Writes that the service may repeat (webhook retries, restarts, a second recorder process) are
   idempotent: adding the same segment, gap, pause or record twice leaves one row.
3. Evidence rows only move forward: an upload state never goes back from ``verified``, a stream
   state never goes back to an older webhook's state, a lease epoch never decreases.
4. A legal hold always wins (invariant 8): ``is_on_hold`` is what retention and key destruction ask.
5. Hold changes are audited in the same transaction as the change itself (invariant 9). The
   audit log is append-only in the database and hash-chained (``verify_audit_chain``).
6. Evidence writes may carry the writer's lease as a ``fence``; once another process has
   claimed the stream they are refused with ``LeaseLost`` and write nothing (invariant 3).

The protocol is synchronous (the engines are blocking DB-API drivers); the trio-facing
``AsyncCatalog`` in ``recorder.catalog.aio`` runs each call in a worker thread.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from recorder.catalog._textindex_api import TextIndexCatalog
from recorder.catalog.rtms_request_types import RtmsRequestCatalog
from recorder.catalog.scrub_types import PiiScrub
from recorder.completeness.model import CompletenessCatalog
from recorder.evidence_destruction import DestructionRecord
from recorder.products import Product as Product
from recorder.sink import SealedSegment

if TYPE_CHECKING:
    from recorder.catalog._workqueue import WorkClaim, WorkerLoad
    from recorder.catalog.retention_types import (
        HoldRuleRow,
        PersonalMacs,
        RetentionFacts,
        RetentionLockRow,
    )
    from recorder.catalog.search import RecordingQuery, SearchPage

#: JSON-compatible values allowed in audit details.
JsonValue = str | int | float | bool | None | Sequence["JsonValue"] | Mapping[str, "JsonValue"]


class StreamState(enum.StrEnum):
    #: ``rtms_started`` seen (or a failover ``rtms_started``): the stream should be recorded.
    STARTED = "started"
    #: ``rtms_interrupted`` seen: still live, the owner is reconnecting.
    INTERRUPTED = "interrupted"
    #: ``rtms_stopped`` seen, or the media said the stream ended: nothing to rejoin.
    STOPPED = "stopped"


#: States in which a stream is still live, so a restarted or standby recorder should rejoin it.
LIVE_STREAM_STATES: tuple[StreamState, ...] = (StreamState.STARTED, StreamState.INTERRUPTED)


class RecordingStatus(enum.StrEnum):
    ACTIVE = "active"
    #: Ended normally (host stopped, meeting ended, call finished).
    COMPLETE = "complete"
    #: Ended abnormally; the recording may hold gaps up to its end.
    INCOMPLETE = "incomplete"
    #: RTMS revoked the stream (STREAM_REVOKED): assets must go unless a hold applies.
    REVOKED = "revoked"


class UploadState(enum.StrEnum):
    """Ordered: a row only ever moves to the right."""

    PENDING = "pending"
    UPLOADED = "uploaded"
    VERIFIED = "verified"


class EvidenceKind(enum.StrEnum):
    SEGMENT = "segment"  #: an audio segment (``segments`` table)
    RECORD = "record"  #: a transcript / chat / event record file (``records`` table)


class HoldScope(enum.StrEnum):
    RECORDING = "recording"  #: one recording (one stream of one instance)
    INSTANCE = "instance"  #: every recording of a meeting / webinar / session / engagement


# --- leases ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof of ownership of one ``rtms_stream_id``.

    ``epoch`` is the fencing token: it grows by one on every successful claim of the stream, so
    anything done under an older epoch can be recognised as stale.
    """

    rtms_stream_id: str
    owner: str
    epoch: int
    ttl_ms: int
    expires_ms: int
    #: The RTMS time (ms) the stream's lease row held as its last durable capture checkpoint
    #: when this lease was claimed: where the previous owner's recording provably reached, so
    #: a takeover's ``recorder_restart`` gap starts there (``None``: no checkpoint was kept).
    previous_checkpoint_ms: int | None = None


@dataclass(frozen=True, slots=True)
class RenewResult:
    """What ``renew_many`` did: leases now extended, and leases another owner has taken."""

    renewed: tuple[Lease, ...]
    lost: tuple[Lease, ...]


# --- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """What a start / interrupted / stopped webhook says about one stream."""

    rtms_stream_id: str
    product: Product
    #: ``meeting_uuid``, ``webinar_uuid``, ``session_id`` or ``engagement_id``.
    instance_id: str
    state: StreamState
    #: Webhook ``event_ts``: Zoom's clock, used to ignore older, re-delivered webhooks.
    event_ts_ms: int
    #: Empty when the webhook carries none (``rtms_interrupted``): the stored URLs are kept.
    server_urls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RecordingStart:
    """The facts known when a recording begins (from ``rtms_started``)."""

    rtms_stream_id: str
    product: Product
    instance_id: str
    started_ms: int
    operator_id: str | None = None
    account_id: str | None = None
    #: The numeric meeting / webinar id when the webhook has one (not the uuid).
    meeting_number: str | None = None


@dataclass(frozen=True, slots=True)
class ParticipantInfo:
    user_id: str
    user_name: str | None = None
    #: ``host``, ``caller``, ``callee``, ``agent``... when RTMS says.
    role: str | None = None
    first_seen_ms: int | None = None


@dataclass(frozen=True, slots=True)
class NewSegment:
    """One sealed audio segment, as the capture pipeline hands it to the catalog."""

    recording_id: str
    track: str
    segment_index: int
    #: Where the sealed object lives (or will live) in the object store.
    object_key: str
    plaintext_sha256: str
    plaintext_size: int
    stored_size: int
    #: RTMS-timeline range covered, Unix ms, end exclusive.
    start_ms: int
    end_ms: int
    #: Sample range covered in the WAV (``start_sample`` .. ``start_sample + sample_count``).
    start_sample: int
    sample_count: int
    sample_rate: int
    codec: str
    key_id: str
    retain_until_ms: int | None = None
    participant_id: str | None = None
    recovered: bool = False
    #: SHA-256 of the stored (encrypted) object, when the sealer already knows it.
    stored_sha256: str | None = None

    @classmethod
    def from_sealed(
        cls,
        sealed: SealedSegment,
        *,
        object_key: str,
        start_ms: int,
        end_ms: int,
        start_sample: int,
        sample_count: int,
        sample_rate: int,
        codec: str,
        retain_until_ms: int | None = None,
        participant_id: str | None = None,
        stored_sha256: str | None = None,
    ) -> NewSegment:
        identity = sealed.identity
        return cls(
            recording_id=identity.recording_id,
            track=identity.track,
            segment_index=identity.segment_index,
            object_key=object_key,
            plaintext_sha256=sealed.sha256,
            plaintext_size=sealed.plaintext_size,
            stored_size=sealed.stored_size,
            start_ms=start_ms,
            end_ms=end_ms,
            start_sample=start_sample,
            sample_count=sample_count,
            sample_rate=sample_rate,
            codec=codec,
            key_id=sealed.key_id,
            retain_until_ms=retain_until_ms,
            participant_id=participant_id,
            recovered=sealed.recovered,
            stored_sha256=stored_sha256 or sealed.stored_sha256,
        )


@dataclass(frozen=True, slots=True)
class NewRecordFile:
    """One sealed transcript / chat / event record file (JSON lines)."""

    recording_id: str
    #: ``transcript``, ``chat`` or ``events``.
    kind: str
    record_index: int
    object_key: str
    plaintext_sha256: str
    plaintext_size: int
    stored_size: int
    start_ms: int
    end_ms: int
    key_id: str
    retain_until_ms: int | None = None
    recovered: bool = False
    stored_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class EvidenceRef:
    """Names one segment (``name`` = track) or one record file (``name`` = record kind)."""

    kind: EvidenceKind
    recording_id: str
    name: str
    index: int


# --- rows ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamRow:
    rtms_stream_id: str
    #: ``None`` until a webhook named it (a claim may come first, from another process).
    product: Product | None
    instance_id: str | None
    state: StreamState
    server_urls: tuple[str, ...]
    lease_owner: str | None
    lease_expires_ms: int | None
    lease_epoch: int
    first_seen_ms: int
    last_event_ts_ms: int
    #: ``event_ts`` of the newest webhook that carried ``server_urls`` (an ``rtms_started``):
    #: a failover is a newer one of these, never merely a newer ``last_event_ts_ms``.
    server_urls_ts_ms: int = 0
    #: The owner's last durable capture checkpoint (RTMS ms), stored with each lease renew.
    lease_checkpoint_ms: int | None = None


@dataclass(frozen=True, slots=True)
class RecordingRow:
    recording_id: str
    rtms_stream_id: str
    product: Product
    instance_id: str
    operator_id: str | None
    account_id: str | None
    meeting_number: str | None
    cc_queue_id: str | None
    cc_queue_name: str | None
    cc_agent_id: str | None
    cc_agent_name: str | None
    started_ms: int
    ended_ms: int | None
    end_reason: str | None
    status: RecordingStatus


@dataclass(frozen=True, slots=True)
class ParticipantRow:
    recording_id: str
    user_id: str
    user_name: str | None
    role: str | None
    first_seen_ms: int | None


@dataclass(frozen=True, slots=True)
class SegmentRow:
    recording_id: str
    track: str
    segment_index: int
    participant_id: str | None
    object_key: str
    version_id: str | None
    plaintext_sha256: str
    stored_sha256: str | None
    plaintext_size: int
    stored_size: int
    start_ms: int
    end_ms: int
    start_sample: int
    sample_count: int
    sample_rate: int
    codec: str
    key_id: str
    retain_until_ms: int | None
    upload_state: UploadState
    recovered: bool
    uploaded_ms: int | None
    verified_ms: int | None


@dataclass(frozen=True, slots=True)
class RecordFileRow:
    recording_id: str
    kind: str
    record_index: int
    object_key: str
    version_id: str | None
    plaintext_sha256: str
    stored_sha256: str | None
    plaintext_size: int
    stored_size: int
    start_ms: int
    end_ms: int
    key_id: str
    retain_until_ms: int | None
    upload_state: UploadState
    recovered: bool
    uploaded_ms: int | None
    verified_ms: int | None


@dataclass(frozen=True, slots=True)
class GapRow:
    recording_id: str
    track: str
    start_ms: int
    end_ms: int
    #: Sample range in the WAV timeline, when the gap falls inside a written segment.
    start_sample: int | None
    end_sample: int | None
    cause: str
    detail: str


@dataclass(frozen=True, slots=True)
class PauseRow:
    recording_id: str
    start_ms: int
    #: ``None`` while the pause is still open.
    end_ms: int | None
    actor: str | None


@dataclass(frozen=True, slots=True)
class LegalHoldRow:
    hold_id: int
    matter: str
    scope: HoldScope
    #: A ``recording_id`` or an ``instance_id``, per ``scope``.
    scope_value: str
    placed_by: str
    reason: str
    placed_ms: int
    released_by: str | None
    released_reason: str | None
    released_ms: int | None

    @property
    def active(self) -> bool:
        return self.released_ms is None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    audit_id: int
    at_ms: int
    actor: str
    action: str
    target: str
    reason: str
    #: Canonical JSON text (sorted keys): what was stored, byte for byte.
    details_json: str
    #: SHA-256 hex chaining this event to the one before it (``audit_chain_hash``).
    row_hash: str


@dataclass(frozen=True, slots=True)
class AuditChainCheck:
    """What ``verify_audit_chain`` found: the first event whose hash or link is wrong."""

    events_checked: int
    first_broken_id: int | None

    @property
    def intact(self) -> bool:
        return self.first_broken_id is None


@dataclass(frozen=True, slots=True)
class VerificationRun:
    """One ``recorder verify`` result for one recording (the ``verification_runs`` table)."""

    recording_id: str
    verified_ms: int
    ok: bool
    #: Failure classes found (``recorder.officer.verify_run.Failure`` values), empty when ok.
    failures: tuple[str, ...]
    #: Canonical JSON of the findings, each naming its object and what was wrong.
    detail: str


@dataclass(frozen=True, slots=True)
class NewLifecycleEvent:
    """A verified lifecycle webhook (``rtms.start_failed``, ``rtms.concurrency_*``), whole."""

    #: Retries of one delivery share it (``recorder.rtms.webhook.dedup_key``): stored once.
    dedup_key: str
    #: The event name, e.g. ``rtms.start_failed``.
    event: str
    #: ``start_failed`` or ``concurrency`` (``WebhookKind``).
    kind: str
    #: A recording did not happen because of it (start failed, concurrency limit reached), as
    #: opposed to a warning (``rtms.concurrency_near_limit``).
    failed: bool
    product: Product | None
    event_ts_ms: int | None
    received_ms: int
    rtms_stream_id: str | None
    #: The first instance id present (meeting_uuid, engagement_id, call_id, ...).
    instance_id: str | None
    #: Every id field the event named, as sent.
    ids: Mapping[str, str]
    reason: str | None
    #: The body exactly as signed (UTF-8 JSON text).
    body: str


@dataclass(frozen=True, slots=True)
class LifecycleEventRow:
    event_id: int
    event: str
    kind: str
    failed: bool
    product: Product | None
    event_ts_ms: int | None
    received_ms: int
    rtms_stream_id: str | None
    instance_id: str | None
    #: Canonical JSON of the id fields the event named.
    ids_json: str
    reason: str | None
    body: str
    #: The recording it belongs to (by stream id, else the newest of its instance), if any.
    recording_id: str | None
    #: A stream or instance the catalog knows matches it (even without a recording).
    stream_known: bool

    @property
    def orphan(self) -> bool:
        """Names nothing the catalog knows: a stream that was expected and never reached us."""
        return self.recording_id is None and not self.stream_known


@dataclass(frozen=True, slots=True)
class RecordingDetail:
    """Everything an officer sees for one recording (``recorder show``)."""

    recording: RecordingRow
    participants: tuple[ParticipantRow, ...] = ()
    segments: tuple[SegmentRow, ...] = ()
    gaps: tuple[GapRow, ...] = ()
    pauses: tuple[PauseRow, ...] = ()
    records: tuple[RecordFileRow, ...] = ()
    holds: tuple[LegalHoldRow, ...] = field(default=())
    #: ``rtms.start_failed`` and concurrency events naming this recording's stream or instance.
    lifecycle_events: tuple[LifecycleEventRow, ...] = ()

    @property
    def on_hold(self) -> bool:
        return any(hold.active for hold in self.holds)


@dataclass(frozen=True, slots=True)
class RecordingKeyRow:
    """One recording key as the catalog holds it: wrapped (never plain), or its tombstone."""

    rk_id: str
    recording_id: str
    kek_key_id: str
    #: The key wrapped under ``kek_key_id``; ``None`` once destroyed (the row is a tombstone).
    wrapped: bytes | None = field(repr=False)
    created_ms: int
    rewrapped_ms: int | None = None
    destroyed_ms: int | None = None
    destroy_reason: str | None = None

    @property
    def destroyed(self) -> bool:
        return self.destroyed_ms is not None


@dataclass(frozen=True, slots=True)
class KekUsage:
    """How many recording keys one KEK wraps (``recorder keys status``)."""

    kek_key_id: str
    live: int
    destroyed: int


# --- the seam --------------------------------------------------------------------------------


class Catalog(RtmsRequestCatalog, CompletenessCatalog, TextIndexCatalog, Protocol):
    """Blocking catalog API. Every method is one transaction; errors are ``CatalogError``."""

    def close(self) -> None: ...

    def schema_version(self) -> int: ...

    # streams and leases
    def upsert_stream(self, event: StreamEvent, now_ms: int) -> StreamRow: ...

    def get_stream(self, rtms_stream_id: str) -> StreamRow | None: ...

    def try_claim(
        self, rtms_stream_id: str, owner: str, ttl_ms: int, now_ms: int | None = None
    ) -> Lease | None:
        """Take the stream's lease if it is free, expired or already ``owner``'s.

        Lease times are the database's clock when ``now_ms`` is ``None`` (the service's case).

        Returns ``None`` when someone else holds a live lease. The stream row is created when
        missing (``product`` and ``instance_id`` unknown until a webhook names them).
        """
        ...

    def renew(
        self, lease: Lease, now_ms: int | None = None, *, checkpoint_ms: int | None = None
    ) -> Lease:
        """Extend ``lease`` by its ttl and keep ``checkpoint_ms`` (the owner's last durable
        capture checkpoint, RTMS ms; ``None`` leaves the stored one) in the lease row. Raises
        ``LeaseLost`` if another claim happened since."""
        ...

    def renew_many(self, leases: Sequence[Lease], now_ms: int | None = None) -> RenewResult:
        """Renew every lease in one transaction; lost ones are reported, not raised."""
        ...

    def release(self, lease: Lease) -> bool:
        """Hand the lease back; ``False`` if it was no longer ours (nothing changed then)."""
        ...

    def expired_streams_to_rejoin(self, now_ms: int | None = None) -> list[StreamRow]:
        """Live streams with URLs whose lease is free or expired: candidates for ``try_claim``."""
        ...

    def live_streams_owned_by(self, owner: str) -> list[StreamRow]: ...

    # webhook dedup
    def first_seen(self, key: str, now_ms: int, ttl_ms: int) -> bool:
        """True exactly once per ``key`` until it expires ``ttl_ms`` later (across processes)."""
        ...

    def forget(self, key: str) -> None:
        """Drop ``key`` so that the next delivery counts as first seen again."""
        ...

    def accept_webhook(self, key: str, now_ms: int, ttl_ms: int, event: StreamEvent | None) -> bool:
        """``first_seen`` and, when first seen, ``upsert_stream(event)``, in one transaction."""
        ...

    def database_now_ms(self) -> int:
        """The database's clock (Unix ms): the clock every lease is timed by."""
        ...

    # recordings
    def upsert_recording(self, start: RecordingStart, now_ms: int) -> RecordingRow: ...

    def start_recording(
        self, start: RecordingStart, now_ms: int
    ) -> tuple[RecordingRow, list[LegalHoldRow]]:
        """``upsert_recording`` and ``join_hold_rules`` in one transaction (an engagement's
        start): the recording row and the holds its matching rules place."""
        ...

    def recording_for_stream(self, rtms_stream_id: str) -> RecordingRow | None: ...

    def add_participants(
        self, recording_id: str, participants: Sequence[ParticipantInfo]
    ) -> None: ...

    def set_contact_center(
        self,
        recording_id: str,
        *,
        queue_id: str | None = None,
        queue_name: str | None = None,
        agent_id: str | None = None,
        agent_name: str | None = None,
    ) -> None: ...

    # Evidence writes take an optional ``fence``: the writer's lease. With it, the write is
    # refused with ``LeaseLost`` (and nothing is written) once another process has claimed the
    # stream, so a stalled old owner cannot add evidence after a takeover.
    def end_recording(
        self,
        recording_id: str,
        *,
        ended_ms: int,
        reason: str,
        status: RecordingStatus,
        fence: Lease | None = None,
    ) -> RecordingRow: ...

    # evidence
    def add_segment(
        self, segment: NewSegment, now_ms: int, *, fence: Lease | None = None
    ) -> SegmentRow: ...

    def add_record_file(
        self, record: NewRecordFile, now_ms: int, *, fence: Lease | None = None
    ) -> RecordFileRow: ...

    def mark_uploaded(
        self,
        ref: EvidenceRef,
        *,
        object_key: str,
        version_id: str | None,
        stored_sha256: str,
        now_ms: int,
    ) -> None: ...

    def mark_verified(self, ref: EvidenceRef, now_ms: int) -> None: ...

    def add_gap(
        self,
        recording_id: str,
        track: str,
        *,
        start_ms: int,
        end_ms: int,
        cause: str,
        start_sample: int | None = None,
        end_sample: int | None = None,
        detail: str = "",
        fence: Lease | None = None,
    ) -> None: ...

    def add_pause(
        self,
        recording_id: str,
        *,
        start_ms: int,
        end_ms: int | None,
        actor: str | None,
        fence: Lease | None = None,
    ) -> None: ...

    # holds and audit
    def place_hold(
        self,
        *,
        matter: str,
        scope: HoldScope,
        scope_value: str,
        placed_by: str,
        reason: str,
        now_ms: int,
    ) -> LegalHoldRow: ...

    def release_hold(
        self, hold_id: int, *, released_by: str, reason: str, now_ms: int
    ) -> LegalHoldRow: ...

    def is_on_hold(self, recording_id: str) -> bool:
        """Raises ``CatalogError`` for an unknown recording (fails closed)."""
        ...

    def is_instance_on_hold(self, instance_id: str) -> bool: ...

    def is_key_on_hold(self, key_id: str) -> bool:
        """Any held segment or record file sealed under ``key_id``: the key must not go."""
        ...

    def holds(self, *, active_only: bool = True) -> list[LegalHoldRow]: ...

    def append_audit(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        reason: str,
        now_ms: int,
        details: Mapping[str, JsonValue] | None = None,
    ) -> AuditEvent: ...

    def audit_trail(self, target: str) -> list[AuditEvent]: ...

    def verify_audit_chain(self) -> AuditChainCheck:
        """Recompute the audit log's hash chain from the first event to the last."""
        ...

    # officers
    def search(
        self,
        *,
        product: Product | None = None,
        instance_id: str | None = None,
        stream_id: str | None = None,
        participant: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 100,
    ) -> list[RecordingRow]: ...

    def show(self, recording_id: str) -> RecordingDetail | None: ...

    def search_recordings(self, query: RecordingQuery) -> SearchPage:
        """One page of ``recorder.catalog.search.RecordingQuery`` results, newest first."""
        ...

    # lifecycle evidence
    def record_verification(self, run: VerificationRun) -> None:
        """Append one verification result (append-only; ``show`` reads the newest)."""
        ...

    def last_verification(self, recording_id: str) -> VerificationRun | None: ...

    def add_lifecycle_event(self, event: NewLifecycleEvent) -> tuple[LifecycleEventRow, bool]:
        """Store ``event`` once per ``dedup_key``; True when it was new (False: a retry)."""
        ...

    def lifecycle_events(
        self,
        *,
        failed_only: bool = False,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 100,
    ) -> list[LifecycleEventRow]:
        """Newest first; ``failed_only``: start failures and refusals for concurrency, not the
        near-limit warnings."""
        ...

    # recording keys (wrapped only) and destruction records
    def put_recording_key(self, row: RecordingKeyRow) -> None:
        """Store a wrapped recording key, committed on return. Idempotent for the same row.

        Raises ``KeyDestroyed`` when the recording was shredded (its tombstone refuses new keys).
        """
        ...

    def get_recording_key(self, rk_id: str) -> RecordingKeyRow | None: ...

    def recording_keys_of(self, recording_id: str) -> list[RecordingKeyRow]: ...

    def recording_key_tombstone(self, recording_id: str) -> tuple[int, str] | None:
        """``(destroyed_ms, reason)`` when the recording's keys were destroyed."""
        ...

    def destroy_recording_keys(self, recording_id: str, *, reason: str, now_ms: int) -> list[str]:
        """Tombstone the recording and every key of it (one transaction); returns their ids."""
        ...

    def kek_usage(self) -> list[KekUsage]: ...

    def recording_keys_not_under(
        self, kek_key_id: str, *, after_rk_id: str = "", limit: int = 100
    ) -> list[RecordingKeyRow]:
        """Live keys wrapped under any other KEK, in ``rk_id`` order after ``after_rk_id``."""
        ...

    def rewrap_recording_key(
        self, rk_id: str, *, old_kek_key_id: str, new_kek_key_id: str, wrapped: bytes, now_ms: int
    ) -> bool:
        """Replace the wrapping if the key is still live under ``old_kek_key_id``."""
        ...

    def add_destruction_record(self, record: DestructionRecord) -> None: ...

    def destruction_records(self, recording_id: str | None = None) -> list[DestructionRecord]:
        """Oldest first; raises ``IntegrityError`` when a stored record's digest does not match."""
        ...

    # personal data scrubbed at destruction (recorder.catalog._scrub)
    def scrub_pending(self, *, now_ms: int, actor: str) -> tuple[list[str], list[str]]:
        """Scrub destroyed recordings not scrubbed yet: (scrubbed now, still under a hold)."""
        ...

    def pii_scrub(self, recording_id: str) -> PiiScrub | None: ...

    # retention, hold rules, destruction records (recorder.catalog._retention)
    def set_recording_policy(
        self, recording_id: str, *, name: str, sha256: str, retain_days: int, now_ms: int
    ) -> tuple[str, str, int]: ...

    def recording_policy(self, recording_id: str) -> tuple[str, str, int] | None: ...

    def retention_inventory(self) -> list[RetentionFacts]: ...

    def record_account_event(
        self, account_id: str, event: str, *, at_ms: int, recorded_by: str, now_ms: int
    ) -> None: ...

    def acquire_retention_lock(
        self,
        *,
        holder: str,
        host: str,
        pid: int,
        ttl_ms: int,
        now_ms: int,
        replace_holder: str | None = None,
    ) -> bool: ...

    def release_retention_lock(self, holder: str) -> bool: ...

    def retention_lock(self) -> RetentionLockRow | None: ...

    def add_hold_rule(
        self,
        *,
        matter: str,
        rule: Mapping[str, str],
        placed_by: str,
        reason: str,
        now_ms: int,
        personal_macs: PersonalMacs | None = None,
    ) -> HoldRuleRow: ...

    def release_hold_rule(
        self, rule_id: int, *, released_by: str, reason: str, now_ms: int
    ) -> HoldRuleRow: ...

    def hold_rules(self, *, active_only: bool = True) -> list[HoldRuleRow]: ...

    def join_hold_rules(self, recording_id: str, now_ms: int) -> list[LegalHoldRow]: ...

    def audit_events(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        after_id: int = 0,
        limit: int = 1_000,
    ) -> list[AuditEvent]: ...

    # the fleet work queue (recorder.catalog._workqueue)
    def claim_work(
        self,
        owner: str,
        capacity: int,
        active: int,
        ttl_ms: int,
        *,
        grace_ms: int,
        exclude: Sequence[str] = (),
        max_batch: int = ...,
        now_ms: int | None = None,
    ) -> WorkClaim:
        """Heartbeat ``owner`` and lease it its fair share of the streams nobody records."""
        ...

    def waiting_work(self, exclude: Sequence[str] = (), now_ms: int | None = None) -> int: ...

    def owned_streams_changed(self, owner: str, since_event_ts_ms: int) -> list[StreamRow]: ...

    def heartbeat_worker(
        self, owner: str, capacity: int, ttl_ms: int, now_ms: int | None = None
    ) -> None: ...

    def retire_worker(self, owner: str) -> bool: ...

    def live_workers(self, now_ms: int | None = None) -> list[WorkerLoad]: ...
