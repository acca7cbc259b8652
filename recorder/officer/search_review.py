"""``recorder audit searches --for VALUE``: which searches looked for a person (officer review);
``recorder audit hold-rules --for VALUE``: which hold rules named one.

The audit log holds a searched person only as a keyed MAC (``search_audit``), so this computes
the value's MAC for each field asked (all personal fields by default) and lists the ``search``
events that carry it, oldest first. Events written before searches were MAC'd hold the filter as
typed: those are compared after the same normalisation and flagged ``legacy``. Events MAC'd under
another search key cannot be checked here: they are counted by key id, not guessed.

The review is itself audited (``audit.searches``), with the MACs, never the value. ``--json``
prints one object, schema ``rtms-recorder.audit-searches/1``::

    {"schema": ..., "fields": [...], "timezone": ..., "count": N, "key_id": "...",
     "other_keys": {key_id: events}, "events": [{"audit_id", "at", "actor", "target", "reason",
     "fields": [...], "legacy": bool, "results": [recording ids]}]}

``hold-rules`` reads ``hold.rule.place`` events the same way (their ``participant`` and ``queue``
are MAC'd under the same key and label; events written before that hold the rule as typed:
``legacy``), is audited as ``audit.hold_rules``, and prints schema
``rtms-recorder.audit-hold-rules/1``: the same object, each event with ``rule_id`` instead of
``results``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import tzinfo
from typing import TYPE_CHECKING, Final

from recorder.catalog.base import AuditEvent
from recorder.catalog.retention_types import HOLD_RULE_PERSONAL_FIELDS
from recorder.crypto.blind_index import SearchKey, load_search_key
from recorder.officer.actor import os_actor
from recorder.officer.search_audit import PERSONAL_FIELDS, filter_mac, normalised
from recorder.officer.when import parse_when, show_time, zone

if TYPE_CHECKING:
    from recorder.service.components import Components

SCHEMA: Final = "rtms-recorder.audit-searches/1"
HOLD_RULES_SCHEMA: Final = "rtms-recorder.audit-hold-rules/1"
#: Audit events read per query: bounded memory on a years-long log.
PAGE: Final = 1_000


@dataclass(frozen=True, slots=True)
class Reviewed:
    """One kind of audit event a review reads for a person."""

    #: The audit action read, the one the review itself is audited as, and its command.
    action: str
    audit_action: str
    command: str
    #: The personal fields a value may be in; where pre-MAC events keep the values as typed.
    fields: tuple[str, ...]
    legacy_key: str
    schema: str
    noun: str


SEARCHES: Final = Reviewed(
    "search",
    "audit.searches",
    "recorder audit searches",
    PERSONAL_FIELDS,
    "filters",
    SCHEMA,
    "search(es)",
)
HOLD_RULES: Final = Reviewed(
    "hold.rule.place",
    "audit.hold_rules",
    "recorder audit hold-rules",
    HOLD_RULE_PERSONAL_FIELDS,
    "rule",
    HOLD_RULES_SCHEMA,
    "hold rule(s)",
)


def add_arguments(p: argparse.ArgumentParser, reviewed: Reviewed = SEARCHES) -> None:
    p.add_argument("--for", dest="value", required=True, help="the value looked for")
    p.add_argument(
        "--field",
        choices=reviewed.fields,
        default=None,
        help="the field it was typed into (default: any of them)",
    )
    p.add_argument("--since", help="from (2026-03-01, 7d, ...; default: the whole log)")
    p.add_argument("--until", help="to (a date alone means the end of that day)")
    p.add_argument("--tz", default=None, help="time zone for input and output (default UTC)")
    p.add_argument("--json", action="store_true", help="machine-readable (audit-searches/1)")


@dataclass(frozen=True, slots=True)
class Match:
    event: AuditEvent
    fields: tuple[str, ...]
    legacy: bool
    results: tuple[str, ...]
    #: A hold rule's id (``hold.rule.place`` events); ``None`` for searches.
    rule_id: int | None = None


@dataclass(frozen=True, slots=True)
class Wanted:
    """What a matching event carries: per field, the value's MAC and its normalised form."""

    key: SearchKey
    macs: dict[str, str]
    values: dict[str, str]

    @classmethod
    def of(cls, key: SearchKey, value: str, fields: tuple[str, ...]) -> Wanted:
        return cls(
            key,
            {field: filter_mac(key, field, value) for field in fields},
            {field: normalised(field, value) for field in fields},
        )


def match(event: AuditEvent, wanted: Wanted, legacy_key: str = "filters") -> Match | str | None:
    """The match, or the id of the other key an event was MAC'd under, or ``None``.

    ``legacy_key``: where an event written before MACs keeps the values as typed."""
    try:
        details = json.loads(event.details_json)
    except ValueError:
        return None
    if not isinstance(details, dict):
        return None
    raw_results = details.get("results")
    results = tuple(str(r) for r in raw_results) if isinstance(raw_results, list) else ()
    raw_rule_id = details.get("rule_id")
    rule_id = raw_rule_id if isinstance(raw_rule_id, int) else None
    personal = details.get("personal")
    if isinstance(personal, list):
        mac_key = details.get("mac_key")
        if not isinstance(mac_key, str):
            return None
        if mac_key != wanted.key.key_id:
            return mac_key
        entries = [entry for entry in personal if isinstance(entry, dict)]
        fields = tuple(
            str(entry.get("field"))
            for entry in entries
            if wanted.macs.get(str(entry.get("field"))) == entry.get("mac")
        )
        return Match(event, fields, False, results, rule_id) if fields else None
    # Written before these values were MAC'd: as typed.
    typed = details.get(legacy_key)
    if not isinstance(typed, dict):
        return None
    fields = tuple(
        field
        for field, value in wanted.values.items()
        if isinstance(typed.get(field), str) and normalised(field, typed[field]) == value
    )
    return Match(event, fields, True, results, rule_id) if fields else None


async def review(
    c: Components,
    wanted: Wanted,
    since_ms: int | None,
    until_ms: int | None,
    reviewed: Reviewed = SEARCHES,
) -> tuple[list[Match], dict[str, int]]:
    """Every matching event in range, oldest first; events under other keys, counted."""
    found: list[Match] = []
    others: dict[str, int] = {}
    after = 0
    while True:
        events = await c.catalog.audit_events(
            action=reviewed.action,
            since_ms=since_ms,
            until_ms=until_ms,
            after_id=after,
            limit=PAGE,
        )
        for event in events:
            got = match(event, wanted, reviewed.legacy_key)
            if isinstance(got, Match):
                found.append(got)
            elif got is not None:
                others[got] = others.get(got, 0) + 1
        if len(events) < PAGE:
            return found, others
        after = events[-1].audit_id


async def audit_searches(c: Components, args: argparse.Namespace) -> int:
    return await _audit_review(c, args, SEARCHES)


async def audit_hold_rules(c: Components, args: argparse.Namespace) -> int:
    return await _audit_review(c, args, HOLD_RULES)


def _event_json(m: Match, reviewed: Reviewed, tz: tzinfo) -> dict[str, object]:
    body: dict[str, object] = {
        "audit_id": m.event.audit_id,
        "at": show_time(m.event.at_ms, tz),
        "actor": m.event.actor,
        "target": m.event.target,
        "reason": m.event.reason,
        "fields": list(m.fields),
        "legacy": m.legacy,
    }
    if reviewed is HOLD_RULES:
        body["rule_id"] = m.rule_id
    else:
        body["results"] = list(m.results)
    return body


async def _audit_review(c: Components, args: argparse.Namespace, reviewed: Reviewed) -> int:
    tz = zone(args.tz)
    since = parse_when(args.since, tz) if args.since else None
    until = parse_when(args.until, tz, end=True) if args.until else None
    key = load_search_key(c.config.keys.key_dir, create=False)
    fields = (args.field,) if args.field else reviewed.fields
    wanted = Wanted.of(key, args.value, fields)
    found, others = await review(c, wanted, since, until, reviewed)
    from recorder.service.components import now_ms

    # Reading who looked for someone is itself an officer's act: audited, with the MACs only.
    await c.catalog.append_audit(
        actor=os_actor(),
        action=reviewed.audit_action,
        target="audit_log",
        reason=reviewed.command,
        now_ms=now_ms(),
        details={
            "personal": [{"field": f, "mac": mac} for f, mac in wanted.macs.items()],
            "mac_key": key.key_id,
            "since_ms": since,
            "until_ms": until,
            "matched": [m.event.audit_id for m in found],
        },
    )
    if args.json:
        body = {
            "schema": reviewed.schema,
            "fields": list(fields),
            "timezone": args.tz or "UTC",
            "count": len(found),
            "key_id": key.key_id,
            "other_keys": others,
            "events": [_event_json(m, reviewed, tz) for m in found],
        }
        print(json.dumps(body, indent=2, sort_keys=True))
        return 0
    for m in found:
        legacy = " (legacy)" if m.legacy else ""
        what = f"rule #{m.rule_id}" if reviewed is HOLD_RULES else f"{len(m.results):>4} result(s)"
        print(
            f"#{m.event.audit_id:<6} {show_time(m.event.at_ms, tz):<24} {m.event.actor:<24} "
            f"{','.join(m.fields):<12} {what}  {m.event.reason}{legacy}"
        )
    print(f"{len(found)} {reviewed.noun} looked for it")
    for key_id, count in sorted(others.items()):
        print(f"note: {count} {reviewed.noun} were audited under another search key ({key_id})")
    return 0
