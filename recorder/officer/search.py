"""``recorder search``: find recordings by what officers know; a table, or ``--json``.

The ``--json`` output is one object, schema ``rtms-recorder.search/1`` (stable: fields are only
ever added, never renamed or removed; docs/officer-search.md lists them)::

    {"schema": "rtms-recorder.search/1", "timezone": "...", "count": N,
     "next_cursor": "..." | null, "recordings": [{...}, ...]}

Paging: ``--limit`` per page, ``--after CURSOR`` (the previous page's ``next_cursor``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import TYPE_CHECKING, Final

from recorder.catalog.base import Product, RecordingStatus
from recorder.catalog.search import RecordingQuery, SearchHit, SearchPage
from recorder.crypto.blind_index import KEY_FILE_NAME, SearchKey, load_search_key
from recorder.errors import RecorderError
from recorder.officer.actor import os_actor
from recorder.officer.search_audit import PERSONAL_FIELDS, search_details
from recorder.officer.selection import selection_text
from recorder.officer.when import (
    parse_when,
    recording_fields,
    show_duration,
    show_time,
    zone,
)

if TYPE_CHECKING:
    from recorder.service.components import Components

SCHEMA: Final = "rtms-recorder.search/1"

#: What officers ask for that the catalog cannot answer, and why (said, not silently ignored).
NOT_SEARCHABLE: Final = {
    "email": "participant email is not searchable: RTMS participant events carry no email",
}
#: The filter flags (``add_filter_arguments``), by their ``argparse`` destination.
FILTERS: Final = (
    "since",
    "until",
    "product",
    "any_id",
    "instance",
    "stream",
    "participant",
    "agent",
    "caller",
    "queue",
    "status",
    "incomplete",
    "has_gaps",
    "gap_cause",
    "on_hold",
    "policy",
    "topic",
    "host",
    "number",
    "text",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_filter_arguments(p)
    p.add_argument("--limit", type=int, default=50, help="recordings per page")
    p.add_argument("--after", help="the next_cursor of the previous page")
    p.add_argument("--json", action="store_true", help="machine-readable (schema search/1)")


#: The free-text filters (option, help): every one refuses an empty value (``selection_text``).
_TEXT_FILTERS: Final = (
    ("--since", "from (2026-03-01, 2026-03-01 09:30, today, 7d, ...)"),
    ("--until", "to (a date alone means the end of that day)"),
    ("--tz", "time zone for input and output (default UTC)"),
    ("--id", "any id: recording, meeting, call, stream, ..."),
    ("--instance", "meeting/webinar uuid, session, engagement or call id"),
    ("--stream", "rtms_stream_id"),
    ("--participant", "participant user id or display name"),
    ("--agent", "Contact Center agent or the firm's side of a call"),
    ("--caller", "the caller (customer) of a call"),
    ("--queue", "Contact Center queue id or name"),
    ("--gap-cause", "recordings with a gap of this cause"),
    ("--policy", "the retention policy in force (name, e.g. finra-4511)"),
    ("--topic", "meeting topic (whole, any case; from Zoom's directory)"),
    ("--host", "meeting host id or email (from Zoom's directory)"),
    ("--number", "phone number: consumer, caller or callee (digits)"),
    (
        "--text",
        "transcript words, all in one recording (any order; blind index, see docs/officer.md)",
    ),
)


def add_filter_arguments(p: argparse.ArgumentParser) -> None:
    """Every search filter (``recorder search``, and ``recorder export`` by a search)."""
    for option, help_text in _TEXT_FILTERS:
        dest = "any_id" if option == "--id" else None  # None: argparse derives it
        p.add_argument(option, dest=dest, type=selection_text, help=help_text)
    p.add_argument("--product", choices=[product.value for product in Product])
    p.add_argument(
        "--status", action="append", choices=[s.value for s in RecordingStatus], default=[]
    )
    p.add_argument("--incomplete", action="store_true", help="status incomplete or revoked")
    p.add_argument("--has-gaps", action="store_true")
    p.add_argument("--on-hold", action="store_true", help="under an active legal hold")
    p.add_argument(
        "--findings",
        action="store_true",
        help="completeness findings (missing / incomplete) instead of recordings",
    )
    for name in NOT_SEARCHABLE:
        p.add_argument(f"--{name}", default=None, help=argparse.SUPPRESS)


def has_filters(args: argparse.Namespace) -> bool:
    return any(getattr(args, name, None) not in (None, False, []) for name in FILTERS)


def text_key(c: Components, args: argparse.Namespace) -> SearchKey | None:
    """The search key when ``--text`` asks for one (it must exist: made by the recorder)."""
    if getattr(args, "text", None) is None:
        return None
    return load_search_key(c.config.keys.key_dir, create=False)


def search_key(c: Components, args: argparse.Namespace) -> SearchKey | None:
    """The search key when the search needs one: ``--text`` is matched under it, and a search
    for a person is audited under it (``search_audit``). Missing: ``ConfigError`` naming the
    file, before anything is searched."""
    wanted = ("text", *PERSONAL_FIELDS)
    if all(getattr(args, name, None) is None for name in wanted):
        return None
    return load_search_key(c.config.keys.key_dir, create=False)


def query_from(
    args: argparse.Namespace, tz: dt.tzinfo, key: SearchKey | None = None
) -> RecordingQuery:
    for name, why in NOT_SEARCHABLE.items():
        if getattr(args, name, None) is not None:
            raise RecorderError(why)
    text_macs: tuple[str, ...] = ()
    if getattr(args, "text", None) is not None:
        if key is None:
            raise RecorderError("--text needs the search-index key")
        text_macs = tuple(key.query(args.text))
    statuses = [RecordingStatus(s) for s in args.status]
    if args.incomplete:
        statuses += [RecordingStatus.INCOMPLETE, RecordingStatus.REVOKED]
    any_id = args.any_id or args.instance or args.stream
    return RecordingQuery(
        since_ms=parse_when(args.since, tz) if args.since else None,
        until_ms=parse_when(args.until, tz, end=True) if args.until else None,
        product=Product(args.product) if args.product else None,
        any_id=any_id,
        participant=args.participant,
        agent=args.agent,
        caller=args.caller,
        queue=args.queue,
        statuses=tuple(dict.fromkeys(statuses)),
        has_gaps=args.has_gaps,
        gap_cause=args.gap_cause,
        on_hold=args.on_hold,
        policy=args.policy,
        # Callers that build their own namespace (the web console) may not know these.
        topic=getattr(args, "topic", None),
        host=getattr(args, "host", None),
        number=getattr(args, "number", None),
        text_macs=text_macs,
        after=getattr(args, "after", None),
        limit=args.limit,
    )


def hit_json(hit: SearchHit, tz: dt.tzinfo) -> dict[str, object]:
    r = hit.recording
    return {
        **recording_fields(r, tz),
        "duration_ms": hit.duration_ms,
        "cc_queue_id": r.cc_queue_id,
        "cc_queue_name": r.cc_queue_name,
        "cc_agent_id": r.cc_agent_id,
        "cc_agent_name": r.cc_agent_name,
        "participant_count": hit.participant_count,
        "gap_count": hit.gap_count,
        "gap_ms": hit.gap_ms,
        "on_hold": hit.on_hold,
    }


def render_table(page: SearchPage, tz: dt.tzinfo) -> list[str]:
    lines = [
        f"{'started':<24} {'duration':>9} {'product':<14} {'status':<10} {'gaps':>4} "
        f"{'hold':<4} {'who':<24} recording"
    ]
    for hit in page.hits:
        r = hit.recording
        who = r.cc_agent_name or r.cc_queue_name or f"{hit.participant_count} participant(s)"
        gaps = str(hit.gap_count) if hit.gap_count else "-"
        lines.append(
            f"{show_time(r.started_ms, tz):<24} {show_duration(hit.duration_ms):>9} "
            f"{r.product.value:<14} {r.status.value:<10} {gaps:>4} "
            f"{'HOLD' if hit.on_hold else '-':<4} {who[:24]:<24} {r.recording_id}"
        )
    more = f"; next page: --after {page.next_cursor}" if page.next_cursor else ""
    lines.append(f"{len(page.hits)} recording(s){more}")
    return lines


async def search(c: Components, args: argparse.Namespace) -> int:
    if getattr(args, "findings", False):
        from recorder.completeness.commands import search_findings

        return await search_findings(c, args)
    tz = zone(args.tz)
    key = search_key(c, args)
    query = query_from(args, tz, key)
    page = await c.catalog.search_recordings(query)
    if query.text_macs and key is not None:
        await warn_other_keys(c, key)
    from recorder.service.components import now_ms

    # Who looked for what is evidence too (compliance.md: access to recordings is audited).
    # The audit log outlives every recording, so words and people are audited as MACs only
    # (``search_audit``).
    results = [hit.recording.recording_id for hit in page.hits]
    await c.catalog.append_audit(
        actor=os_actor(),
        action="search",
        target="recordings",
        reason="recorder search",
        now_ms=now_ms(),
        details=search_details(query, key, results),
    )
    if args.json:
        body = {
            "schema": SCHEMA,
            "timezone": args.tz or "UTC",
            "count": len(page.hits),
            "next_cursor": page.next_cursor,
            "recordings": [hit_json(hit, tz) for hit in page.hits],
        }
        print(json.dumps(body, indent=2, sort_keys=True))
        return 0
    for line in render_table(page, tz):
        print(line)
    return 0


async def warn_other_keys(c: Components, key: SearchKey) -> None:
    """Say when some recordings were indexed under another search key (they cannot match)."""
    others = {k: n for k, n in (await c.catalog.text_index_keys()).items() if k != key.key_id}
    if others:
        counts = ", ".join(f"{n} under key {k}" for k, n in sorted(others.items()))
        print(
            f"note: transcripts of {sum(others.values())} recording(s) were indexed under another "
            f"search key ({counts}); this host's key is {key.key_id}: copy the recording hosts' "
            f"{KEY_FILE_NAME} here to search them",
            file=sys.stderr,
        )
