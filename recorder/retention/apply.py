"""The thin shell around ``engine.evaluate``: take the lock, plan, act, record, report.

Rules:

1. **One run at a time.** A single row in the catalog (``acquire_retention_lock``) is taken by
   one conditional statement; a second run exits with ``RetentionRunBusy`` and acts on nothing.
   A run that died (SIGKILL, power loss) leaves the row behind: a run on the same host takes it
   over once the holder's pid is gone; elsewhere the lock expires after ``lock_ttl_ms``.
2. **Idempotent and crash-safe.** The plan is recomputed from the catalog under the lock; a
   recording leaves the plan only when its destruction record is written, which is the last
   step. Deleting versions already gone, or shredding keys already shredded, is a no-op, so a
   re-run after a crash finishes what was started and never does anything twice.
3. **A hold always wins; a lock is never forced.** Just before acting, the hold is asked again
   (a hold placed during the run wins), and every object version's store-side legal hold and
   retain-until are read: if the store still locks a version, the recording fails and nothing of
   it is destroyed by force.
4. **Personal data goes with the recording.** The catalog scrubs it in the transaction that
   writes the destruction record (``recorder.catalog._scrub``); every run then scrubs what an
   earlier recorder version, or a hold released since, left behind. A held recording is never
   scrubbed.
5. **Everything leaves a trace.** An audit event at start and end and per destroyed recording,
   a destruction record per recording (kept after it), a JSON run report in the WORM store, and
   a signed audit head.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from recorder.catalog.aio import AsyncCatalog
from recorder.errors import (
    HoldActive,
    KeyDestroyed,
    ObjectNotFound,
    RecorderError,
    RetentionRunBusy,
)
from recorder.evidence_destruction import (
    DestroyedObject,
    DestructionMethod,
    DestructionRecord,
    RecordingShredder,
)
from recorder.retention.audit_heads import write_head
from recorder.retention.engine import Decision, Plan, evaluate, iso
from recorder.retention.policy import ExpiryAction, PolicySet
from recorder.store.base import LockMode, ObjectStore, VersionedObjects, put_document

logger = logging.getLogger(__name__)

#: A run is a oneshot unit with TimeoutStartSec=6h: a lock older than that is abandoned.
DEFAULT_LOCK_TTL_MS: Final = 6 * 60 * 60 * 1000
REPORT_PREFIX: Final = "retention/runs/"


@dataclass(frozen=True, slots=True)
class RetentionContext:
    catalog: AsyncCatalog
    store: ObjectStore
    policies: PolicySet
    #: The keys side (``recorder.crypto``); ``None``: crypto-shred decisions fail, named.
    shredder: RecordingShredder | None
    #: Who started the run (``os:<user>``); destruction records name the run as actor.
    operator: str
    now_ms: Callable[[], int]
    signing_key: Ed25519PrivateKey | None = None
    lock_ttl_ms: int = DEFAULT_LOCK_TTL_MS
    on_progress: Callable[[str], None] = field(default=lambda line: None)


@dataclass(frozen=True, slots=True)
class Outcome:
    recording_id: str
    #: ``destroyed``, ``kept`` (a hold arrived during the run) or ``failed``.
    result: str
    detail: str
    record_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class RunReport:
    run_id: str
    operator: str
    started_ms: int
    finished_ms: int
    plan: Plan
    outcomes: tuple[Outcome, ...]
    report_key: str | None

    @property
    def failed(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.result == "failed")

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": "rtms-recorder retention run v1",
                "run_id": self.run_id,
                "operator": self.operator,
                "started_ms": self.started_ms,
                "finished_ms": self.finished_ms,
                "decisions": [d.to_json() for d in self.plan.decisions],
                "outcomes": [
                    {
                        "recording_id": o.recording_id,
                        "result": o.result,
                        "detail": o.detail,
                        "record_sha256": o.record_sha256,
                    }
                    for o in self.outcomes
                ],
            },
            sort_keys=True,
            indent=2,
        )


async def make_plan(ctx: RetentionContext) -> Plan:
    """What a run would do now (``recorder retention plan``): read-only."""
    facts = await ctx.catalog.retention_inventory()
    holds = await ctx.catalog.holds(active_only=True)
    return evaluate(facts, ctx.policies, holds, ctx.now_ms())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _take_lock(ctx: RetentionContext, run_id: str) -> None:
    host, pid = socket.gethostname(), os.getpid()
    catalog = ctx.catalog
    if await catalog.acquire_retention_lock(
        holder=run_id, host=host, pid=pid, ttl_ms=ctx.lock_ttl_ms, now_ms=ctx.now_ms()
    ):
        return
    current = await catalog.retention_lock()
    if current is not None and current.host == host and not _pid_alive(current.pid):
        logger.warning("taking over the retention lock of dead run %s", current.holder)
        if await catalog.acquire_retention_lock(
            holder=run_id,
            host=host,
            pid=pid,
            ttl_ms=ctx.lock_ttl_ms,
            now_ms=ctx.now_ms(),
            replace_holder=current.holder,
        ):
            await catalog.append_audit(
                actor=f"retention-run:{run_id}",
                action="retention.lock.takeover",
                target="retention",
                reason=f"run {current.holder} (pid {current.pid}) died holding the lock",
                now_ms=ctx.now_ms(),
            )
            return
        current = await catalog.retention_lock()
    who = f"{current.holder} on {current.host} pid {current.pid}" if current else "another run"
    until = f" until {iso(current.expires_ms)}" if current else ""
    raise RetentionRunBusy(f"retention lock is held by {who}{until}; nothing was done")


async def object_versions(store: ObjectStore, key: str) -> list[str | None]:
    if isinstance(store, VersionedObjects):
        return await store.list_versions(key)
    try:
        info = await store.head(key)
    except ObjectNotFound:
        return []
    return [info.version_id]


async def _delete_all_versions(ctx: RetentionContext, decision: Decision) -> str:
    """Delete every version of every object; refuse (raise) if the store still locks one."""
    now = datetime.fromtimestamp(ctx.now_ms() / 1000, UTC)
    targets: list[tuple[str, str | None]] = []
    for obj in decision.objects:
        for version in await object_versions(ctx.store, obj.object_key):
            info = await ctx.store.head(obj.object_key, version_id=version)
            if info.legal_hold:
                raise HoldActive(f"{obj.object_key} version {version}: store legal hold is on")
            if info.retain_until is not None and info.retain_until > now:
                raise RecorderError(
                    f"{obj.object_key} version {version}: the store locks it until "
                    f"{info.retain_until.isoformat()} (catalog said otherwise); not forced"
                )
            targets.append((obj.object_key, version))
    for key, version in targets:
        # Gone already: a previous run got this far.
        with contextlib.suppress(ObjectNotFound):
            await ctx.store.delete(key, version_id=version)
    remaining = [
        obj.object_key
        for obj in decision.objects
        if await object_versions(ctx.store, obj.object_key)
    ]
    if remaining:
        raise RecorderError(f"versions remain after delete: {', '.join(remaining)}")
    return f"no object versions remain ({len(targets)} deleted in this run)"


async def _destroy(ctx: RetentionContext, decision: Decision, run_id: str) -> DestructionRecord:
    actor = f"retention-run:{run_id}"
    rid = decision.recording_id
    if await ctx.catalog.is_on_hold(rid):
        raise HoldActive(f"a legal hold was placed on {rid} during the run")
    if decision.action is ExpiryAction.CRYPTO_SHRED:
        if ctx.shredder is None:
            raise RecorderError("policy says crypto_shred but no RecordingShredder is configured")
        try:
            return await ctx.shredder.shred(rid, actor=actor, rule=decision.policy)
        except KeyDestroyed as exc:
            # An earlier run shredded the keys and died before writing the record: the
            # destruction happened, so it is recorded now rather than failing forever.
            return _record(
                decision,
                DestructionMethod.CRYPTO_ERASE,
                actor,
                ctx.now_ms(),
                f"keys already destroyed by an earlier, interrupted run ({exc})",
            )
    verification = await _delete_all_versions(ctx, decision)
    return _record(decision, DestructionMethod.OBJECT_DELETE, actor, ctx.now_ms(), verification)


def _record(
    decision: Decision, method: DestructionMethod, actor: str, now: int, verification: str
) -> DestructionRecord:
    return DestructionRecord(
        recording_id=decision.recording_id,
        method=method,
        objects=tuple(
            DestroyedObject(o.object_key, o.version_id, o.stored_sha256 or "")
            for o in decision.objects
        ),
        key_ids=(),
        rule=decision.policy,
        hold_check=f"no holds at {iso(now)}",
        actor=actor,
        destroyed_ms=now,
        verification=verification,
    )


async def _store_report(ctx: RetentionContext, report: RunReport) -> str:
    data = report.to_json().encode()
    key = f"{REPORT_PREFIX}{report.run_id}.json"
    now = datetime.fromtimestamp(ctx.now_ms() / 1000, UTC)
    await put_document(
        ctx.store,
        key,
        data,
        retain_until=now + timedelta(days=ctx.policies.longest_days),
        lock_mode=LockMode.COMPLIANCE,
    )
    return key


async def run_retention(ctx: RetentionContext) -> RunReport:
    """One retention run (see the module rules). Failures are in the report, not raised; the
    exception is the signed audit head written after the report, whose failure is raised so
    that the job exits non-zero with the audit log left unanchored by this run."""
    started = ctx.now_ms()
    run_id = f"{datetime.fromtimestamp(started / 1000, UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
    actor = f"retention-run:{run_id}"
    await _take_lock(ctx, run_id)
    try:
        plan = await make_plan(ctx)
        await ctx.catalog.append_audit(
            actor=actor,
            action="retention.run.start",
            target="retention",
            reason=f"started by {ctx.operator}",
            now_ms=ctx.now_ms(),
            details={"operator": ctx.operator, "to_destroy": len(plan.to_destroy)},
        )
        outcomes: list[Outcome] = []
        for decision in plan.to_destroy:
            outcomes.append(await _act(ctx, decision, run_id))
        scrubbed, waiting = await ctx.catalog.scrub_pending(now_ms=ctx.now_ms(), actor=actor)
        for rid in scrubbed:
            ctx.on_progress(f"scrubbed {rid}: personal data of a recording destroyed earlier")
        report = RunReport(run_id, ctx.operator, started, ctx.now_ms(), plan, tuple(outcomes), None)
        try:
            report_key: str | None = await _store_report(ctx, report)
        except RecorderError as exc:
            report_key = None
            outcomes.append(Outcome("-", "failed", f"run report not stored: {exc}"))
        report = RunReport(
            run_id, ctx.operator, started, ctx.now_ms(), plan, tuple(outcomes), report_key
        )
        await ctx.catalog.append_audit(
            actor=actor,
            action="retention.run.finish",
            target="retention",
            reason=f"started by {ctx.operator}",
            now_ms=ctx.now_ms(),
            details={
                "operator": ctx.operator,
                "destroyed": sum(o.result == "destroyed" for o in outcomes),
                "kept": sum(o.result == "kept" for o in outcomes),
                "failed": sum(o.result == "failed" for o in outcomes),
                "scrubbed_late": len(scrubbed),
                "scrub_waiting_for_hold": len(waiting),
                "report": report_key,
            },
        )
        if ctx.signing_key is not None:
            await write_head(ctx.catalog, ctx.store, ctx.signing_key, now_ms=ctx.now_ms())
        return report
    finally:
        await ctx.catalog.release_retention_lock(run_id)


async def _act(ctx: RetentionContext, decision: Decision, run_id: str) -> Outcome:
    rid = decision.recording_id
    try:
        record = await _destroy(ctx, decision, run_id)
    except HoldActive as exc:
        ctx.on_progress(f"kept {rid}: {exc}")
        return Outcome(rid, "kept", str(exc))
    except RecorderError as exc:
        ctx.on_progress(f"FAILED {rid}: {exc}")
        logger.error("retention could not destroy %s: %s", rid, exc)
        return Outcome(rid, "failed", f"{type(exc).__name__}: {exc}")
    await ctx.catalog.add_destruction_record(record)
    digest = record.sha256()
    await ctx.catalog.append_audit(
        actor=record.actor,
        action=f"retention.{record.method.value}",
        target=rid,
        reason=decision.reason,
        now_ms=ctx.now_ms(),
        details={
            "operator": ctx.operator,
            "policy": decision.policy,
            "record_sha256": digest,
            "objects": len(record.objects),
            "key_ids": list(record.key_ids),
        },
    )
    ctx.on_progress(f"destroyed {rid} ({record.method.value}) under {decision.policy}")
    return Outcome(rid, "destroyed", record.verification, digest)
