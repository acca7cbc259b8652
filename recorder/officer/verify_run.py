"""``recorder verify``: re-read every object by version and check it against the catalog.

Per object (the version the catalog recorded, never "the current one"): it is there; no other
version was written under its key; its size, stored SHA-256, every chunk's AEAD tag and the
plaintext SHA-256 match; its Object Lock mode is the deployment's and its retain-until is not
earlier than the catalog's. Per recording: every stored version's legal hold matches the
catalog's holds (``hold_drift``). Each finding has one failure class with its own exit code
(``recorder.errors``: ``VerificationFailed`` and its subclasses); the result and its time are
appended to the catalog (``verification_runs``) and the run is audited (invariant 9).
"""

from __future__ import annotations

import enum
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import trio

from recorder.catalog.base import RecordFileRow, SegmentRow, UploadState, VerificationRun
from recorder.crypto.reader import digest_segment
from recorder.errors import (
    CatalogError,
    HoldDrift,
    IntegrityError,
    LockMismatch,
    ObjectMissing,
    ObjectNotFound,
    ObjectTampered,
    ObjectTruncated,
    RecorderError,
    TruncatedFile,
    VerificationFailed,
    VersionSwapped,
)
from recorder.officer.opaque import is_opaque, recovered_copy
from recorder.officer.verify import fetch_to, staged_copy
from recorder.retention.apply import object_versions
from recorder.retention.holds import hold_drift
from recorder.service.components import Components, now_ms
from recorder.service.evidence import lock_mode_for
from recorder.store.base import LockMode, ObjectInfo

#: ``--all`` and ``--since`` select at most this many recordings per run (the catalog's cap).
MAX_RECORDINGS: Final = 10_000


class Failure(enum.StrEnum):
    TAMPERED = "tampered"
    MISSING = "missing"
    TRUNCATED = "truncated"
    SWAPPED = "swapped_version"
    LOCK = "lock_mismatch"
    HOLD_DRIFT = "hold_drift"
    ERROR = "error"


EXIT_CODES: Final[dict[Failure, int]] = {
    Failure.TAMPERED: ObjectTampered.exit_code,
    Failure.MISSING: ObjectMissing.exit_code,
    Failure.TRUNCATED: ObjectTruncated.exit_code,
    Failure.SWAPPED: VersionSwapped.exit_code,
    Failure.LOCK: LockMismatch.exit_code,
    Failure.HOLD_DRIFT: HoldDrift.exit_code,
    Failure.ERROR: VerificationFailed.exit_code,
}


@dataclass(frozen=True, slots=True)
class Finding:
    failure: Failure
    object_key: str | None
    version_id: str | None
    message: str

    def as_json(self) -> dict[str, str | None]:
        return {
            "failure": self.failure.value,
            "object_key": self.object_key,
            "version_id": self.version_id,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class RecordingCheck:
    recording_id: str
    checked_ms: int
    objects: int
    pending: int
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def failures(self) -> tuple[Failure, ...]:
        return tuple(sorted({f.failure for f in self.findings}))


def exit_code(checks: Sequence[RecordingCheck]) -> int:
    """0; the class's own code when every finding is of one class; 76 for a mix."""
    classes = {f for check in checks for f in check.failures}
    if not classes:
        return 0
    if len(classes) == 1:
        return EXIT_CODES[classes.pop()]
    return VerificationFailed.exit_code


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def _lock_findings(
    row: SegmentRow | RecordFileRow, info: ObjectInfo, mode: LockMode
) -> list[Finding]:
    """The store's lock against the catalog's retain-until and the deployment's lock mode."""
    if row.retain_until_ms is None:
        return []
    found = []
    key, version = row.object_key, row.version_id
    if info.lock_mode is not mode:
        held = info.lock_mode.value if info.lock_mode else "none"
        found.append(
            Finding(Failure.LOCK, key, version, f"Object Lock mode {held}, expected {mode.value}")
        )
    store_until = _ms(info.retain_until)
    if store_until is None or store_until < row.retain_until_ms:
        shown = "none" if store_until is None else _iso(store_until)
        found.append(
            Finding(
                Failure.LOCK,
                key,
                version,
                f"store retain-until {shown} is earlier than the catalog's "
                f"{_iso(row.retain_until_ms)}",
            )
        )
    return found


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


async def _other_versions(c: Components, row: SegmentRow | RecordFileRow) -> list[str | None]:
    return [v for v in await object_versions(c.store, row.object_key) if v != row.version_id]


async def _content_findings(c: Components, row: SegmentRow | RecordFileRow) -> list[Finding]:
    key, version = row.object_key, row.version_id

    def finding(failure: Failure, message: str) -> list[Finding]:
        return [Finding(failure, key, version, message)]

    with staged_copy(key, row.stored_size) as buf:
        stored_sha = await fetch_to(c.store, key, buf, version_id=version)
        size = buf.seek(0, 2)
        buf.seek(0)
        if size < row.stored_size:
            return finding(
                Failure.TRUNCATED, f"{size} bytes stored, the catalog recorded {row.stored_size}"
            )
        if size > row.stored_size:
            return finding(
                Failure.TAMPERED, f"{size} bytes stored, the catalog recorded {row.stored_size}"
            )
        if row.stored_sha256 and not hmac.compare_digest(stored_sha, row.stored_sha256):
            return finding(Failure.TAMPERED, "stored SHA-256 differs from the catalog's")
        try:
            if is_opaque(row.plaintext_sha256):

                def authenticate() -> None:
                    with recovered_copy(buf, c.keyring) as sealed:
                        digest_segment(sealed, c.keyring)

                await trio.to_thread.run_sync(authenticate)
                return []
            digest = await trio.to_thread.run_sync(lambda: digest_segment(buf, c.keyring))
        except TruncatedFile as exc:
            return finding(Failure.TRUNCATED, f"AEAD: {exc}")
        except IntegrityError as exc:
            return finding(Failure.TAMPERED, f"AEAD: {exc}")
    if not hmac.compare_digest(digest.sha256, row.plaintext_sha256):
        return finding(Failure.TAMPERED, "plaintext SHA-256 differs from the catalog's")
    return []


async def check_object(
    c: Components, row: SegmentRow | RecordFileRow, mode: LockMode
) -> list[Finding]:
    key, version = row.object_key, row.version_id
    try:
        info = await c.store.head(key, version_id=version)
    except ObjectNotFound:
        what = "object" if version is None else f"version {version}"
        return [Finding(Failure.MISSING, key, version, f"{what} not in the store")]
    found = []
    others = await _other_versions(c, row)
    if others:
        found.append(
            Finding(
                Failure.SWAPPED,
                key,
                version,
                f"{len(others)} other version(s) under the key: {', '.join(map(str, others))}",
            )
        )
    if row.stored_sha256 and info.sha256 != row.stored_sha256:
        # A store without versions: the key's bytes and their record were replaced together.
        found.append(
            Finding(Failure.SWAPPED, key, version, "the store now records another object's SHA-256")
        )
    found.extend(_lock_findings(row, info, mode))
    if not any(f.failure is Failure.SWAPPED for f in found):
        found.extend(await _content_findings(c, row))
    return found


async def check_recording(c: Components, recording_id: str) -> RecordingCheck:
    detail = await c.catalog.show(recording_id)
    if detail is None:
        raise CatalogError(f"no recording {recording_id!r} in the catalog")
    rows: list[SegmentRow | RecordFileRow] = [*detail.segments, *detail.records]
    findings: list[Finding] = []
    pending = 0
    # What the uploader applied: the stricter of the store's mode and the recording's policy's.
    mode = await lock_mode_for(c, recording_id)
    for row in rows:
        if row.upload_state is UploadState.PENDING:
            pending += 1
            continue
        try:
            findings.extend(await check_object(c, row, mode))
        except ObjectNotFound as exc:
            findings.append(Finding(Failure.MISSING, row.object_key, row.version_id, str(exc)))
        except RecorderError as exc:
            findings.append(
                Finding(
                    Failure.ERROR, row.object_key, row.version_id, f"{type(exc).__name__}: {exc}"
                )
            )
    try:
        drift = await hold_drift(c.catalog, c.store, recording_id)
    except ObjectNotFound:
        drift = []  # the missing version is already a finding of its own
    except RecorderError as exc:
        drift = []
        findings.append(
            Finding(
                Failure.ERROR, None, None, f"legal holds unreadable: {type(exc).__name__}: {exc}"
            )
        )
    findings.extend(Finding(Failure.HOLD_DRIFT, None, None, line) for line in drift)
    return RecordingCheck(recording_id, now_ms(), len(rows), pending, tuple(findings))


async def record(c: Components, check: RecordingCheck, *, actor: str, reason: str) -> None:
    detail = json.dumps([f.as_json() for f in check.findings], sort_keys=True)
    await c.catalog.record_verification(
        VerificationRun(
            check.recording_id,
            check.checked_ms,
            check.ok,
            tuple(f.value for f in check.failures),
            detail,
        )
    )
    await c.catalog.append_audit(
        actor=actor,
        action="verify",
        target=check.recording_id,
        reason=reason,
        now_ms=check.checked_ms,
        details={"ok": check.ok, "failures": [f.value for f in check.failures]},
    )


async def select(
    c: Components, ids: Sequence[str], *, every: bool, since_ms: int | None
) -> list[str]:
    chosen = list(ids)
    if every or since_ms is not None:
        rows = await c.catalog.search(since_ms=since_ms, limit=MAX_RECORDINGS)
        chosen.extend(r.recording_id for r in rows if r.recording_id not in chosen)
    return chosen


def report_json(checks: Sequence[RecordingCheck]) -> str:
    """The ``--json`` document (schema ``rtms-recorder.verify/1``)."""
    return json.dumps(
        {
            "schema": "rtms-recorder.verify/1",
            "exit_code": exit_code(checks),
            "recordings": len(checks),
            "failed": sum(1 for check in checks if not check.ok),
            "results": [
                {
                    "recording_id": check.recording_id,
                    "verified_ms": check.checked_ms,
                    "ok": check.ok,
                    "objects": check.objects,
                    "pending": check.pending,
                    "failures": [f.value for f in check.failures],
                    "findings": [f.as_json() for f in check.findings],
                }
                for check in checks
            ],
        },
        indent=2,
        sort_keys=True,
    )


def report_text(checks: Sequence[RecordingCheck]) -> str:
    lines = []
    for check in checks:
        state = "OK" if check.ok else "FAILED " + ",".join(f.value for f in check.failures)
        pending = f", {check.pending} pending upload" if check.pending else ""
        lines.append(f"{check.recording_id}: {state} ({check.objects} objects{pending})")
        for f in check.findings:
            if f.failure is Failure.HOLD_DRIFT:
                lines.append(f"  hold drift: {f.message}")
            else:
                version = "" if f.version_id is None else f" version {f.version_id}"
                lines.append(f"  {f.failure.value}: {f.object_key}{version}: {f.message}")
    failed = sum(1 for check in checks if not check.ok)
    lines.append(
        f"verified {len(checks)} recording(s): {len(checks) - failed} ok, {failed} failed"
        f" (exit {exit_code(checks)})"
    )
    return "\n".join(lines)
