"""``recorder spool list|retry``: what the uploader is doing with each job; quarantined jobs back.

``list`` shows every job the spool holds: pending ones (with their attempts, next attempt and
last error, so a job that keeps failing is visible long before it is quarantined), quarantined
ones with the reason, and job files set aside as unreadable. ``retry`` takes quarantined jobs
back into the queue (attempts reset, due at once). Every retry is written to the audit log
before it happens, with the operating-system user as the actor (invariant 9).

Under ``serve --workers N`` each worker has a spool of its own; both commands take every spool
of the tree (``TreeSpools``), and each row says whose it is (``worker``; None: the single
process's spool).
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

from recorder.catalog.base import JsonValue
from recorder.errors import StorageError
from recorder.spool.spool import STATE_QUARANTINED, STATE_UNREADABLE, Spool, SpooledJob

#: The audit action of ``recorder spool retry``.
RETRY_ACTION = "spool_retry"


@dataclass(frozen=True, slots=True)
class JobView:
    """One row of ``recorder spool list``."""

    job: str
    object_key: str | None
    state: str
    attempts: int
    next_attempt: str | None
    last_error: str | None
    reason: str | None
    #: Which worker's spool holds it (None: the single process's own spool).
    worker: str | None = None

    def as_json(self) -> dict[str, object]:
        return asdict(self)


class AuditLog(Protocol):
    async def append_audit(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        reason: str,
        now_ms: int,
        details: Mapping[str, JsonValue] | None = None,
    ) -> object: ...


def os_actor() -> str:
    """The operating-system user running the command (and who they came from through sudo)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid {os.getuid()}"
    sudo = os.environ.get("SUDO_USER")
    return f"os:{user}" + (f" (sudo from {sudo})" if sudo and sudo != user else "")


#: (worker label or None, that spool), the single process's spool first.
TreeSpools = Sequence[tuple[str | None, Spool]]


def _view(job: SpooledJob, worker: str | None = None) -> JobView:
    return JobView(
        worker=worker,
        job=job.job_id,
        object_key=job.job.object_key,
        state=job.state,
        attempts=job.attempts,
        next_attempt=job.next_attempt_at.isoformat() if job.next_attempt_at else None,
        last_error=job.last_error,
        reason=job.reason,
    )


async def tree_job_views(spools: TreeSpools) -> list[JobView]:
    """Every spool's rows, spool by spool."""
    return [view for worker, spool in spools for view in await job_views(spool, worker)]


async def job_views(spool: Spool, worker: str | None = None) -> list[JobView]:
    views = [_view(job, worker) for job in await spool.jobs()]
    views += [
        JobView(
            worker=worker,
            job=bad.job_id,
            object_key=None,
            state=STATE_UNREADABLE,
            attempts=0,
            next_attempt=None,
            last_error=None,
            reason=f"{bad.reason} (kept at {bad.path})",
        )
        for bad in await spool.unreadable()
    ]
    return views


def render_json(views: Sequence[JobView]) -> str:
    return json.dumps([view.as_json() for view in views], indent=2, sort_keys=True)


def render_table(views: Sequence[JobView]) -> str:
    if not views:
        return "the spool is empty"
    header: tuple[str, ...] = (
        "JOB",
        "STATE",
        "ATTEMPTS",
        "NEXT ATTEMPT",
        "OBJECT KEY",
        "LAST ERROR / REASON",
    )
    rows: list[tuple[str, ...]] = [
        (
            view.job,
            view.state,
            str(view.attempts),
            view.next_attempt or "-",
            view.object_key or "-",
            _one_line(view.reason if view.state != "pending" else view.last_error),
        )
        for view in views
    ]
    if any(view.worker is not None for view in views):
        header = ("WORKER", *header)
        rows = [(view.worker or "-", *row) for view, row in zip(views, rows, strict=True)]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def _one_line(text: str | None, limit: int = 120) -> str:
    if not text:
        return "-"
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


async def retry_jobs(
    spool: Spool,
    audit: AuditLog,
    *,
    job_ids: Sequence[str],
    all_quarantined: bool,
    actor: str,
    reason: str,
    now_ms: int,
) -> list[SpooledJob]:
    """Requeue the named quarantined jobs (or all of them); each is audited before it happens.

    Raises ``StorageError`` naming a job that does not exist or is not quarantined (jobs named
    before it are requeued already, each with its audit entry).
    """
    quarantined = {job.job_id: job for job in await spool.quarantined()}
    if all_quarantined:
        targets = list(quarantined.values())
    else:
        targets = []
        for job_id in job_ids:
            if job_id not in quarantined:
                known = {job.job_id: job.state for job in await spool.jobs()}
                unreadable = {bad.job_id for bad in await spool.unreadable()}
                if job_id in unreadable:
                    raise StorageError(
                        f"spool job {job_id} is an unreadable job file (set aside); its data is "
                        "requeued from the segment's own header at the next start"
                    )
                state = known.get(job_id)
                raise StorageError(
                    f"spool job {job_id} is {state}, not {STATE_QUARANTINED}"
                    if state
                    else f"no spool job {job_id!r} (see `recorder spool list`)"
                )
            targets.append(quarantined[job_id])
    requeued = []
    for job in targets:
        await audit.append_audit(
            actor=actor,
            action=RETRY_ACTION,
            target=job.job.metadata.get("recording-id") or job.job.object_key,
            reason=reason,
            now_ms=now_ms,
            details={
                "job": job.job_id,
                "object_key": job.job.object_key,
                "attempts": job.attempts,
                "quarantine_reason": job.reason,
            },
        )
        requeued.append(await spool.requeue(job.job_id))
    return requeued


async def retry_in_tree(
    spools: TreeSpools,
    audit: AuditLog,
    *,
    job_ids: Sequence[str],
    all_quarantined: bool,
    actor: str,
    reason: str,
    now_ms: int,
) -> list[SpooledJob]:
    """``retry_jobs`` over every spool of a worker tree: each job in the spool that holds it.

    A job no spool holds raises ``StorageError`` from the first spool's look-up, as
    ``retry_jobs`` names it; jobs before it in ``job_ids`` are requeued already.
    """
    requeued: list[SpooledJob] = []
    for job_id in job_ids:
        holder = spools[0][1]
        for _, spool in spools:
            if job_id in {job.job_id for job in await spool.jobs()} | {
                bad.job_id for bad in await spool.unreadable()
            }:
                holder = spool
                break
        requeued += await retry_jobs(
            holder,
            audit,
            job_ids=[job_id],
            all_quarantined=False,
            actor=actor,
            reason=reason,
            now_ms=now_ms,
        )
    if all_quarantined:
        for _, spool in spools:
            requeued += await retry_jobs(
                spool,
                audit,
                job_ids=(),
                all_quarantined=True,
                actor=actor,
                reason=reason,
                now_ms=now_ms,
            )
    return requeued
