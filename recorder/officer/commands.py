"""The officer subcommands: ``search``, ``show``, ``verify``, ``export`` (thin, printing)."""

from __future__ import annotations

import argparse

from recorder.errors import ConfigError
from recorder.officer.actor import os_actor
from recorder.officer.views import describe_lifecycle_event
from recorder.service.components import Components


async def search(c: Components, args: argparse.Namespace) -> int:
    if getattr(args, "failed", False):
        return await search_failed(c, args.limit)
    from recorder.officer.search import search as search_recordings

    return await search_recordings(c, args)


async def search_failed(c: Components, limit: int) -> int:
    """``recorder search --failed``: starts that failed, newest first, orphans included."""
    events = await c.catalog.lifecycle_events(failed_only=True, limit=limit)
    for event in events:
        print(describe_lifecycle_event(event))
    orphans = sum(1 for event in events if event.orphan)
    print(f"{len(events)} failed start(s), {orphans} orphan(s)")
    return 0


async def show(c: Components, args: argparse.Namespace) -> int:
    from recorder.officer.show import show as show_recording

    return await show_recording(c, args)


async def verify(c: Components, args: argparse.Namespace) -> int:
    """``recorder verify``; the exit code names the failure class (``verify_run.exit_code``)."""
    from recorder.officer import verify_run
    from recorder.officer.when import parse_when, zone

    if not (args.recording_ids or args.all or args.since):
        raise ConfigError("recorder verify: name recordings, or give --all or --since DATE")
    since_ms = None if args.since is None else parse_when(args.since, zone(args.tz))
    ids = await verify_run.select(c, args.recording_ids, every=args.all, since_ms=since_ms)
    actor = os_actor()
    checks = []
    for recording_id in ids:
        check = await verify_run.check_recording(c, recording_id)
        await verify_run.record(c, check, actor=actor, reason=args.reason)
        checks.append(check)
    report = verify_run.report_json if args.json else verify_run.report_text
    print(report(checks))
    return verify_run.exit_code(checks)
