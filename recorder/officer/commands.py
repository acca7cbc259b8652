"""The officer subcommands: ``search``, ``show``, ``verify``, ``export`` (thin, printing)."""

from __future__ import annotations

import argparse

from recorder.officer.actor import os_actor
from recorder.officer.verify import verify_recording
from recorder.officer.views import describe_lifecycle_event
from recorder.retention.holds import hold_drift
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
    failed = 0
    for recording_id in args.recording_ids:
        verdict = await verify_recording(c, recording_id, actor=os_actor(), reason=args.reason)
        drift = await hold_drift(c.catalog, c.store, recording_id)
        ok = verdict.ok and not drift
        state = "OK" if ok else "FAILED"
        print(f"{recording_id}: {state} ({len(verdict.objects)} objects)")
        for obj in verdict.objects:
            if not verdict.ok:
                print(f"  {obj.kind} {obj.name} #{obj.index}: {obj.verdict.value} {obj.detail}")
        for line in drift:
            print(f"  hold drift: {line}")
        failed += not ok
    return 90 if failed else 0
