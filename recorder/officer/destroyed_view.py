"""``show``'s ``destruction`` part: when a recording was destroyed, under which rule, and what
personal data the catalog scrubbed with it (``recorder.catalog._scrub``), or why not yet."""

from __future__ import annotations

import datetime as dt

from recorder.catalog.scrub_types import PiiScrub
from recorder.evidence_destruction import DestructionRecord
from recorder.officer.when import show_time


def destruction_fields(
    records: list[DestructionRecord], scrub: PiiScrub | None, *, on_hold: bool
) -> dict[str, object] | None:
    """``None`` for a recording that was never destroyed."""
    if not records:
        return None
    if scrub is not None:
        pending = None
    elif on_hold:
        pending = "a legal hold covers the recording: its personal data stays until released"
    else:
        pending = "not scrubbed yet: the next `recorder retention run` scrubs it"
    return {
        "records": [
            {
                "method": r.method.value,
                "destroyed_ms": r.destroyed_ms,
                "rule": r.rule,
                "actor": r.actor,
                "record_sha256": r.sha256(),
            }
            for r in records
        ],
        "personal_data": None
        if scrub is None
        else {
            "scrubbed_ms": scrub.scrubbed_ms,
            "actor": scrub.actor,
            "scrubbed": scrub.scrubbed,
            "summary": scrub.summary(),
        },
        "personal_data_pending": pending,
    }


def destruction_lines(doc: dict[str, object], tz: dt.tzinfo) -> list[str]:
    part = doc.get("destruction")
    if not isinstance(part, dict):
        return []
    lines: list[str] = []
    for r in part["records"]:
        lines.append(
            f"DESTROYED {show_time(r['destroyed_ms'], tz)} ({r['method']}) under {r['rule']} "
            f"by {r['actor']}, record sha256 {r['record_sha256'][:16]}"
        )
    scrub = part["personal_data"]
    if isinstance(scrub, dict):
        lines.append(
            f"  personal data scrubbed {show_time(scrub['scrubbed_ms'], tz)} by {scrub['actor']}: "
            f"{scrub['summary']}"
        )
        instance = scrub["scrubbed"].get("instance")
        if instance:
            lines.append(f"  meeting / engagement data: {instance}")
    else:
        lines.append(f"  personal data: {part['personal_data_pending']}")
    return lines
