"""The trio face of the catalog: the same calls as ``Catalog``, awaited, run in worker threads.

Rule: every call is one ``trio.to_thread.run_sync(..., limiter=...)`` hop around one blocking
catalog transaction, and nothing else. The hop is not abandoned on cancellation, so a write the
database has started is always finished (committed or rolled back) before the caller's
cancellation is delivered: the catalog never holds half of a call. Both engines sit behind the
same class, so the service cannot tell them apart.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Final, TypeVar

import trio

from recorder.catalog._core import SqlCatalog
from recorder.catalog._workqueue import WorkClaim, WorkerLoad
from recorder.catalog.base import (
    AuditChainCheck,
    AuditEvent,
    Catalog,
    EvidenceRef,
    HoldScope,
    JsonValue,
    KekUsage,
    Lease,
    LegalHoldRow,
    LifecycleEventRow,
    NewLifecycleEvent,
    NewRecordFile,
    NewSegment,
    ParticipantInfo,
    Product,
    RecordFileRow,
    RecordingDetail,
    RecordingKeyRow,
    RecordingRow,
    RecordingStart,
    RecordingStatus,
    RenewResult,
    SegmentRow,
    StreamEvent,
    StreamRow,
    VerificationRun,
)
from recorder.catalog.connect import open_catalog, open_configured_catalog
from recorder.catalog.postgres import DEFAULT_MAX_CONNECTIONS, PostgresCatalog
from recorder.catalog.retention_types import (
    HoldRuleRow,
    PersonalMacs,
    RetentionFacts,
    RetentionLockRow,
)
from recorder.catalog.rtms_request_types import RtmsRequestRow
from recorder.catalog.scrub_types import PiiScrub
from recorder.catalog.search import RecordingQuery, SearchPage
from recorder.config import CatalogConfig, Secret
from recorder.evidence_destruction import DestructionRecord

T = TypeVar("T")

#: Longest a shutdown waits for the catalog to close (an in-flight SQLite write finishing).
CLOSE_TIMEOUT_S: Final = 15.0
#: Zoom retries a webhook at +5, +20 and +60 minutes (rtms-protocol §8.3): keep keys past that.
DEFAULT_DEDUP_TTL_MS: Final = 3 * 60 * 60 * 1000


class AsyncCatalog:
    """Async wrapper over any ``Catalog``; owns it and closes it in ``aclose``."""

    def __init__(self, catalog: Catalog, *, limiter: trio.CapacityLimiter | None = None) -> None:
        if limiter is None:
            tokens = catalog.max_connections if isinstance(catalog, PostgresCatalog) else 1
            limiter = trio.CapacityLimiter(tokens)
        self.sync = catalog
        self._limiter = limiter

    def __repr__(self) -> str:
        return f"<AsyncCatalog {self.sync!r}>"

    async def _call(self, fn: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(fn, limiter=self._limiter)

    async def aclose(self) -> None:
        """Close the catalog; shielded (the owner may be cancelled) and bounded in time.

        Not behind the limiter: a close must not queue behind a stuck call. If it overruns
        ``CLOSE_TIMEOUT_S`` the worker thread is left to finish closing on its own.
        """
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S):
            await trio.to_thread.run_sync(self.sync.close, abandon_on_cancel=True)

    async def __aenter__(self) -> AsyncCatalog:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def schema_version(self) -> int:
        return await self._call(self.sync.schema_version)

    # streams and leases
    async def upsert_stream(self, event: StreamEvent, now_ms: int) -> StreamRow:
        return await self._call(functools.partial(self.sync.upsert_stream, event, now_ms))

    async def get_stream(self, rtms_stream_id: str) -> StreamRow | None:
        return await self._call(functools.partial(self.sync.get_stream, rtms_stream_id))

    async def try_claim(
        self, rtms_stream_id: str, owner: str, ttl_ms: int, now_ms: int | None = None
    ) -> Lease | None:
        return await self._call(
            functools.partial(self.sync.try_claim, rtms_stream_id, owner, ttl_ms, now_ms)
        )

    async def renew(
        self, lease: Lease, now_ms: int | None = None, *, checkpoint_ms: int | None = None
    ) -> Lease:
        return await self._call(
            functools.partial(self.sync.renew, lease, now_ms, checkpoint_ms=checkpoint_ms)
        )

    async def renew_many(self, leases: Sequence[Lease], now_ms: int | None = None) -> RenewResult:
        return await self._call(functools.partial(self.sync.renew_many, tuple(leases), now_ms))

    async def release(self, lease: Lease) -> bool:
        return await self._call(functools.partial(self.sync.release, lease))

    async def expired_streams_to_rejoin(self, now_ms: int | None = None) -> list[StreamRow]:
        return await self._call(functools.partial(self.sync.expired_streams_to_rejoin, now_ms))

    async def live_streams_owned_by(self, owner: str) -> list[StreamRow]:
        return await self._call(functools.partial(self.sync.live_streams_owned_by, owner))

    async def first_seen(self, key: str, now_ms: int, ttl_ms: int) -> bool:
        return await self._call(functools.partial(self.sync.first_seen, key, now_ms, ttl_ms))

    async def forget(self, key: str) -> None:
        await self._call(functools.partial(self.sync.forget, key))

    async def accept_webhook(
        self, key: str, now_ms: int, ttl_ms: int, event: StreamEvent | None
    ) -> bool:
        return await self._call(
            functools.partial(self.sync.accept_webhook, key, now_ms, ttl_ms, event)
        )

    async def database_now_ms(self) -> int:
        return await self._call(self.sync.database_now_ms)

    # the fleet work queue
    async def claim_work(
        self,
        owner: str,
        capacity: int,
        active: int,
        ttl_ms: int,
        *,
        grace_ms: int,
        exclude: Sequence[str] = (),
    ) -> WorkClaim:
        return await self._call(
            functools.partial(
                self.sync.claim_work,
                owner,
                capacity,
                active,
                ttl_ms,
                grace_ms=grace_ms,
                exclude=tuple(exclude),
            )
        )

    async def waiting_work(self, exclude: Sequence[str] = ()) -> int:
        return await self._call(functools.partial(self.sync.waiting_work, tuple(exclude)))

    async def owned_streams_changed(self, owner: str, since_event_ts_ms: int) -> list[StreamRow]:
        return await self._call(
            functools.partial(self.sync.owned_streams_changed, owner, since_event_ts_ms)
        )

    async def heartbeat_worker(self, owner: str, capacity: int, ttl_ms: int) -> None:
        await self._call(functools.partial(self.sync.heartbeat_worker, owner, capacity, ttl_ms))

    async def retire_worker(self, owner: str) -> bool:
        return await self._call(functools.partial(self.sync.retire_worker, owner))

    async def live_workers(self) -> list[WorkerLoad]:
        return await self._call(self.sync.live_workers)

    # recordings
    async def upsert_recording(self, start: RecordingStart, now_ms: int) -> RecordingRow:
        return await self._call(functools.partial(self.sync.upsert_recording, start, now_ms))

    async def start_recording(
        self, start: RecordingStart, now_ms: int
    ) -> tuple[RecordingRow, list[LegalHoldRow]]:
        return await self._call(functools.partial(self.sync.start_recording, start, now_ms))

    async def recording_for_stream(self, rtms_stream_id: str) -> RecordingRow | None:
        return await self._call(functools.partial(self.sync.recording_for_stream, rtms_stream_id))

    async def add_participants(
        self, recording_id: str, participants: Sequence[ParticipantInfo]
    ) -> None:
        await self._call(
            functools.partial(self.sync.add_participants, recording_id, tuple(participants))
        )

    async def set_contact_center(
        self,
        recording_id: str,
        *,
        queue_id: str | None = None,
        queue_name: str | None = None,
        agent_id: str | None = None,
        agent_name: str | None = None,
    ) -> None:
        await self._call(
            functools.partial(
                self.sync.set_contact_center,
                recording_id,
                queue_id=queue_id,
                queue_name=queue_name,
                agent_id=agent_id,
                agent_name=agent_name,
            )
        )

    async def end_recording(
        self,
        recording_id: str,
        *,
        ended_ms: int,
        reason: str,
        status: RecordingStatus,
        fence: Lease | None = None,
    ) -> RecordingRow:
        return await self._call(
            functools.partial(
                self.sync.end_recording,
                recording_id,
                ended_ms=ended_ms,
                reason=reason,
                status=status,
                fence=fence,
            )
        )

    # evidence
    async def add_segment(
        self, segment: NewSegment, now_ms: int, *, fence: Lease | None = None
    ) -> SegmentRow:
        return await self._call(
            functools.partial(self.sync.add_segment, segment, now_ms, fence=fence)
        )

    async def add_record_file(
        self, record: NewRecordFile, now_ms: int, *, fence: Lease | None = None
    ) -> RecordFileRow:
        return await self._call(
            functools.partial(self.sync.add_record_file, record, now_ms, fence=fence)
        )

    async def mark_uploaded(
        self,
        ref: EvidenceRef,
        *,
        object_key: str,
        version_id: str | None,
        stored_sha256: str,
        now_ms: int,
    ) -> None:
        await self._call(
            functools.partial(
                self.sync.mark_uploaded,
                ref,
                object_key=object_key,
                version_id=version_id,
                stored_sha256=stored_sha256,
                now_ms=now_ms,
            )
        )

    async def mark_verified(self, ref: EvidenceRef, now_ms: int) -> None:
        await self._call(functools.partial(self.sync.mark_verified, ref, now_ms))

    async def add_gap(
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
    ) -> None:
        await self._call(
            functools.partial(
                self.sync.add_gap,
                recording_id,
                track,
                start_ms=start_ms,
                end_ms=end_ms,
                cause=cause,
                start_sample=start_sample,
                end_sample=end_sample,
                detail=detail,
                fence=fence,
            )
        )

    async def add_pause(
        self,
        recording_id: str,
        *,
        start_ms: int,
        end_ms: int | None,
        actor: str | None,
        fence: Lease | None = None,
    ) -> None:
        await self._call(
            functools.partial(
                self.sync.add_pause,
                recording_id,
                start_ms=start_ms,
                end_ms=end_ms,
                actor=actor,
                fence=fence,
            )
        )

    # holds and audit
    async def place_hold(
        self,
        *,
        matter: str,
        scope: HoldScope,
        scope_value: str,
        placed_by: str,
        reason: str,
        now_ms: int,
    ) -> LegalHoldRow:
        return await self._call(
            functools.partial(
                self.sync.place_hold,
                matter=matter,
                scope=scope,
                scope_value=scope_value,
                placed_by=placed_by,
                reason=reason,
                now_ms=now_ms,
            )
        )

    async def release_hold(
        self, hold_id: int, *, released_by: str, reason: str, now_ms: int
    ) -> LegalHoldRow:
        return await self._call(
            functools.partial(
                self.sync.release_hold,
                hold_id,
                released_by=released_by,
                reason=reason,
                now_ms=now_ms,
            )
        )

    async def is_on_hold(self, recording_id: str) -> bool:
        return await self._call(functools.partial(self.sync.is_on_hold, recording_id))

    async def is_instance_on_hold(self, instance_id: str) -> bool:
        return await self._call(functools.partial(self.sync.is_instance_on_hold, instance_id))

    async def is_key_on_hold(self, key_id: str) -> bool:
        return await self._call(functools.partial(self.sync.is_key_on_hold, key_id))

    async def holds(self, *, active_only: bool = True) -> list[LegalHoldRow]:
        return await self._call(functools.partial(self.sync.holds, active_only=active_only))

    async def append_audit(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        reason: str,
        now_ms: int,
        details: Mapping[str, JsonValue] | None = None,
    ) -> AuditEvent:
        return await self._call(
            functools.partial(
                self.sync.append_audit,
                actor=actor,
                action=action,
                target=target,
                reason=reason,
                now_ms=now_ms,
                details=details,
            )
        )

    async def audit_trail(self, target: str) -> list[AuditEvent]:
        return await self._call(functools.partial(self.sync.audit_trail, target))

    async def verify_audit_chain(self) -> AuditChainCheck:
        return await self._call(self.sync.verify_audit_chain)

    # officers
    async def search(
        self,
        *,
        product: Product | None = None,
        instance_id: str | None = None,
        stream_id: str | None = None,
        participant: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 100,
    ) -> list[RecordingRow]:
        return await self._call(
            functools.partial(
                self.sync.search,
                product=product,
                instance_id=instance_id,
                stream_id=stream_id,
                participant=participant,
                since_ms=since_ms,
                until_ms=until_ms,
                limit=limit,
            )
        )

    async def show(self, recording_id: str) -> RecordingDetail | None:
        return await self._call(functools.partial(self.sync.show, recording_id))

    async def search_recordings(self, query: RecordingQuery) -> SearchPage:
        return await self._call(functools.partial(self.sync.search_recordings, query))

    # verification runs
    async def record_verification(self, run: VerificationRun) -> None:
        await self._call(functools.partial(self.sync.record_verification, run))

    async def last_verification(self, recording_id: str) -> VerificationRun | None:
        return await self._call(functools.partial(self.sync.last_verification, recording_id))

    # transcript blind index
    async def add_transcript_tokens(
        self, recording_id: str, key_id: str, macs: Sequence[str], now_ms: int
    ) -> None:
        await self._call(
            functools.partial(self.sync.add_transcript_tokens, recording_id, key_id, macs, now_ms)
        )

    async def text_index_keys(self) -> dict[str, int]:
        return await self._call(self.sync.text_index_keys)

    # lifecycle evidence
    async def add_lifecycle_event(self, event: NewLifecycleEvent) -> tuple[LifecycleEventRow, bool]:
        return await self._call(functools.partial(self.sync.add_lifecycle_event, event))

    async def lifecycle_events(
        self,
        *,
        failed_only: bool = False,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 100,
    ) -> list[LifecycleEventRow]:
        return await self._call(
            functools.partial(
                self.sync.lifecycle_events,
                failed_only=failed_only,
                since_ms=since_ms,
                until_ms=until_ms,
                limit=limit,
            )
        )

    # recording keys and destruction records
    async def put_recording_key(self, row: RecordingKeyRow) -> None:
        await self._call(functools.partial(self.sync.put_recording_key, row))

    async def get_recording_key(self, rk_id: str) -> RecordingKeyRow | None:
        return await self._call(functools.partial(self.sync.get_recording_key, rk_id))

    async def recording_keys_of(self, recording_id: str) -> list[RecordingKeyRow]:
        return await self._call(functools.partial(self.sync.recording_keys_of, recording_id))

    async def recording_key_tombstone(self, recording_id: str) -> tuple[int, str] | None:
        return await self._call(functools.partial(self.sync.recording_key_tombstone, recording_id))

    async def destroy_recording_keys(
        self, recording_id: str, *, reason: str, now_ms: int
    ) -> list[str]:
        return await self._call(
            functools.partial(
                self.sync.destroy_recording_keys, recording_id, reason=reason, now_ms=now_ms
            )
        )

    async def kek_usage(self) -> list[KekUsage]:
        return await self._call(self.sync.kek_usage)

    async def recording_keys_not_under(
        self, kek_key_id: str, *, after_rk_id: str = "", limit: int = 100
    ) -> list[RecordingKeyRow]:
        return await self._call(
            functools.partial(
                self.sync.recording_keys_not_under, kek_key_id, after_rk_id=after_rk_id, limit=limit
            )
        )

    async def rewrap_recording_key(
        self, rk_id: str, *, old_kek_key_id: str, new_kek_key_id: str, wrapped: bytes, now_ms: int
    ) -> bool:
        return await self._call(
            functools.partial(
                self.sync.rewrap_recording_key,
                rk_id,
                old_kek_key_id=old_kek_key_id,
                new_kek_key_id=new_kek_key_id,
                wrapped=wrapped,
                now_ms=now_ms,
            )
        )

    async def add_destruction_record(self, record: DestructionRecord) -> None:
        await self._call(functools.partial(self.sync.add_destruction_record, record))

    async def destruction_records(self, recording_id: str | None = None) -> list[DestructionRecord]:
        return await self._call(functools.partial(self.sync.destruction_records, recording_id))

    async def scrub_pending(self, *, now_ms: int, actor: str) -> tuple[list[str], list[str]]:
        return await self._call(
            functools.partial(self.sync.scrub_pending, now_ms=now_ms, actor=actor)
        )

    async def pii_scrub(self, recording_id: str) -> PiiScrub | None:
        return await self._call(functools.partial(self.sync.pii_scrub, recording_id))

    # retention, hold rules, destruction records
    async def set_recording_policy(
        self, recording_id: str, *, name: str, sha256: str, retain_days: int, now_ms: int
    ) -> tuple[str, str, int]:
        return await self._call(
            functools.partial(
                self.sync.set_recording_policy,
                recording_id,
                name=name,
                sha256=sha256,
                retain_days=retain_days,
                now_ms=now_ms,
            )
        )

    async def recording_policy(self, recording_id: str) -> tuple[str, str, int] | None:
        return await self._call(functools.partial(self.sync.recording_policy, recording_id))

    async def retention_inventory(self) -> list[RetentionFacts]:
        return await self._call(self.sync.retention_inventory)

    async def record_account_event(
        self, account_id: str, event: str, *, at_ms: int, recorded_by: str, now_ms: int
    ) -> None:
        await self._call(
            functools.partial(
                self.sync.record_account_event,
                account_id,
                event,
                at_ms=at_ms,
                recorded_by=recorded_by,
                now_ms=now_ms,
            )
        )

    async def acquire_retention_lock(
        self,
        *,
        holder: str,
        host: str,
        pid: int,
        ttl_ms: int,
        now_ms: int,
        replace_holder: str | None = None,
    ) -> bool:
        return await self._call(
            functools.partial(
                self.sync.acquire_retention_lock,
                holder=holder,
                host=host,
                pid=pid,
                ttl_ms=ttl_ms,
                now_ms=now_ms,
                replace_holder=replace_holder,
            )
        )

    async def release_retention_lock(self, holder: str) -> bool:
        return await self._call(functools.partial(self.sync.release_retention_lock, holder))

    async def retention_lock(self) -> RetentionLockRow | None:
        return await self._call(self.sync.retention_lock)

    async def add_hold_rule(
        self,
        *,
        matter: str,
        rule: Mapping[str, str],
        placed_by: str,
        reason: str,
        now_ms: int,
        personal_macs: PersonalMacs | None = None,
    ) -> HoldRuleRow:
        return await self._call(
            functools.partial(
                self.sync.add_hold_rule,
                matter=matter,
                rule=dict(rule),
                placed_by=placed_by,
                reason=reason,
                now_ms=now_ms,
                personal_macs=personal_macs,
            )
        )

    async def release_hold_rule(
        self, rule_id: int, *, released_by: str, reason: str, now_ms: int
    ) -> HoldRuleRow:
        return await self._call(
            functools.partial(
                self.sync.release_hold_rule,
                rule_id,
                released_by=released_by,
                reason=reason,
                now_ms=now_ms,
            )
        )

    async def hold_rules(self, *, active_only: bool = True) -> list[HoldRuleRow]:
        return await self._call(functools.partial(self.sync.hold_rules, active_only=active_only))

    async def join_hold_rules(self, recording_id: str, now_ms: int) -> list[LegalHoldRow]:
        return await self._call(functools.partial(self.sync.join_hold_rules, recording_id, now_ms))

    async def audit_events(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        after_id: int = 0,
        limit: int = 1_000,
    ) -> list[AuditEvent]:
        return await self._call(
            functools.partial(
                self.sync.audit_events,
                actor=actor,
                action=action,
                target=target,
                since_ms=since_ms,
                until_ms=until_ms,
                after_id=after_id,
                limit=limit,
            )
        )

    # --- RTMS control requests (recorder.catalog._rtms_requests) -------------------------------

    async def add_rtms_request(
        self,
        *,
        product: str,
        target_id: str,
        action: str,
        actor: str,
        reason: str,
        now_ms: int,
        via: str | None = None,
    ) -> tuple[RtmsRequestRow, AuditEvent]:
        return await self._call(
            functools.partial(
                self.sync.add_rtms_request,
                product=product,
                target_id=target_id,
                action=action,
                actor=actor,
                reason=reason,
                now_ms=now_ms,
                via=via,
            )
        )

    async def finish_rtms_request(
        self, request_id: int, *, outcome: str, error: str | None, now_ms: int
    ) -> RtmsRequestRow:
        return await self._call(
            functools.partial(
                self.sync.finish_rtms_request,
                request_id,
                outcome=outcome,
                error=error,
                now_ms=now_ms,
            )
        )

    async def match_pause_request(
        self,
        *,
        product: str,
        instance_ids: Sequence[str],
        recording_id: str,
        paused_ms: int,
        window_ms: int,
    ) -> RtmsRequestRow | None:
        return await self._call(
            functools.partial(
                self.sync.match_pause_request,
                product=product,
                instance_ids=instance_ids,
                recording_id=recording_id,
                paused_ms=paused_ms,
                window_ms=window_ms,
            )
        )

    async def unconfirmed_pause_requests(
        self, *, product: str, instance_ids: Sequence[str], since_ms: int, before_ms: int
    ) -> list[RtmsRequestRow]:
        return await self._call(
            functools.partial(
                self.sync.unconfirmed_pause_requests,
                product=product,
                instance_ids=instance_ids,
                since_ms=since_ms,
                before_ms=before_ms,
            )
        )

    async def rtms_requests(
        self, *, target_id: str | None = None, limit: int = 100
    ) -> list[RtmsRequestRow]:
        return await self._call(
            functools.partial(self.sync.rtms_requests, target_id=target_id, limit=limit)
        )


async def open_async_catalog(
    url: str,
    *,
    now_ms: int,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    limiter: trio.CapacityLimiter | None = None,
) -> AsyncCatalog:
    """Open and migrate the catalog at ``url`` in a worker thread; see ``open_catalog``."""
    catalog: SqlCatalog = await trio.to_thread.run_sync(
        functools.partial(open_catalog, url, now_ms=now_ms, max_connections=max_connections)
    )
    return AsyncCatalog(catalog, limiter=limiter)


async def open_configured_async_catalog(
    config: CatalogConfig,
    *,
    now_ms: int,
    postgres_password: Secret | None = None,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    limiter: trio.CapacityLimiter | None = None,
) -> AsyncCatalog:
    """Open and migrate the configured catalog in a worker thread (``open_configured_catalog``)."""
    catalog: SqlCatalog = await trio.to_thread.run_sync(
        functools.partial(
            open_configured_catalog,
            config,
            now_ms=now_ms,
            postgres_password=postgres_password,
            max_connections=max_connections,
        )
    )
    return AsyncCatalog(catalog, limiter=limiter)


class CatalogWebhookDedup:
    """The ingress's ``WebhookDedup`` seam (``recorder.service.ingress``), on the catalog.

    Shared by every process on the catalog, so a webhook delivered to two recorders is acted on
    once. ``ttl_ms`` must outlast Zoom's retry schedule.
    """

    def __init__(self, catalog: AsyncCatalog, *, ttl_ms: int = DEFAULT_DEDUP_TTL_MS) -> None:
        self._catalog = catalog
        self._ttl_ms = ttl_ms

    async def first_seen(self, key: str, now_s: float) -> bool:
        return await self._catalog.first_seen(key, int(now_s * 1000), self._ttl_ms)

    async def forget(self, key: str) -> None:
        await self._catalog.forget(key)
