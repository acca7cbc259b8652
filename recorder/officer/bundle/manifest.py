"""The bundle manifest: its fixed names, canonical bytes and the entries it is made of.

The manifest is canonical JSON (sorted keys, no insignificant whitespace, UTF-8) so the bytes
that were signed can be re-derived from the parsed document: ``recorder verify-export`` checks
the signature over the file as stored, and that the file is in canonical form.
"""

from __future__ import annotations

import json
from typing import Final

from recorder.catalog.base import AuditEvent, RecordFileRow, RecordingDetail, SegmentRow
from recorder.officer.when import hold_fields, retention_fields

BUNDLE_FORMAT: Final = "rtms-recorder export bundle v2"
MANIFEST_NAME: Final = "manifest.json"
SIGNATURE_NAME: Final = "manifest.sig"


def canonical(document: object) -> bytes:
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def file_entry(path: str, sha256: str, size: int, kind: str, **extra: object) -> dict[str, object]:
    return {"path": path, "sha256": sha256, "size": size, "kind": kind, **extra}


def source_entry(row: SegmentRow | RecordFileRow) -> dict[str, object]:
    """One stored object the bundle was made from: where, which version, its digests."""
    entry: dict[str, object] = {
        "object_key": row.object_key,
        "version_id": row.version_id,
        "stored_sha256": row.stored_sha256,
        "stored_size": row.stored_size,
        "plaintext_sha256": row.plaintext_sha256,
        "plaintext_size": row.plaintext_size,
        "key_id": row.key_id,
        "retain_until_ms": row.retain_until_ms,
        "upload_state": row.upload_state.value,
        "verified_ms": row.verified_ms,
        "recovered": row.recovered,
    }
    if isinstance(row, SegmentRow):
        entry.update(kind="segment", track=row.track, index=row.segment_index)
    else:
        entry.update(kind="records", track=row.kind, index=row.record_index)
    return entry


def recording_entry(
    detail: RecordingDetail, audit: AuditEvent, policy: tuple[str, str, int] | None
) -> dict[str, object]:
    r = detail.recording
    retain = [s.retain_until_ms for s in detail.segments]
    retain += [record.retain_until_ms for record in detail.records]
    known = [value for value in retain if value is not None]
    return {
        "recording_id": r.recording_id,
        "product": r.product.value,
        "instance_id": r.instance_id,
        "rtms_stream_id": r.rtms_stream_id,
        "meeting_number": r.meeting_number,
        "account_id": r.account_id,
        "operator_id": r.operator_id,
        "started_ms": r.started_ms,
        "ended_ms": r.ended_ms,
        "status": r.status.value,
        "end_reason": r.end_reason,
        "contact_center": {
            "queue_id": r.cc_queue_id,
            "queue_name": r.cc_queue_name,
            "agent_id": r.cc_agent_id,
            "agent_name": r.cc_agent_name,
        },
        "participants": [
            {
                "user_id": p.user_id,
                "user_name": p.user_name,
                "role": p.role,
                "first_seen_ms": p.first_seen_ms,
            }
            for p in detail.participants
        ],
        "pauses": [
            {"start_ms": p.start_ms, "end_ms": p.end_ms, "actor": p.actor} for p in detail.pauses
        ],
        "legal_holds": [hold_fields(h) for h in detail.holds],
        "retention": retention_fields(policy, known),
        "lifecycle_events": [
            {
                "event": e.event,
                "received_ms": e.received_ms,
                "failed": e.failed,
                "reason": e.reason,
            }
            for e in detail.lifecycle_events
        ],
        "export_audit_event": {
            "audit_id": audit.audit_id,
            "at_ms": audit.at_ms,
            "actor": audit.actor,
            "action": audit.action,
            "target": audit.target,
            "reason": audit.reason,
            "details": json.loads(audit.details_json),
            "row_hash": audit.row_hash,
        },
    }
