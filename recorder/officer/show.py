"""``recorder show ID``: everything about one recording, as text or ``--json``.

The catalog gives the recording, participants, tracks, segments, gaps, pauses, holds, retain-until
and failed-start events; the audit trail comes from the audit log; the verification is run now
(every object fetched, decrypted and compared; ``--no-verify`` skips it and shows the last
verified times only). Join/leave times and the transcript excerpt come from the recording's
records, decrypted for this (audited, like the verification).

``--json`` is one object, schema ``rtms-recorder.show/1`` (fields only ever added).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from recorder.catalog.base import (
    AuditEvent,
    RecordFileRow,
    RecordingDetail,
    SegmentRow,
    VerificationRun,
)
from recorder.errors import RecorderError
from recorder.officer.actor import os_actor
from recorder.officer.bundle.export import with_object
from recorder.officer.destroyed_view import destruction_fields, destruction_lines
from recorder.officer.verify import RecordingVerdict, Verdict, verify_recording
from recorder.officer.video_view import render_video, video_facts
from recorder.officer.views import describe_lifecycle_event
from recorder.officer.when import (
    hold_fields,
    recording_fields,
    retention_fields,
    show_duration,
    show_time,
    zone,
)
from recorder.video.track import VIDEO_RECORD_KINDS

if TYPE_CHECKING:
    from recorder.service.components import Components

SCHEMA: Final = "rtms-recorder.show/1"
#: Transcript lines shown; the export bundle has them all.
EXCERPT_CUES: Final = 12
#: Join/leave events kept (a webinar can have thousands of attendees).
MAX_PRESENCE: Final = 2_000
_JOIN, _LEAVE = 3, 4


@dataclass(slots=True)
class RecordsView:
    excerpt: list[dict[str, object]] = field(default_factory=list)
    transcript_lines: int = 0
    presence: list[dict[str, object]] = field(default_factory=list)
    chat_messages: int = 0
    problems: list[str] = field(default_factory=list)

    def feed(self, record: dict[str, object]) -> None:
        kind = record.get("type")
        if kind == "transcript":
            self.transcript_lines += 1
            if len(self.excerpt) < EXCERPT_CUES:
                self.excerpt.append(
                    {
                        "ts_ms": record.get("ts_ms"),
                        "speaker": record.get("user_name")
                        or record.get("user_id")
                        or record.get("channel_id"),
                        "text": record.get("text"),
                    }
                )
        elif kind == "chat":
            self.chat_messages += 1
        elif kind == "participant" and record.get("event_type") in (_JOIN, _LEAVE):
            people = record.get("participants")
            for person in people if isinstance(people, list) else []:
                if len(self.presence) >= MAX_PRESENCE or not isinstance(person, dict):
                    continue
                self.presence.append(
                    {
                        "user_id": person.get("user_id"),
                        "event": "join" if record.get("event_type") == _JOIN else "leave",
                        "ts_ms": record.get("ts_ms"),
                    }
                )
        elif (
            kind in ("contact_center", "call_event")
            and record.get("channel_id")
            and len(self.presence) < MAX_PRESENCE
        ):
            self.presence.append(
                {
                    "user_id": record.get("user_id") or f"channel-{record.get('channel_id')}",
                    "event": str(record.get("event")),
                    "ts_ms": record.get("ts_ms"),
                }
            )


async def read_records(c: Components, detail: RecordingDetail) -> RecordsView:
    view = RecordsView()
    # Video records are MP4 (recorder.video), not JSON lines: not read here.
    rows = [r for r in detail.records if r.kind not in VIDEO_RECORD_KINDS]
    for row in sorted(rows, key=lambda r: r.record_index):

        def parse(chunks: Iterator[bytes], expected: str | None) -> None:
            pending = b""
            for chunk in chunks:
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    if line.strip():
                        record = json.loads(line)
                        if isinstance(record, dict):
                            view.feed(record)

        try:
            await with_object(c, row, parse)
        except (RecorderError, ValueError) as exc:
            view.problems.append(f"{row.object_key}: {exc}")
    return view


def _track_facts(detail: RecordingDetail) -> list[dict[str, object]]:
    r = detail.recording
    expected_ms = None if r.ended_ms is None else r.ended_ms - r.started_ms
    tracks = []
    for track in sorted({s.track for s in detail.segments}):
        segs = sorted(
            (s for s in detail.segments if s.track == track), key=lambda s: s.segment_index
        )
        covered_ms = sum(s.sample_count * 1000 // s.sample_rate for s in segs)
        gaps = [g for g in detail.gaps if g.track == track]
        gap_ms = sum(g.end_ms - g.start_ms for g in gaps)
        tracks.append(
            {
                "track": track,
                "source": segs[0].codec,
                "sample_rate": segs[0].sample_rate,
                "segments": [
                    {
                        "index": s.segment_index,
                        "start_ms": s.start_ms,
                        "end_ms": s.end_ms,
                        "samples": s.sample_count,
                        "upload_state": s.upload_state.value,
                        "verified_ms": s.verified_ms,
                        "recovered": s.recovered,
                        "version_id": s.version_id,
                    }
                    for s in segs
                ],
                "expected_ms": expected_ms,
                "covered_ms": covered_ms,
                "gap_ms": gap_ms,
                "captured_ms": covered_ms - gap_ms,
            }
        )
    return tracks


def document(
    detail: RecordingDetail,
    verdict: RecordingVerdict | None,
    audit: list[AuditEvent],
    records: RecordsView,
    tz: dt.tzinfo,
    last_run: VerificationRun | None = None,
    policy: tuple[str, str, int] | None = None,
) -> dict[str, object]:
    r = detail.recording
    objects: list[SegmentRow | RecordFileRow] = [*detail.segments, *detail.records]
    retain = [o.retain_until_ms for o in objects if o.retain_until_ms is not None]
    verified = [o.verified_ms for o in objects if o.verified_ms is not None]
    joins: dict[str, list[dict[str, object]]] = {}
    for event in records.presence:
        joins.setdefault(str(event["user_id"]), []).append(event)
    return {
        "schema": SCHEMA,
        "recording": {
            **recording_fields(r, tz),
            "duration_ms": None if r.ended_ms is None else r.ended_ms - r.started_ms,
            "contact_center": {
                "queue_id": r.cc_queue_id,
                "queue_name": r.cc_queue_name,
                "agent_id": r.cc_agent_id,
                "agent_name": r.cc_agent_name,
            },
        },
        "participants": [
            {
                "user_id": p.user_id,
                "user_name": p.user_name,
                "role": p.role,
                "first_seen_ms": p.first_seen_ms,
                "presence": joins.get(p.user_id, []),
            }
            for p in detail.participants
        ],
        "tracks": _track_facts(detail),
        "video_tracks": video_facts(detail),
        "gaps": [
            {
                "track": g.track,
                "start_ms": g.start_ms,
                "end_ms": g.end_ms,
                "start_sample": g.start_sample,
                "end_sample": g.end_sample,
                "cause": g.cause,
                "detail": g.detail,
            }
            for g in sorted(detail.gaps, key=lambda g: (g.start_ms, g.track))
        ],
        "pauses": [
            {"start_ms": p.start_ms, "end_ms": p.end_ms, "actor": p.actor} for p in detail.pauses
        ],
        "transcript": {
            "lines": records.transcript_lines,
            "excerpt": records.excerpt,
            "chat_messages": records.chat_messages,
        },
        "legal_holds": [hold_fields(h) for h in detail.holds],
        "retention": retention_fields(policy, retain),
        "verification": {
            "run_now": verdict is not None,
            "ok": None if verdict is None else verdict.ok,
            "counts": {} if verdict is None else {v.value: verdict.count(v) for v in Verdict},
            "problems": []
            if verdict is None
            else [
                {"object_key": o.object_key, "verdict": o.verdict.value, "detail": o.detail}
                for o in verdict.objects
                if o.verdict is not Verdict.VERIFIED
            ],
            # The newest ``recorder verify`` run, else the uploader's read-back check.
            "last_verified_ms": last_run.verified_ms
            if last_run is not None
            else (max(verified) if verified else None),
            "last_result": None
            if last_run is None
            else {"ok": last_run.ok, "failures": list(last_run.failures)},
            "oldest_verified_ms": min(verified)
            if len(verified) == len(objects) and verified
            else None,
        },
        "lifecycle_events": [
            {
                "event": e.event,
                "failed": e.failed,
                "received_ms": e.received_ms,
                "reason": e.reason,
                "rtms_stream_id": e.rtms_stream_id,
                "summary": describe_lifecycle_event(e),
            }
            for e in detail.lifecycle_events
        ],
        "audit_trail": [
            {
                "audit_id": a.audit_id,
                "at_ms": a.at_ms,
                "actor": a.actor,
                "action": a.action,
                "reason": a.reason,
            }
            for a in audit
        ],
        "records_problems": records.problems,
    }


def _s(ms: object) -> str:
    return f"{int(ms) / 1000:.1f} s" if isinstance(ms, int) else "-"


def render(doc: dict[str, object], tz: dt.tzinfo) -> list[str]:
    rec = doc["recording"]
    assert isinstance(rec, dict)

    def t(ms: object) -> str:
        return show_time(ms if isinstance(ms, int) else None, tz)

    lines = [
        f"{rec['product']} {rec['instance_id']}",
        f"  recording {rec['recording_id']}  stream {rec['rtms_stream_id']}",
        f"  {rec['status']}, {t(rec['started_ms'])} .. {t(rec['ended_ms'])}, "
        f"{show_duration(rec['duration_ms'] if isinstance(rec['duration_ms'], int) else None)}, "
        f"ended: {rec['end_reason'] or '-'}",
    ]
    cc = rec["contact_center"]
    assert isinstance(cc, dict)
    if cc["queue_name"] or cc["agent_name"] or cc["queue_id"]:
        lines.append(
            f"  queue {cc['queue_name'] or cc['queue_id']}  agent {cc['agent_name'] or '-'}"
        )
    lines.append("participants:")
    for p in doc["participants"]:  # type: ignore[attr-defined]
        presence = ", ".join(f"{e['event']} {t(e['ts_ms'])}" for e in p["presence"])
        role = f" ({p['role']})" if p["role"] else ""
        lines.append(
            f"  {p['user_name'] or p['user_id']}{role}  first seen {t(p['first_seen_ms'])}"
            + (f"  [{presence}]" if presence else "")
        )
    lines.append("tracks:")
    for tr in doc["tracks"]:  # type: ignore[attr-defined]
        lines.append(
            f"  {tr['track']}: {len(tr['segments'])} segment(s), source {tr['source']} "
            f"{tr['sample_rate']} Hz; expected {_s(tr['expected_ms'])}, captured "
            f"{_s(tr['captured_ms'])} (gaps {_s(tr['gap_ms'])})"
        )
        for seg in tr["segments"]:
            lines.append(
                f"    #{seg['index']} {t(seg['start_ms'])} .. {t(seg['end_ms'])} "
                f"{seg['upload_state']}" + (" recovered" if seg["recovered"] else "")
            )
    for g in doc["gaps"]:  # type: ignore[attr-defined]
        lines.append(
            f"  gap {g['track']} {t(g['start_ms'])} .. {t(g['end_ms'])} "
            f"({(g['end_ms'] - g['start_ms']) / 1000:.2f} s): {g['cause']}"
        )
    for p in doc["pauses"]:  # type: ignore[attr-defined]
        lines.append(
            f"  paused {t(p['start_ms'])} .. {t(p['end_ms'])} by {p['actor'] or 'unknown'}"
        )
    lines += render_video(doc["video_tracks"], t)  # type: ignore[arg-type]
    transcript = doc["transcript"]
    assert isinstance(transcript, dict)
    lines.append(
        f"transcript: {transcript['lines']} line(s), chat: {transcript['chat_messages']} message(s)"
    )
    for cue in transcript["excerpt"]:
        lines.append(f"  {t(cue['ts_ms'])}  {cue['speaker']}: {cue['text']}")
    holds = doc["legal_holds"]
    assert isinstance(holds, list)
    if not holds:
        lines.append("legal holds: none")
    for h in holds:
        state = "ACTIVE" if h["active"] else f"released {t(h['released_ms'])}"
        lines.append(f"  hold {h['matter']} ({h['scope']}) by {h['placed_by']}: {state}")
    retention = doc["retention"]
    assert isinstance(retention, dict)
    lines.append(
        f"retention: policy {_policy_name(retention['policy'])}, retain until "
        f"{t(retention['retain_until_max_ms'])}"
    )
    check = doc["verification"]
    assert isinstance(check, dict)
    if check["run_now"]:
        counts = ", ".join(f"{n} {k}" for k, n in check["counts"].items() if n)
        lines.append(f"verification: {'OK' if check['ok'] else 'PROBLEM'} ({counts})")
        for problem in check["problems"]:
            lines.append(f"  {problem['object_key']}: {problem['verdict']} {problem['detail']}")
    last = check["last_result"]
    result = ""
    if last is not None:
        result = ": OK" if last["ok"] else ": FAILED " + ",".join(last["failures"])
    lines.append(f"  last verified {t(check['last_verified_ms'])}{result}")
    for e in doc["lifecycle_events"]:  # type: ignore[attr-defined]
        label = "failed start" if e["failed"] else "lifecycle"
        lines.append(f"  {label}: {e['summary']}")
    lines.append("audit trail:")
    for a in doc["audit_trail"]:  # type: ignore[attr-defined]
        lines.append(f"  {t(a['at_ms'])}  {a['actor']}  {a['action']}  {a['reason']}")
    for problem in doc["records_problems"]:  # type: ignore[attr-defined]
        lines.append(f"  records unreadable: {problem}")
    return lines


async def show(c: Components, args: argparse.Namespace) -> int:
    tz = zone(getattr(args, "tz", None))
    detail = await c.catalog.show(args.recording_id)
    if detail is None:
        print(f"no recording {args.recording_id!r}")
        return 2
    actor = getattr(args, "actor", None) or os_actor()
    reason = getattr(args, "reason", None) or "recorder show"
    destroyed = await c.catalog.destruction_records(args.recording_id)
    verdict = None
    # A destroyed recording is unreadable by design: nothing to verify or decrypt.
    if not getattr(args, "no_verify", False) and not destroyed:
        verdict = await verify_recording(c, args.recording_id, actor=actor, reason=reason)
    records = RecordsView()
    if detail.records and not destroyed:
        from recorder.service.components import now_ms

        await c.catalog.append_audit(
            actor=actor,
            action="show",
            target=args.recording_id,
            reason=reason,
            now_ms=now_ms(),
            details={"decrypted": "records (transcript excerpt, presence)"},
        )
        records = await read_records(c, detail)
    audit = await c.catalog.audit_trail(args.recording_id)
    last_run = await c.catalog.last_verification(args.recording_id)
    policy = await c.catalog.recording_policy(args.recording_id)
    doc = document(detail, verdict, audit, records, tz, last_run, policy)
    from recorder.completeness.commands import show_fields, show_lines

    doc.update(await show_fields(c, detail.recording, tz))
    doc["destruction"] = destruction_fields(
        destroyed, await c.catalog.pii_scrub(args.recording_id), on_hold=detail.on_hold
    )
    if getattr(args, "json", False):
        print(json.dumps(doc, indent=2, sort_keys=True, default=str))
    else:
        for line in [*destruction_lines(doc, tz), *render(doc, tz), *show_lines(doc)]:
            print(line)
    return 0 if verdict is None or verdict.ok else 90


def _policy_name(policy: object) -> str:
    return str(policy["name"]) if isinstance(policy, dict) else "(none assigned yet)"
