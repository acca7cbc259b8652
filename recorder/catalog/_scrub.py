"""Destroying a recording erases the personal data the catalog holds about it (migration 17).

Rule 1: the scrub runs inside the transaction that writes the recording's destruction record
(``KeyQueries.add_destruction_record``), so a destroyed recording whose record exists has been
scrubbed, unless a legal hold covered it at that moment. ``scrub_pending`` (every retention run)
finishes those, and destruction records written before migration 17, once no hold covers them.

Rule 2: a hold always wins: a recording or instance under an active hold is never scrubbed.

Rule 3: what belongs to the meeting / engagement as a whole (enrichment, expectation, findings,
instance-level webhooks) goes only when every recording of it has been destroyed; a surviving
recording still needs it. The scrubbed enrichment row stays as a final tombstone, so a pending
lookup is cancelled and a late directory answer (or a new enqueue) cannot bring the data back.

Rule 4: what stays is evidence without a person in it: ids, times, durations, hashes, gap
causes, holds, destruction records, and a ``pii_scrubs`` row saying what went (counts and
column names, never values). The append-only audit log is not changed (see docs/officer.md).
"""

# ruff: noqa: S608
# S608 is waived for this module only: the interpolated pieces are column names from
# ``recorder.catalog.scrub_types`` constants; every value is a bound parameter.
from __future__ import annotations

import hashlib
import json
from typing import Final

from recorder.catalog._officers import OfficerQueries
from recorder.catalog._rows import Tx
from recorder.catalog._textindex import forget_transcript
from recorder.catalog.schema import Engine
from recorder.catalog.scrub_types import INSTANCE_PERSONAL_DATA, RECORDING_PERSONAL_DATA, PiiScrub

_RECORDING_COLS: Final = RECORDING_PERSONAL_DATA["recordings"]
_ENRICHMENT_COLS: Final = tuple(
    c for c in INSTANCE_PERSONAL_DATA["enrichments"] if c != "lookup_id"
)
#: What a scrubbed finding says instead of its detail (which may quote Zoom's error text).
SCRUBBED_DETAIL: Final = "(scrubbed: every recording of this instance was destroyed)"
#: How a scrubbed delivery's body starts (JSON: ``{"scrubbed": true, "scrubbed_ms": ...}``).
_STUB_PREFIX: Final = '{"scrubbed":true,'
_HELD: Final = """SELECT hold_id FROM legal_holds WHERE released_ms IS NULL AND (
        (scope = 'recording' AND scope_value IN (
            SELECT recording_id FROM recordings WHERE product = ? AND instance_id = ?))
        OR (scope = 'instance' AND scope_value = ?))"""


def _scrub_events(tx: Tx, where: str, params: tuple[object, ...], now_ms: int) -> int:
    """Replace each delivery's body by its digest, and its ids by nothing."""
    rows = tx.fetchall(
        f"SELECT event_id, body FROM lifecycle_events WHERE {where} AND body NOT LIKE ?",
        (*params, _STUB_PREFIX + "%"),
    )
    for event_id, body in rows:
        digest = hashlib.sha256(str(body).encode()).hexdigest()
        stub = (
            _STUB_PREFIX
            + json.dumps({"scrubbed_ms": now_ms, "body_sha256": digest}, separators=(",", ":"))[1:]
        )
        tx.execute(
            "UPDATE lifecycle_events SET ids = '{}', body = ? WHERE event_id = ?",
            (stub, event_id),
        )
    return len(rows)


class ScrubQueries(OfficerQueries):
    """See the module rules."""

    def _scrub_destroyed(
        self, tx: Tx, recording_id: str, *, now_ms: int, actor: str
    ) -> PiiScrub | None:
        """Rule 1 and 2: scrub one destroyed recording now; ``None`` if done already, unknown,
        or held (left for ``scrub_pending`` once the hold is released)."""
        if tx.fetchone("SELECT 1 FROM pii_scrubs WHERE recording_id = ?", (recording_id,)):
            return None
        found = tx.fetchone(
            "SELECT product, instance_id, rtms_stream_id FROM recordings WHERE recording_id = ?",
            (recording_id,),
        )
        if found is None:
            return None
        product, instance_id, stream_id = (str(v) for v in found)
        if getattr(self, "engine", None) is Engine.POSTGRES:
            # A concurrent place_hold waits for this commit (or this check for its).
            tx.execute("LOCK TABLE legal_holds IN SHARE MODE")
        if tx.fetchone(
            """SELECT 1 FROM legal_holds WHERE released_ms IS NULL AND (
                    (scope = 'recording' AND scope_value = ?)
                    OR (scope = 'instance' AND scope_value = ?))""",
            (recording_id, instance_id),
        ):
            return None
        done: dict[str, object] = {}
        values = tx.fetchone(
            f"SELECT {', '.join(_RECORDING_COLS)} FROM recordings WHERE recording_id = ?",
            (recording_id,),
        )
        assert values is not None
        present = [c for c, v in zip(_RECORDING_COLS, values, strict=True) if v is not None]
        if present:
            tx.execute(
                f"UPDATE recordings SET {', '.join(f'{c} = NULL' for c in present)}"
                " WHERE recording_id = ?",
                (recording_id,),
            )
        done["recordings"] = present
        key = (recording_id,)
        done["participants"] = tx.execute("DELETE FROM participants WHERE recording_id = ?", key)
        done["segments"] = tx.execute(
            "UPDATE segments SET participant_id = NULL"
            " WHERE recording_id = ? AND participant_id IS NOT NULL",
            key,
        )
        done["pauses"] = tx.execute(
            "UPDATE pauses SET actor = NULL WHERE recording_id = ? AND actor IS NOT NULL", key
        )
        tokens = tx.fetchone("SELECT COUNT(*) FROM transcript_tokens WHERE recording_id = ?", key)
        forget_transcript(tx, recording_id)  # a no-op when key destruction did it already
        done["transcript_tokens"] = 0 if tokens is None else int(tokens[0])
        done["web_session_reasons"] = tx.execute(
            "DELETE FROM web_session_reasons WHERE recording_id = ?", key
        )
        done["lifecycle_events"] = _scrub_events(tx, "rtms_stream_id = ?", (stream_id,), now_ms)
        done["instance"] = self._scrub_instance(tx, product, instance_id, now_ms, done)
        scrub = PiiScrub(recording_id, now_ms, actor, done)
        tx.execute(
            "INSERT INTO pii_scrubs (recording_id, scrubbed_ms, actor, scrubbed)"
            " VALUES (?, ?, ?, ?)",
            (recording_id, now_ms, actor, json.dumps(done, sort_keys=True)),
        )
        self._append_audit(
            tx,
            actor=actor,
            action="recording.pii_scrub",
            target=recording_id,
            reason="recording destroyed: its personal data goes too",
            now_ms=now_ms,
            details={k: v for k, v in done.items() if isinstance(v, int | str)},
        )
        return scrub

    def _scrub_instance(
        self, tx: Tx, product: str, instance_id: str, now_ms: int, done: dict[str, object]
    ) -> str:
        """Rule 3; says what happened to the instance's data."""
        live = tx.fetchone(
            """SELECT COUNT(*) FROM recordings r WHERE r.product = ? AND r.instance_id = ?
                AND NOT EXISTS (SELECT 1 FROM destruction_records d
                    WHERE d.recording_id = r.recording_id)""",
            (product, instance_id),
        )
        if live is not None and int(live[0]):
            return f"kept: {int(live[0])} recording(s) of the instance not destroyed"
        held = tx.fetchone(_HELD, (product, instance_id, instance_id))
        if held is not None:
            return f"kept: legal hold {held[0]} covers the instance"
        instance = (product, instance_id)
        nulls = ", ".join(f"{c} = NULL" for c in _ENRICHMENT_COLS)
        done["enrichments"] = tx.execute(
            f"""UPDATE enrichments SET lookup_id = instance_id, {nulls}, state = 'scrubbed',
                    updated_ms = ?
                WHERE product = ? AND instance_id = ? AND state <> 'scrubbed'""",
            (now_ms, *instance),
        )
        # The tombstone: enqueue and announcements insert with ON CONFLICT DO NOTHING.
        tx.execute(
            """INSERT INTO enrichments (product, instance_id, lookup_id, state, next_attempt_ms,
                    updated_ms)
                VALUES (?, ?, ?, 'scrubbed', ?, ?) ON CONFLICT (product, instance_id) DO NOTHING""",
            (product, instance_id, instance_id, now_ms, now_ms),
        )
        done["findings"] = tx.execute(
            """UPDATE findings SET detail = ? WHERE detail <> ? AND expectation_id IN (
                    SELECT expectation_id FROM expectations
                    WHERE product = ? AND instance_id = ?)""",
            (SCRUBBED_DETAIL, SCRUBBED_DETAIL, *instance),
        )
        done["expectations"] = tx.execute(
            """UPDATE expectations SET target_id = instance_id, user_id = NULL, queue_id = NULL,
                    start_error = NULL
                WHERE product = ? AND instance_id = ?
                    AND (target_id <> instance_id OR user_id IS NOT NULL
                        OR queue_id IS NOT NULL OR start_error IS NOT NULL)""",
            instance,
        )
        done["instance_lifecycle_events"] = _scrub_events(
            tx, "instance_id = ?", (instance_id,), now_ms
        )
        return "scrubbed"

    def scrub_pending(self, *, now_ms: int, actor: str) -> tuple[list[str], list[str]]:
        """Rule 1: scrub every destroyed recording not scrubbed yet, one transaction each.

        Returns (scrubbed now, still waiting: under a legal hold).
        """
        with self._transaction("scrub_pending", write=False) as tx:
            rows = tx.fetchall(
                """SELECT DISTINCT d.recording_id FROM destruction_records d
                    JOIN recordings r ON r.recording_id = d.recording_id
                    WHERE NOT EXISTS (SELECT 1 FROM pii_scrubs s
                        WHERE s.recording_id = d.recording_id)
                    ORDER BY d.recording_id"""
            )
        scrubbed: list[str] = []
        waiting: list[str] = []
        for (recording_id,) in rows:
            with self._transaction("scrub_pending", write=True) as tx:
                done = self._scrub_destroyed(tx, str(recording_id), now_ms=now_ms, actor=actor)
                already = tx.fetchone(
                    "SELECT 1 FROM pii_scrubs WHERE recording_id = ?", (recording_id,)
                )
            if done is not None:
                scrubbed.append(str(recording_id))
            elif already is None:
                waiting.append(str(recording_id))
        return scrubbed, waiting

    def pii_scrub(self, recording_id: str) -> PiiScrub | None:
        """What destroying ``recording_id`` scrubbed and when; ``None``: not (yet) scrubbed."""
        with self._transaction("pii_scrub", write=False) as tx:
            row = tx.fetchone(
                "SELECT recording_id, scrubbed_ms, actor, scrubbed FROM pii_scrubs"
                " WHERE recording_id = ?",
                (recording_id,),
            )
        return None if row is None else PiiScrub.from_row(row)
