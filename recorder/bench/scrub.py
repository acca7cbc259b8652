"""What scrubbing personal data costs a destruction: ``recorder bench scrub [--recordings N]``.

Builds N recordings (default 2,000) in a migrated catalog (SQLite file; and a fresh PostgreSQL
schema when ``--postgres DSN`` is reachable, dropped afterwards), each with three participants,
a Contact Center agent, a stream webhook, an expectation with a finding, an enrichment and a
transcript blind index of 50 MACs. Then, in one run:

* ``record only``: the destruction record written alone (what a recorder before migration 17
  did), for half of them;
* ``record + scrub``: ``add_destruction_record`` (record and scrub in one transaction) for the
  other half;
* ``heal``: ``scrub_pending`` scrubbing the first half afterwards (what the next retention run
  does for records written without a scrub).

Prints per destruction the process CPU (the client side; PostgreSQL's own CPU is not in it) and
wall time, each a mean over the half.
"""

from __future__ import annotations

import argparse
import json
import secrets
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from recorder.catalog import SqlCatalog, open_catalog
from recorder.catalog.base import NewLifecycleEvent, ParticipantInfo, Product, RecordingStatus
from recorder.catalog.base import RecordingStart as Start
from recorder.completeness.model import (
    EnrichmentFields,
    ExpectationSource,
    FindingCause,
    FindingKind,
    NewExpectation,
    StartState,
)
from recorder.evidence_destruction import DestructionMethod, DestructionRecord

T0: Final = 1_767_225_600_000
DEFAULT_POSTGRES: Final = "postgresql://postgres@127.0.0.1:5432/test"
MACS: Final = 50


def _populate(catalog: SqlCatalog, n: int) -> list[str]:
    rids = []
    for i in range(n):
        stream, instance = f"s-{i}", f"eng-{i}"
        r = catalog.upsert_recording(Start(stream, Product.CONTACT_CENTER, instance, T0), T0)
        rid = r.recording_id
        catalog.set_contact_center(rid, queue_id="q", queue_name="Q", agent_id=f"a{i}")
        catalog.add_participants(
            rid, [ParticipantInfo(f"u{i}-{k}", f"Person {i} {k}") for k in range(3)]
        )
        catalog.end_recording(rid, ended_ms=T0 + 1, reason="x", status=RecordingStatus.COMPLETE)
        catalog.add_transcript_tokens(rid, "rk", [secrets.token_hex(16) for _ in range(MACS)], T0)
        catalog.add_lifecycle_event(
            NewLifecycleEvent(
                f"d-{i}", "rtms.concurrency_near_limit", "concurrency", False,
                Product.CONTACT_CENTER, T0, T0, stream, instance, {"user_id": f"u{i}-0"},
                None, json.dumps({"user": f"Person {i} 0"}),
            )
        )  # fmt: skip
        expectation, _ = catalog.add_expectation(
            NewExpectation(
                Product.CONTACT_CENTER, instance, instance, ExpectationSource.WEBHOOK, "e", T0,
                T0, StartState.OFF, user_id=f"a{i}",
                known=EnrichmentFields(agent_name=f"Agent {i}", consumer_number=f"+1555{i:07d}"),
            )
        )  # fmt: skip
        verdict = (FindingKind.INCOMPLETE, FindingCause.START_REFUSED, "refused", rid)
        catalog.put_finding(expectation, verdict, T0)
        rids.append(rid)
    return rids


def _record(rid: str) -> DestructionRecord:
    return DestructionRecord(
        rid, DestructionMethod.OBJECT_DELETE, (), (), "bench", "no holds", "bench", T0 + 5, "gone"
    )


def _record_only(catalog: SqlCatalog, rid: str) -> None:
    """The destruction record alone, as before migration 17."""
    record = _record(rid)
    with catalog._transaction("bench", write=True) as tx:
        tx.execute(
            """INSERT INTO destruction_records (recording_id, method, record_json,
                    record_sha256, destroyed_ms) VALUES (?, ?, ?, ?, ?)""",
            (rid, record.method.value, record.canonical_json(), record.sha256(), T0 + 5),
        )


def _measure(label: str, count: int, fn: Callable[[], object]) -> None:
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(
        f"  {label:<16} {1000 * cpu / count:8.3f} ms CPU  {1000 * wall / count:8.3f} ms wall"
        " per recording"
    )


def _run(catalog: SqlCatalog, n: int) -> None:
    rids = _populate(catalog, n)
    old, new = rids[: n // 2], rids[n // 2 :]

    def record_only() -> None:
        for rid in old:
            _record_only(catalog, rid)

    def record_and_scrub() -> None:
        for rid in new:
            catalog.add_destruction_record(_record(rid))

    _measure("record only", len(old), record_only)
    _measure("record + scrub", len(new), record_and_scrub)
    done: list[list[str]] = []
    _measure(
        "heal (next run)",
        len(old),
        lambda: done.append(catalog.scrub_pending(now_ms=T0 + 9, actor="bench")[0]),
    )
    assert len(done[0]) == len(old), "every record written without a scrub is healed"


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="recorder bench scrub")
    parser.add_argument("--recordings", type=int, default=2_000)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    args = parser.parse_args(argv)
    n = max(2, args.recordings)
    with tempfile.TemporaryDirectory() as tmp:
        catalog = open_catalog(f"sqlite:///{Path(tmp) / 'catalog.db'}", now_ms=T0)
        try:
            print(f"sqlite, {n} recordings:")
            _run(catalog, n)
        finally:
            catalog.close()
    try:
        import psycopg

        schema = f"bench_{secrets.token_hex(6)}"
        with psycopg.connect(args.postgres, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except Exception as exc:
        print(f"postgres: skipped ({type(exc).__name__}: {exc})")
        return 0
    try:
        catalog = open_catalog(f"{args.postgres}?options=-csearch_path%3D{schema}", now_ms=T0)
        try:
            print(f"postgres, {n} recordings:")
            _run(catalog, n)
        finally:
            catalog.close()
    finally:
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return 0
