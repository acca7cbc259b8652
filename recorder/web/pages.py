"""The console's pages (GET): search, one recording, holds, the audit log, findings.

Each is a thin shell over the officer APIs (``recorder.officer.search``, ``show.document``,
``retention.holds``, the catalog's audit log); what a page shows is what the CLI shows.
Looking is evidence too: a search and a recording page view are audited like the CLI's.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import enum
import functools
from typing import Final
from urllib.parse import urlencode

import trio
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from recorder.catalog.base import Product, RecordingStatus
from recorder.catalog.search import decode_cursor
from recorder.errors import RecorderError
from recorder.officer.search import NOT_SEARCHABLE, hit_json, query_from, search_key
from recorder.officer.search_audit import search_details
from recorder.officer.show import RecordsView, document
from recorder.officer.views import describe_lifecycle_event
from recorder.officer.when import show_duration, show_time, zone
from recorder.web import video as web_video
from recorder.web.auth import require
from recorder.web.console import console_of
from recorder.web.errors import NotFound, WebError
from recorder.web.roles import Permission
from recorder.web.timeline import gap_label, seconds

#: Most rows one page of search results or audit events shows.
MAX_PAGE: Final = 200
AUDIT_PAGE: Final = 200
MAX_FINDINGS: Final = 500
DEFAULT_AUDIT_SINCE: Final = "7d"
_FLAGS: Final = ("incomplete", "has_gaps", "on_hold")
_TEXT: Final = (
    "since", "until", "tz", "product", "id", "participant", "agent", "caller", "queue",
    "gap_cause", "policy", "topic", "host", "number", "text", "after",
)  # fmt: skip


def _search_args(request: Request) -> argparse.Namespace:
    params = request.query_params
    for name in params:
        if name not in (*_TEXT, *_FLAGS, "status", "limit", *NOT_SEARCHABLE):
            raise WebError(f"unknown search filter {name[:40]!r}")
    text = {name: (params.get(name) or "").strip() or None for name in _TEXT}
    for name, value in text.items():
        if value is not None and len(value) > 200:
            raise WebError(f"filter {name}: at most 200 characters")
    product = text["product"]
    if product is not None and product not in {p.value for p in Product}:
        raise WebError(f"filter product: {product[:40]!r} is not a product")
    statuses = params.getlist("status")
    known = {s.value for s in RecordingStatus}
    for status in statuses:
        if status not in known:
            raise WebError(
                f"filter status: {status[:40]!r} is not one of {', '.join(sorted(known))}"
            )
    if text["after"] is not None:
        try:
            decode_cursor(text["after"])
        except ValueError as exc:
            raise WebError(f"filter after: {exc}") from exc
    try:
        limit = int(params.get("limit") or 50)
    except ValueError as exc:
        raise WebError("filter limit: not a number") from exc
    if not 1 <= limit <= MAX_PAGE:
        raise WebError(f"filter limit: 1 to {MAX_PAGE}")
    return argparse.Namespace(
        since=text["since"],
        until=text["until"],
        tz=text["tz"],
        product=product,
        any_id=text["id"],
        instance=None,
        stream=None,
        participant=text["participant"],
        agent=text["agent"],
        caller=text["caller"],
        queue=text["queue"],
        status=statuses,
        incomplete=params.get("incomplete") == "1",
        has_gaps=params.get("has_gaps") == "1",
        gap_cause=text["gap_cause"],
        on_hold=params.get("on_hold") == "1",
        policy=text["policy"],
        topic=text["topic"],
        host=text["host"],
        number=text["number"],
        text=text["text"],
        after=text["after"],
        limit=limit,
        **{name: params.get(name) for name in NOT_SEARCHABLE},
    )


async def search_page(request: Request) -> Response:
    principal = await require(request, Permission.SEARCH)
    console = console_of(request)
    c = console.components
    hits: list[dict[str, object]] = []
    next_url = None
    searched = bool(request.query_params)
    try:
        args = _search_args(request)
        tz = zone(args.tz)
        # Transcript words are matched through the blind index, and words and people are
        # audited as MACs under its key (``search_audit``): loaded before anything is searched.
        key = search_key(c, args)
        query = query_from(args, tz, key)
    except RecorderError as exc:
        return console.render(
            request, principal, "search.html", status=400, error=str(exc),
            params=request.query_params, products=[p.value for p in Product],
            statuses=[s.value for s in RecordingStatus], hits=[], next_url=None,
            searched=searched,
        )  # fmt: skip
    page = await c.catalog.search_recordings(query)
    await c.catalog.append_audit(
        actor=principal.actor,
        action="search",
        target="recordings",
        reason="web console search",
        now_ms=console.now_ms(),
        details=search_details(query, key, [h.recording.recording_id for h in page.hits]),
    )
    for hit in page.hits:
        row = hit_json(hit, tz)
        row["duration"] = show_duration(hit.duration_ms)
        row["gap_seconds"] = f"{hit.gap_ms / 1000:.1f}"
        row["who"] = (
            hit.recording.cc_agent_name
            or hit.recording.cc_queue_name
            or f"{hit.participant_count} participant(s)"
        )
        hits.append(row)
    if page.next_cursor:
        items = [(k, v) for k, v in request.query_params.multi_items() if k != "after"]
        next_url = "/search?" + urlencode([*items, ("after", page.next_cursor)])
    return console.render(
        request, principal, "search.html", params=request.query_params, hits=hits,
        next_url=next_url, products=[p.value for p in Product],
        statuses=[s.value for s in RecordingStatus], error=None, searched=searched,
    )  # fmt: skip


async def recording_page(request: Request) -> Response:
    principal = await require(request, Permission.VIEW)
    console = console_of(request)
    c = console.components
    recording_id = request.path_params["recording_id"]
    detail = await c.catalog.show(recording_id)
    if detail is None:
        raise NotFound(f"no recording {recording_id[:80]!r}")
    try:
        tz = zone(request.query_params.get("tz") or None)
    except RecorderError as exc:
        raise WebError(f"tz: {exc}") from exc
    await c.catalog.append_audit(
        actor=principal.actor,
        action="web.view",
        target=recording_id,
        reason="recording page (metadata only)",
        now_ms=console.now_ms(),
    )
    audit = await c.catalog.audit_trail(recording_id)
    last_run = await c.catalog.last_verification(recording_id)
    policy = await c.catalog.recording_policy(recording_id)
    doc = document(detail, None, audit, RecordsView(), tz, last_run, policy)
    r = detail.recording
    reason = await console.accounts.reason(principal.session_hash, recording_id)
    tracks = []
    for track in doc["tracks"]:  # type: ignore[attr-defined]
        first = min(s["start_ms"] for s in track["segments"])
        tracks.append(
            {
                **track,
                "offset_s": seconds(first - r.started_ms),
                "audio_url": f"/recordings/{recording_id}/tracks/{track['track']}/audio",
                "peaks_url": f"/recordings/{recording_id}/tracks/{track['track']}/peaks.json",
            }
        )
    gaps = [
        {
            **g,
            "start_s": seconds(g["start_ms"] - r.started_ms),
            "end_s": seconds(g["end_ms"] - r.started_ms),
            "label": gap_label(str(g["cause"])),
            "length": f"{(g['end_ms'] - g['start_ms']) / 1000:.2f} s",
            "at": show_time(g["start_ms"], tz),
        }
        for g in doc["gaps"]  # type: ignore[attr-defined]
    ]
    pauses = [
        {
            **p,
            "start_s": seconds(p["start_ms"] - r.started_ms),
            "end_s": seconds((p["end_ms"] or p["start_ms"]) - r.started_ms),
            "at": show_time(p["start_ms"], tz),
        }
        for p in doc["pauses"]  # type: ignore[attr-defined]
    ]
    return console.render(
        request, principal, "recording.html", doc=doc, r=doc["recording"], tracks=tracks,
        gaps=gaps, pauses=pauses, reason=reason, t=lambda ms: show_time(ms, tz),
        video_track=web_video.video_track(detail), video_url=web_video.url(recording_id),
        duration=show_duration(doc["recording"]["duration_ms"]),  # type: ignore[index]
        events=[describe_lifecycle_event(e) for e in detail.lifecycle_events],
        media_available=console.media is not None,
        verified=request.query_params.get("verified"),
        tz=request.query_params.get("tz"),
    )  # fmt: skip


async def holds_page(request: Request) -> Response:
    principal = await require(request, Permission.HOLD)
    console = console_of(request)
    c = console.components
    holds = await c.catalog.holds(active_only=False)
    rules = await c.catalog.hold_rules(active_only=False)
    tz = zone(None)
    return console.render(
        request, principal, "holds.html", holds=holds, rules=rules,
        t=lambda ms: show_time(ms, tz), error=request.query_params.get("error"),
        recording_id=request.query_params.get("recording", ""),
    )  # fmt: skip


async def audit_page(request: Request) -> Response:
    principal = await require(request, Permission.AUDIT)
    console = console_of(request)
    c = console.components
    params = request.query_params
    if not params:
        # The log only grows: by default, the last week (oldest first, paged); clear to see all.
        return RedirectResponse(f"/audit?since={DEFAULT_AUDIT_SINCE}", status_code=303)
    from recorder.officer.when import parse_when

    tz = zone(None)
    try:
        after = int(params.get("after") or 0)
        since = parse_when(params["since"], tz) if params.get("since") else None
        until = parse_when(params["until"], tz, end=True) if params.get("until") else None
    except (ValueError, RecorderError) as exc:
        raise WebError(f"audit filter: {exc}") from exc
    events = await c.catalog.audit_events(
        actor=params.get("actor") or None,
        action=params.get("action") or None,
        target=params.get("recording") or None,
        since_ms=since,
        until_ms=until,
        after_id=after,
        limit=AUDIT_PAGE,
    )
    next_url = None
    if len(events) == AUDIT_PAGE:
        items = [(k, v) for k, v in params.multi_items() if k != "after"]
        next_url = "/audit?" + urlencode([*items, ("after", str(events[-1].audit_id))])
    return console.render(
        request, principal, "audit.html", events=events, params=params, next_url=next_url,
        t=lambda ms: show_time(ms, tz),
    )  # fmt: skip


def _finding_view(row: object, tz: dt.tzinfo) -> dict[str, object]:
    """A completeness finding (``recorder.completeness``) as the page shows it, by its fields."""
    fields = dataclasses.asdict(row) if dataclasses.is_dataclass(row) else {}  # type: ignore[arg-type]
    shown = {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in fields.items()}
    for key in ("first_found_ms", "updated_ms", "resolved_ms"):
        value = shown.get(key)
        shown[key.removesuffix("_ms")] = show_time(value if isinstance(value, int) else None, tz)
    return shown


async def findings_page(request: Request) -> Response:
    principal = await require(request, Permission.FINDINGS)
    console = console_of(request)
    c = console.components
    tz = zone(None)
    failed = await c.catalog.lifecycle_events(failed_only=True, limit=500)
    # Missing and incomplete recordings come from the completeness reconciler's catalog rows
    # when this build has them (``findings`` on the catalog); else the page says so.
    query = getattr(c.catalog.sync, "findings", None)
    findings = None
    if callable(query):
        rows = await trio.to_thread.run_sync(functools.partial(query, limit=MAX_FINDINGS))
        findings = [_finding_view(row, tz) for row in rows]
    await c.catalog.append_audit(
        actor=principal.actor,
        action="web.findings",
        target="findings",
        reason="findings page",
        now_ms=console.now_ms(),
    )
    return console.render(
        request,
        principal,
        "findings.html",
        failed=[describe_lifecycle_event(e) for e in failed],
        findings=findings,
    )
