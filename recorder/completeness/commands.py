"""CLI: ``recorder search --findings``, ``recorder completeness pull|reconcile``,
``recorder enrich --retry``, and what ``recorder show`` adds (enrichment, findings).

``search --findings --json`` is one object, schema ``rtms-recorder.findings/1`` (fields only
ever added)::

    {"schema": "rtms-recorder.findings/1", "timezone": "...", "count": N,
     "findings": [{"kind", "cause", "detail", "product", "instance_id", "recording_id",
                   "expected_start", "first_found", "updated", "resolved"}, ...]}
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import json
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Final

from recorder.catalog.base import RecordingRow
from recorder.completeness.enrichment import Enricher
from recorder.completeness.model import FindingRow
from recorder.completeness.pull import pull
from recorder.completeness.reconcile import reconcile_once
from recorder.completeness.store import run
from recorder.errors import ConfigError, RecorderError
from recorder.officer.actor import os_actor
from recorder.officer.when import parse_when, show_time, zone
from recorder.zoom.directory import ZoomDirectory

if TYPE_CHECKING:
    from recorder.service.components import Components

FINDINGS_SCHEMA: Final = "rtms-recorder.findings/1"


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``completeness pull|reconcile`` and ``enrich``: registered by ``recorder.cli``."""

    def config_arg(q: argparse.ArgumentParser) -> None:
        q.add_argument("--config", type=Path, default=None, help="TOML configuration file")

    p = sub.add_parser("completeness", help="expected recordings: pull from Zoom, reconcile")
    csub = p.add_subparsers(dest="completeness_command", required=True)
    q = csub.add_parser("pull", help="record expectations for what Zoom lists as started")
    config_arg(q)
    q.add_argument("--since", required=True, help="from (2026-03-01, 2d, today, ...)")
    q.add_argument("--until", default=None, help="to (default now)")
    q.add_argument("--tz", default=None)
    q = csub.add_parser("reconcile", help="match expectations with recordings; store findings")
    config_arg(q)
    q.add_argument("--json", action="store_true")
    q.add_argument(
        "--all", action="store_true", help="also expectations whose verdict was final already"
    )
    p = sub.add_parser("enrich", help="ask Zoom's directory about recordings not yet enriched")
    config_arg(p)
    p.add_argument(
        "--retry", action="store_true", help="also retry enrichments that gave up (failed)"
    )


def _now_ms() -> int:
    from recorder.service.components import now_ms

    return now_ms()


def finding_json(f: FindingRow, expected_start_ms: int | None, tz: dt.tzinfo) -> dict[str, object]:
    def when(ms: int | None) -> str | None:
        return None if ms is None else show_time(ms, tz)

    return {
        "kind": f.kind.value,
        "cause": f.cause.value,
        "detail": f.detail,
        "product": f.product.value,
        "instance_id": f.instance_id,
        "recording_id": f.recording_id,
        "expected_start": when(expected_start_ms),
        "first_found": when(f.first_found_ms),
        "updated": when(f.updated_ms),
        "resolved": when(f.resolved_ms),
    }


async def search_findings(c: Components, args: argparse.Namespace) -> int:
    """``recorder search --findings [--since --until --tz --limit --json]`` (audited)."""
    tz = zone(args.tz)
    since = parse_when(args.since, tz) if args.since else None
    until = parse_when(args.until, tz, end=True) if args.until else None
    db = c.catalog.sync
    rows = await run(
        c.catalog, functools.partial(db.findings, since_ms=since, until_ms=until, limit=args.limit)
    )
    await c.catalog.append_audit(
        actor=os_actor(),
        action="search",
        target="findings",
        reason="recorder search --findings",
        now_ms=_now_ms(),
        details={"count": len(rows)},
    )
    if args.json:
        doc = {
            "schema": FINDINGS_SCHEMA,
            "timezone": args.tz or "UTC",
            "count": len(rows),
            "findings": [finding_json(f, None, tz) for f in rows],
        }
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    print(f"{'first found':<24} {'kind':<10} {'cause':<18} {'product':<14} instance / detail")
    for f in rows:
        print(
            f"{show_time(f.first_found_ms, tz):<24} {f.kind.value:<10} {f.cause.value:<18} "
            f"{f.product.value:<14} {f.instance_id}  {f.detail}"
        )
    print(f"{len(rows)} open finding(s)")
    return 0


async def completeness_command(c: Components, args: argparse.Namespace) -> int:
    policy = c.config.completeness
    now = _now_ms()
    if args.completeness_command == "reconcile":
        summary = await reconcile_once(c.catalog, policy, now, recheck=args.all)
        counts = await run(c.catalog, c.catalog.sync.finding_counts)
        c.metrics.set_findings(counts)
        if args.json:
            print(
                json.dumps(
                    {
                        "examined": summary.examined,
                        "met": summary.met,
                        "waiting": summary.waiting,
                        "settled": summary.settled,
                        "open_findings": [
                            {"kind": k, "cause": cause, "count": n} for k, cause, n in counts
                        ],
                    },
                    indent=2,
                    sort_keys=True,
                )
            )
        else:
            print(
                f"examined {summary.examined}, met {summary.met}, "
                f"within grace {summary.waiting}, findings this run "
                f"{sum(summary.findings.values())}"
            )
            for k, cause, n in counts:
                print(f"  open {k}/{cause}: {n}")
        return 0
    tz = zone(args.tz)
    since = parse_when(args.since, tz)
    until = parse_when(args.until, tz, end=True) if args.until else now
    if until <= since:
        raise ConfigError("completeness pull: --until must be after --since")
    if c.zoom_listing is not None:
        result = await pull(
            c.catalog, c.zoom_listing, policy, since_ms=since, until_ms=until, now_ms=now
        )
    else:
        from recorder.zoom import open_zoom_api

        async with AsyncExitStack() as stack:
            try:
                api = await stack.enter_async_context(open_zoom_api(c.config))
            except ConfigError as exc:
                raise ConfigError(
                    "completeness pull lists what started through Zoom's REST API, which is "
                    "not configured: set the zoom_client_id and zoom_client_secret secrets and "
                    f"[zoom] account_id (or ZOOM_ACCOUNT_ID) ({exc})"
                ) from exc
            result = await pull(
                c.catalog, api.listing, policy, since_ms=since, until_ms=until, now_ms=now
            )
    print(f"listed {result.listed}, expected by policy {result.matching}, new {result.added}")
    return 0


async def enrich_command(c: Components, args: argparse.Namespace) -> int:
    """``recorder enrich [--retry]``: one pass over every recording not yet enriched, with the
    configured directory, else the Zoom REST client (``ConfigError`` names what is missing)."""
    if c.zoom_directory is not None:
        return await _enrich(c, c.zoom_directory, args)
    from recorder.zoom import open_zoom_api

    async with open_zoom_api(c.config) as api:
        return await _enrich(c, api.directory, args)


async def _enrich(c: Components, directory: ZoomDirectory, args: argparse.Namespace) -> int:
    now = _now_ms()
    retried = 0
    if args.retry:
        retried = await run(c.catalog, functools.partial(c.catalog.sync.retry_enrichments, now))
    enricher = Enricher(c.catalog, directory, c.config.completeness, c.metrics, _now_ms)
    looked_up = await enricher.pass_once()
    print(
        f"retried {retried} failed; looked up {looked_up}: enriched {enricher.stats.enriched}, "
        f"failed {enricher.stats.failed}"
    )
    return 0 if enricher.stats.failed == 0 else 1


async def show_fields(c: Components, r: RecordingRow, tz: dt.tzinfo) -> dict[str, object]:
    """``show``'s ``enrichment`` and ``findings`` (both may be empty)."""
    db = c.catalog.sync
    try:
        enriched = await run(
            c.catalog, functools.partial(db.enrichment_of, r.product, r.instance_id)
        )
        findings = await run(c.catalog, functools.partial(db.findings_of_recording, r.recording_id))
    except RecorderError as exc:
        print(f"warning: enrichment and findings unavailable: {exc}", file=sys.stderr)
        return {"enrichment": None, "findings": []}
    enrichment: dict[str, object] | None = None
    if enriched is not None:
        enrichment = {
            "state": enriched.state.value,
            "attempts": enriched.attempts,
            "last_error": enriched.last_error,
            **dataclasses.asdict(enriched.fields),
        }
    return {
        "enrichment": enrichment,
        "findings": [finding_json(f, None, tz) for f in findings],
    }


def show_lines(doc: dict[str, object]) -> list[str]:
    lines: list[str] = []
    enrichment = doc.get("enrichment")
    if isinstance(enrichment, dict):
        known = {
            k: v
            for k, v in enrichment.items()
            if v is not None and k not in ("state", "attempts", "last_error")
        }
        state = enrichment["state"]
        lines.append(f"from Zoom's directory ({state}):")
        for key, value in known.items():
            lines.append(f"  {key.replace('_', ' ')}: {value}")
        if enrichment.get("last_error"):
            lines.append(f"  last error: {enrichment['last_error']}")
    findings = doc.get("findings")
    if isinstance(findings, list):
        for f in findings:
            status = "resolved" if f["resolved"] else "OPEN"
            what = f"{f['kind']}/{f['cause']}: {f['detail']}"
            lines.append(f"completeness finding ({status}): {what}")
    return lines
