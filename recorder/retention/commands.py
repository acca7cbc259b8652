"""``recorder policies|retention|hold|audit``: thin, printing; the work is in the modules."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

from recorder.catalog.base import UploadState
from recorder.catalog.retention_types import HOLD_RULE_PERSONAL_FIELDS
from recorder.crypto.blind_index import load_search_key
from recorder.errors import AuditLogTampered, ConfigError, RecorderError
from recorder.evidence_destruction import RecordingShredder
from recorder.officer.actor import os_actor
from recorder.retention import holds as hold_ops
from recorder.retention.apply import RetentionContext, make_plan, run_retention
from recorder.retention.audit_heads import (
    load_public_key,
    load_signing_key,
    public_path,
    verify_audit,
    write_head,
)
from recorder.retention.engine import Plan, Verdict, iso
from recorder.retention.extend import extend_locks_for_event
from recorder.retention.policy import check_policies
from recorder.service.components import Components, now_ms


def parse_time(text: str) -> int:
    """ISO 8601 (``2026-01-31``, ``2026-01-31T10:00:00Z``) to Unix ms; naive means UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"{text!r} is not an ISO 8601 date or time") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


# --- policies -------------------------------------------------------------------------------


def policies_check(directory: Path) -> int:
    policies, problems = check_policies(directory)
    for problem in problems:
        print(problem)
    if policies is None:
        print(f"{len(problems)} problem(s) in {directory}")
        return 4
    if not directory.is_dir():
        print(f"{directory} does not exist: every recording gets the built-in default")
    for p in policies.policies:
        extended = f" (extendable to {p.extended_days} d on {p.extend_on})" if p.extend_on else ""
        default = " [default]" if p.default else ""
        print(
            f"{p.name:<20} {p.retain_days:>5} d{extended} from {p.counts_from.value}"
            f"{'' if p.counts_from_event is None else ':' + p.counts_from_event}, "
            f"{p.action.value}, lock {p.lock_mode.value}{default}  sha256 {p.sha256[:12]}"
        )
        print(f"{'':<20} {p.authority}")
    return 0


# --- retention ------------------------------------------------------------------------------


def shredder_for(c: Components) -> RecordingShredder:
    """The key store's crypto-shredder (``recorder.officer.shred``): destroys every copy of a
    recording's key, refuses under hold, and proves decryption now fails."""
    from recorder.officer.shred import CryptoShredder

    return CryptoShredder(c.catalog, c.keyring, c.store, now_ms=now_ms)


def _context(c: Components, *, progress: bool = False) -> RetentionContext:
    key_path = c.config.retention.audit_signing_key
    return RetentionContext(
        catalog=c.catalog,
        store=c.store,
        policies=c.policies,
        shredder=shredder_for(c),
        operator=os_actor(),
        now_ms=now_ms,
        signing_key=load_signing_key(key_path) if key_path is not None else None,
        on_progress=(lambda line: print(line, flush=True)) if progress else (lambda line: None),
    )


def print_plan(plan: Plan) -> None:
    print(f"{'recording':<30} {'verdict':<8} {'action':<13} {'policy':<32} reason")
    for d in plan.decisions:
        action = d.action.value if d.action else "-"
        print(f"{d.recording_id:<30} {d.verdict.value:<8} {action:<13} {d.policy:<32} {d.reason}")
    destroy = len(plan.to_destroy)
    print(f"{destroy} to destroy, {len(plan.decisions) - destroy} kept, at {iso(plan.now_ms)}")


async def retention_plan(c: Components, args: argparse.Namespace) -> int:
    plan = await make_plan(_context(c))
    if args.json:
        print(plan.to_json())
    else:
        print_plan(plan)
    return 0


async def retention_run(c: Components, args: argparse.Namespace) -> int:
    report = await run_retention(_context(c, progress=True))
    done = sum(o.result == "destroyed" for o in report.outcomes)
    print(
        f"run {report.run_id}: {done} destroyed, "
        f"{sum(d.verdict is Verdict.KEEP for d in report.plan.decisions)} kept, "
        f"{len(report.failed)} failed; report {report.report_key or 'NOT STORED'}"
    )
    for failure in report.failed:
        print(f"FAILED {failure.recording_id}: {failure.detail}")
    return 2 if report.failed else 0


async def retention_event(c: Components, args: argparse.Namespace) -> int:
    at = parse_time(args.at) if args.at else now_ms()
    await c.catalog.record_account_event(
        args.account, args.event, at_ms=at, recorded_by=os_actor(), now_ms=now_ms()
    )
    print(f"account {args.account}: {args.event} at {iso(at)}")
    extended = await extend_locks_for_event(
        c.catalog, c.store, c.policies, account_id=args.account, event=args.event, now_ms=now_ms()
    )
    if extended:
        print(f"{extended} object version(s) now locked for the extended period")
    return 0


# --- holds ----------------------------------------------------------------------------------


async def _seal(c: Components) -> None:
    key_path = c.config.retention.audit_signing_key
    if key_path is not None:
        await write_head(c.catalog, c.store, load_signing_key(key_path), now_ms=now_ms())


async def hold_place(c: Components, args: argparse.Namespace) -> int:
    actor, now = os_actor(), now_ms()
    matter, reason = args.matter, args.reason
    if args.future:
        rule = {
            k: v
            for k, v in {
                "participant": args.participant,
                "queue": args.queue,
                "product": args.product,
                "account": args.account,
            }.items()
            if v
        }
        # A rule naming a person is audited as a keyed MAC: no key, no rule (ConfigError
        # naming the key file), before anything is written.
        names_someone = any(rule.get(name) for name in HOLD_RULE_PERSONAL_FIELDS)
        key = load_search_key(c.config.keys.key_dir, create=False) if names_someone else None
        created, joined = await hold_ops.place_rule(
            c.catalog,
            c.store,
            matter=matter,
            reason=reason,
            actor=actor,
            rule=rule,
            now_ms=now,
            key=key,
        )
        print(
            f"rule #{created.rule_id} matter {created.matter}: future recordings matching "
            f"{json.dumps(dict(created.rule))} join it; {len(joined)} existing recording(s) held"
        )
    elif args.instance:
        hold = await hold_ops.place_instance_hold(
            c.catalog,
            c.store,
            matter=matter,
            reason=reason,
            actor=actor,
            instance_id=args.instance,
            now_ms=now,
        )
        print(f"hold #{hold.hold_id} on instance {hold.scope_value} (matter {hold.matter})")
    else:
        ids = list(args.recording or [])
        search = hold_ops.HoldSearch(
            participant=args.participant,
            queue=args.queue,
            since_ms=parse_time(args.since) if args.since else None,
            until_ms=parse_time(args.until) if args.until else None,
        )
        if not search.empty:
            ids += [r.recording_id for r in await hold_ops.find_recordings(c.catalog, search)]
        if not ids:
            raise RecorderError("nothing to hold: no recording matched (or none was named)")
        placed = await hold_ops.place_holds(
            c.catalog,
            c.store,
            matter=matter,
            reason=reason,
            actor=actor,
            recording_ids=sorted(set(ids)),
            now_ms=now,
        )
        for hold in placed:
            print(f"hold #{hold.hold_id} on {hold.scope_value} (matter {hold.matter})")
            await _note_spooled(c, hold.scope_value)
    await _seal(c)
    return 0


async def _note_spooled(c: Components, recording_id: str) -> None:
    detail = await c.catalog.show(recording_id)
    if detail is None:
        return
    states = [s.upload_state for s in detail.segments] + [r.upload_state for r in detail.records]
    pending = states.count(UploadState.PENDING)
    if pending:
        print(
            f"  {pending} object(s) of {recording_id} are still in the spool: they get the store "
            "hold from `recorder hold sync` (hourly) once uploaded"
        )


async def hold_release(c: Components, args: argparse.Namespace) -> int:
    actor, now = os_actor(), now_ms()
    if args.hold is not None:
        released = [
            await hold_ops.release_hold(
                c.catalog, c.store, args.hold, actor=actor, reason=args.reason, now_ms=now
            )
        ]
    else:
        released = await hold_ops.release_matter(
            c.catalog, c.store, args.matter, actor=actor, reason=args.reason, now_ms=now
        )
    for hold in released:
        print(f"released hold #{hold.hold_id} on {hold.scope_value} (matter {hold.matter})")
    await _seal(c)
    return 0


async def hold_list(c: Components, args: argparse.Namespace) -> int:
    for hold in await c.catalog.holds(active_only=not args.all):
        state = "active" if hold.active else f"released {iso(hold.released_ms or 0)}"
        print(
            f"#{hold.hold_id:<5} {hold.matter:<20} {hold.scope.value}:{hold.scope_value:<30} "
            f"by {hold.placed_by} at {iso(hold.placed_ms)}  {state}  ({hold.reason})"
        )
    for rule in await c.catalog.hold_rules(active_only=not args.all):
        state = "active" if rule.active else "released"
        print(
            f"rule #{rule.rule_id:<3} {rule.matter:<20} future: {json.dumps(dict(rule.rule))} "
            f"by {rule.placed_by} at {iso(rule.placed_ms)}  {state}"
        )
    return 0


async def hold_sync(c: Components, args: argparse.Namespace) -> int:
    changed = await hold_ops.sync_store_holds(c.catalog, c.store, every_recording=args.all)
    print(f"{changed} object version(s) brought in line with the catalog's holds")
    return 0


# --- audit ----------------------------------------------------------------------------------


async def audit_list(c: Components, args: argparse.Namespace) -> int:
    events = await c.catalog.audit_events(
        actor=args.actor,
        action=args.action,
        target=args.recording,
        since_ms=parse_time(args.since) if args.since else None,
        until_ms=parse_time(args.until) if args.until else None,
        limit=args.limit,
    )
    for e in events:
        print(
            f"#{e.audit_id:<6} {iso(e.at_ms)} {e.actor:<32} {e.action:<24} {e.target:<30} "
            f"{e.reason}  {e.details_json}"
        )
    print(f"{len(events)} event(s)")
    return 0


async def audit_seal(c: Components, args: argparse.Namespace) -> int:
    key_path = c.config.retention.audit_signing_key
    if key_path is None:
        raise ConfigError("[retention] audit_signing_key is not set")
    head = await write_head(c.catalog, c.store, load_signing_key(key_path), now_ms=now_ms())
    if head is None:
        print("no new audit events since the last signed head")
    else:
        print(f"signed events #{head.first_id}..#{head.last_id} into {head.object_key}")
    return 0


async def audit_verify(c: Components, args: argparse.Namespace) -> int:
    key_path = c.config.retention.audit_signing_key
    public = args.public_key or (public_path(key_path) if key_path else None)
    if public is None:
        raise ConfigError("no public key: pass --public-key or set [retention] audit_signing_key")
    verdict = await verify_audit(c.catalog, c.store, load_public_key(public))
    await c.catalog.append_audit(
        actor=os_actor(),
        action="audit.verify",
        target="audit_log",
        reason="recorder audit verify",
        now_ms=now_ms(),
        details={"ok": verdict.ok, "first_bad_id": verdict.first_bad_id},
    )
    if not verdict.ok:
        raise AuditLogTampered(
            f"audit log FAILED verification: {verdict.problem} "
            f"({verdict.events_checked} events, {verdict.heads_checked} signed heads checked)"
        )
    print(f"audit log OK: {verdict.events_checked} events, {verdict.heads_checked} signed heads")
    return 0
