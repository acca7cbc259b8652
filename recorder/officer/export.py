"""Export a recording for an officer: decrypted WAV files, records and a manifest, verified.

Rule: an export is the only place plaintext audio leaves the recorder, so it is deliberate: the
output directory must not exist yet (nothing is overwritten), every object is fetched from the
store and authenticated chunk by chunk while it is written, its SHA-256 must equal the catalog's
before the file is kept, and the export is audited with actor and reason (invariant 9). Files are
written 0600 into a 0700 directory; the manifest lists every file with its digest and every gap
and pause, so the evidence can be checked again without the recorder.

An export is all or nothing: it is built in a hidden 0700 staging directory beside the target and
renamed into place (never replacing anything) only once every file verified and the manifest is
written. Any failure, a corrupt object, a full disk, cancellation or Ctrl-C, removes every
decrypted byte it wrote, so no plaintext is ever left behind by an export that did not finish.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import hmac
import json
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import trio

from recorder.catalog.base import RecordFileRow, RecordingDetail, SegmentRow
from recorder.crypto.reader import iter_plaintext
from recorder.errors import DigestMismatch, IntegrityError, RecorderError, StorageError
from recorder.officer.opaque import is_opaque, recovered_copy
from recorder.officer.verify import IN_MEMORY_BYTES, fetch_to
from recorder.service.components import Components, now_ms
from recorder.video.track import VIDEO_RECORD_KINDS


@dataclass(frozen=True, slots=True)
class ExportedFile:
    name: str
    sha256: str
    size: int


def _file_name(row: SegmentRow | RecordFileRow) -> str:
    if isinstance(row, SegmentRow):
        return f"{row.track}.{row.segment_index:06d}.wav"
    extension = "mp4" if row.kind in VIDEO_RECORD_KINDS else "jsonl"  # recorder.video
    return f"{row.kind}.{row.record_index:06d}.{extension}"


def _decrypt_to(source: BinaryIO, c: Components, target: Path) -> tuple[str, int]:
    hasher = hashlib.sha256()
    size = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        for chunk in iter_plaintext(source, c.keyring):
            hasher.update(chunk)
            size += len(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return hasher.hexdigest(), size


def _decrypt_opaque_to(stored: BinaryIO, c: Components, target: Path) -> tuple[str, int]:
    with recovered_copy(stored, c.keyring) as sealed:
        return _decrypt_to(sealed, c, target)


async def _export_one(
    c: Components, row: SegmentRow | RecordFileRow, out_dir: Path
) -> ExportedFile:
    name = _file_name(row)
    target = out_dir / name
    with tempfile.SpooledTemporaryFile(max_size=min(row.stored_size, IN_MEMORY_BYTES)) as buf:
        stored = cast(BinaryIO, buf)
        stored_sha = await fetch_to(c.store, row.object_key, stored, version_id=row.version_id)
        if row.stored_sha256 and not hmac.compare_digest(stored_sha, row.stored_sha256):
            raise DigestMismatch(
                f"{row.object_key}: stored bytes differ from what was uploaded; export stopped"
            )
        try:
            if is_opaque(row.plaintext_sha256):
                # Uploaded by a host that could not decrypt: recovered and authenticated here.
                digest, size = await trio.to_thread.run_sync(_decrypt_opaque_to, stored, c, target)
                return ExportedFile(name, digest, size)
            digest, size = await trio.to_thread.run_sync(_decrypt_to, stored, c, target)
        except IntegrityError as exc:
            raise type(exc)(f"{row.object_key}: {exc}; export stopped") from exc
    if not hmac.compare_digest(digest, row.plaintext_sha256):
        raise DigestMismatch(
            f"{row.object_key}: decrypted content differs from the digest sealed at recording"
        )
    return ExportedFile(name, digest, size)


def _rename_noreplace(source: Path, target: Path) -> None:
    """``rename(2)`` that fails with ``FileExistsError`` instead of replacing ``target``.

    Plain ``rename`` silently replaces an empty directory; renameat2(RENAME_NOREPLACE) does not.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        at_fdcwd, rename_noreplace = -100, 1
        if not renameat2(
            at_fdcwd, os.fsencode(source), at_fdcwd, os.fsencode(target), rename_noreplace
        ):
            return
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            raise FileExistsError(code, os.strerror(code), str(target))
        if code not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(code, os.strerror(code), str(target))
    # No renameat2 (old glibc) or a file system without RENAME_NOREPLACE: check, then rename
    # (plain rename still refuses a non-empty target directory).
    if target.exists():  # pragma: no cover - only on such systems
        raise FileExistsError(errno.EEXIST, "exists", str(target))
    source.rename(target)  # pragma: no cover


def _manifest(
    detail: RecordingDetail,
    files: list[ExportedFile],
    policy: tuple[str, str, int] | None = None,
) -> dict[str, object]:
    r = detail.recording
    return {
        # The retention policy in force and the SHA-256 of its file: proves which rule applied.
        "retention_policy": (
            {"name": policy[0], "sha256": policy[1], "retain_days": policy[2]} if policy else None
        ),
        "format": "rtms-recorder export v1",
        "recording": {
            "recording_id": r.recording_id,
            "product": r.product.value,
            "instance_id": r.instance_id,
            "rtms_stream_id": r.rtms_stream_id,
            "started_ms": r.started_ms,
            "ended_ms": r.ended_ms,
            "status": r.status.value,
            "end_reason": r.end_reason,
            "operator_id": r.operator_id,
            "cc_queue": r.cc_queue_name,
            "cc_agent": r.cc_agent_name,
        },
        "participants": [
            {"user_id": p.user_id, "user_name": p.user_name, "role": p.role}
            for p in detail.participants
        ],
        "files": [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in files],
        "segments": [
            {
                "file": _file_name(s),
                "track": s.track,
                "participant": s.participant_id,
                "start_ms": s.start_ms,
                "end_ms": s.end_ms,
                "start_sample": s.start_sample,
                "sample_count": s.sample_count,
                "sample_rate": s.sample_rate,
                "source": s.codec,
                "recovered": s.recovered,
            }
            for s in detail.segments
        ],
        "gaps": [
            {
                "track": g.track,
                "start_ms": g.start_ms,
                "end_ms": g.end_ms,
                "start_sample": g.start_sample,
                "end_sample": g.end_sample,
                "cause": g.cause,
            }
            for g in detail.gaps
        ],
        "pauses": [
            {"start_ms": p.start_ms, "end_ms": p.end_ms, "actor": p.actor} for p in detail.pauses
        ],
        "legal_holds": [
            {"matter": h.matter, "placed_by": h.placed_by, "active": h.active} for h in detail.holds
        ],
    }


async def export_recording(
    c: Components, recording_id: str, out_dir: Path, *, actor: str, reason: str
) -> list[ExportedFile]:
    detail = await c.catalog.show(recording_id)
    if detail is None:
        raise RecorderError(f"no recording {recording_id!r} in the catalog")
    if await trio.Path(out_dir).exists():
        raise StorageError(f"{out_dir} exists already: an export never overwrites")
    staging = out_dir.with_name(f".{out_dir.name}.partial-{secrets.token_hex(6)}")
    try:
        await trio.Path(staging).mkdir(mode=0o700, parents=False, exist_ok=False)
    except OSError as exc:
        raise StorageError(f"cannot create {staging}: {exc.strerror}") from exc
    try:
        files = await _export_into(c, detail, recording_id, staging, out_dir, actor, reason)
        await trio.to_thread.run_sync(_publish, staging, out_dir)
    except BaseException:
        # Synchronous on purpose: it must also run under cancellation and KeyboardInterrupt.
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return files


def _publish(staging: Path, out_dir: Path) -> None:
    try:
        _rename_noreplace(staging, out_dir)
    except FileExistsError as exc:
        raise StorageError(f"{out_dir} appeared during the export: never overwritten") from exc
    except OSError as exc:
        raise StorageError(f"cannot move the export into {out_dir}: {exc.strerror}") from exc
    fd = os.open(out_dir.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def _export_into(
    c: Components,
    detail: RecordingDetail,
    recording_id: str,
    staging: Path,
    out_dir: Path,
    actor: str,
    reason: str,
) -> list[ExportedFile]:
    # The audit entry comes first: a decrypt that fails half way was still attempted.
    await c.catalog.append_audit(
        actor=actor,
        action="export",
        target=recording_id,
        reason=reason,
        now_ms=now_ms(),
        details={"out_dir": str(out_dir)},
    )
    rows: list[SegmentRow | RecordFileRow] = [*detail.segments, *detail.records]
    files = [await _export_one(c, row, staging) for row in rows]
    policy = await c.catalog.recording_policy(recording_id)
    manifest = json.dumps(_manifest(detail, files, policy), indent=2, sort_keys=True).encode()
    fd = os.open(staging / "manifest.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(manifest)
        out.flush()
        os.fsync(out.fileno())
    return files
