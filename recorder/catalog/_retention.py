"""Retention, hold rules, destruction records and audit queries (the retention commands' SQL).

Rules: destruction records are append-only (triggers) and written at most once per content
(same ``record_sha256`` twice is a no-op, so a re-run after a crash cannot double them); the
retention lock is one row taken by a single conditional statement; a recording joins a hold rule
in the same transaction that creates the recording or catalogues its evidence, and that join is
audited like any other hold (invariant 9).
"""

# ruff: noqa: S608
# S608 (SQL built from strings) is waived for this module only: every interpolated piece is a
# module constant or a fixed clause chosen in code, and every value is a bound parameter.
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

from recorder.catalog._officers import OfficerQueries
from recorder.catalog._rows import (
    _AUDIT_COLS,
    _HOLD_COLS,
    _RECORDING_COLS_AS_R,
    Tx,
    _audit,
    _hold,
    _recording,
    _require_text,
)
from recorder.catalog.base import AuditEvent, JsonValue, LegalHoldRow, UploadState
from recorder.catalog.retention_types import (
    HOLD_RULE_FIELDS,
    HOLD_RULE_PERSONAL_FIELDS,
    HoldRuleRow,
    PersonalMacs,
    RetentionFacts,
    RetentionLockRow,
    StoredObjectRow,
    hold_rule_matches,
)
from recorder.errors import CatalogError
from recorder.evidence_destruction import (
    DestroyedObject,
    DestructionMethod,
    DestructionRecord,
)

_HOLD_RULE_COLS: Final = (
    "rule_id, matter, rule_json, placed_by, reason, placed_ms, released_by, released_ms"
)
#: Rows of recordings that still exist as far as retention is concerned.
_NOT_DESTROYED: Final = "recording_id NOT IN (SELECT recording_id FROM destruction_records)"
#: Upper bound of one ``audit_events`` page.
MAX_AUDIT_PAGE: Final = 10_000


def _hold_rule(row: tuple[object, ...]) -> HoldRuleRow:
    rule = json.loads(str(row[2]))
    return HoldRuleRow(
        rule_id=int(row[0]),  # type: ignore[call-overload]
        matter=str(row[1]),
        rule={str(k): str(v) for k, v in rule.items()},
        placed_by=str(row[3]),
        reason=str(row[4]),
        placed_ms=int(row[5]),  # type: ignore[call-overload]
        released_by=None if row[6] is None else str(row[6]),
        released_ms=None if row[7] is None else int(row[7]),  # type: ignore[call-overload]
    )


def destruction_record_from_json(text: str) -> DestructionRecord:
    doc = json.loads(text)
    return DestructionRecord(
        recording_id=doc["recording_id"],
        method=DestructionMethod(doc["method"]),
        objects=tuple(
            DestroyedObject(o["key"], o["version_id"], o["sha256"]) for o in doc["objects"]
        ),
        key_ids=tuple(doc["key_ids"]),
        rule=doc["rule"],
        hold_check=doc["hold_check"],
        actor=doc["actor"],
        destroyed_ms=int(doc["destroyed_ms"]),
        verification=doc["verification"],
    )


def validate_hold_rule(rule: Mapping[str, str]) -> dict[str, str]:
    unknown = sorted(set(rule) - set(HOLD_RULE_FIELDS))
    if unknown:
        raise CatalogError(
            f"hold rule: unknown field(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(HOLD_RULE_FIELDS)}"
        )
    cleaned = {k: v.strip() for k, v in rule.items() if v and v.strip()}
    if not cleaned:
        raise CatalogError("hold rule: name at least one of " + ", ".join(HOLD_RULE_FIELDS))
    return cleaned


def _audited_rule(
    rule: Mapping[str, str], personal_macs: PersonalMacs | None
) -> dict[str, JsonValue]:
    """What ``hold.rule.place`` records of ``rule``: the shape of a ``search`` event's details
    (``rule`` as typed, ``personal`` as ``{"field", "mac"}``, ``mac_key``), so one review reads
    both."""
    personal = [name for name in HOLD_RULE_PERSONAL_FIELDS if name in rule]
    audited: dict[str, JsonValue] = {
        "rule": {k: v for k, v in rule.items() if k not in HOLD_RULE_PERSONAL_FIELDS}
    }
    if not personal:
        return audited
    macs = personal_macs.macs if personal_macs is not None else {}
    missing = [name for name in personal if name not in macs]
    if personal_macs is None or missing:
        raise CatalogError(
            f"hold rule: {', '.join(missing)} names a person and the audit log keeps it only "
            "as a keyed MAC, which was not given"
        )
    audited["personal"] = [{"field": name, "mac": macs[name]} for name in personal]
    audited["mac_key"] = personal_macs.key_id
    return audited


class RetentionQueries(OfficerQueries):
    """What ``recorder retention``, ``recorder hold`` and ``recorder audit`` need."""

    # --- policy in force -------------------------------------------------------------------

    def set_recording_policy(
        self, recording_id: str, *, name: str, sha256: str, retain_days: int, now_ms: int
    ) -> tuple[str, str, int]:
        """Store the policy in force; a later match only replaces it with a *longer* period.

        Returns the (name, sha256, days) stored afterwards.
        """
        _require_text("set_recording_policy", name=name, sha256=sha256)
        with self._transaction("set_recording_policy", write=True) as tx:
            tx.execute(
                """UPDATE recordings SET policy_name = ?, policy_sha256 = ?, policy_retain_days = ?
                    WHERE recording_id = ?
                        AND (policy_retain_days IS NULL OR policy_retain_days < ?
                            OR (policy_retain_days = ? AND policy_name = ?))""",
                (name, sha256, retain_days, recording_id, retain_days, retain_days, name),
            )
            row = tx.fetchone(
                """SELECT policy_name, policy_sha256, policy_retain_days FROM recordings
                    WHERE recording_id = ?""",
                (recording_id,),
            )
            if row is None:
                raise CatalogError(f"set_recording_policy: no recording {recording_id}")
            self._join_hold_rules(tx, recording_id, now_ms)
            return str(row[0]), str(row[1]), int(row[2])

    def recording_policy(self, recording_id: str) -> tuple[str, str, int] | None:
        """(name, sha256, days) of the policy stored with the recording, if any yet."""
        with self._transaction("recording_policy", write=False) as tx:
            row = tx.fetchone(
                """SELECT policy_name, policy_sha256, policy_retain_days FROM recordings
                    WHERE recording_id = ?""",
                (recording_id,),
            )
        if row is None:
            raise CatalogError(f"recording_policy: no recording {recording_id}")
        if row[0] is None:
            return None
        return str(row[0]), str(row[1]), int(row[2])

    def retention_inventory(self) -> list[RetentionFacts]:
        """Every recording without a destruction record, with what retention decides on."""
        with self._transaction("retention_inventory", write=False) as tx:
            rows = tx.fetchall(
                f"""SELECT {_RECORDING_COLS_AS_R}, r.policy_name, r.policy_sha256,
                        r.policy_retain_days
                    FROM recordings r
                    WHERE NOT EXISTS (SELECT 1 FROM destruction_records d
                        WHERE d.recording_id = r.recording_id)
                    ORDER BY r.started_ms, r.recording_id"""
            )
            people: dict[str, list[tuple[str, str | None]]] = {}
            for rid, user_id, user_name in tx.fetchall(
                f"""SELECT recording_id, user_id, user_name FROM participants
                    WHERE {_NOT_DESTROYED} ORDER BY user_id"""
            ):
                people.setdefault(rid, []).append((user_id, user_name))
            objects: dict[str, list[StoredObjectRow]] = {}
            for rid, *values in tx.fetchall(
                f"""SELECT recording_id, object_key, version_id, stored_sha256, retain_until_ms,
                        upload_state, key_id FROM segments WHERE {_NOT_DESTROYED}
                    UNION ALL
                    SELECT recording_id, object_key, version_id, stored_sha256, retain_until_ms,
                        upload_state, key_id FROM records WHERE {_NOT_DESTROYED}
                    ORDER BY 2"""
            ):
                key, version, sha, until, state, key_id = values
                objects.setdefault(rid, []).append(
                    StoredObjectRow(key, version, sha, until, UploadState(state), key_id)
                )
            events: dict[str, dict[str, int]] = {}
            for account, event, at_ms in tx.fetchall(
                "SELECT account_id, event, at_ms FROM account_events"
            ):
                events.setdefault(account, {})[event] = int(at_ms)
        facts = []
        for row in rows:
            recording = _recording(row[:15])
            facts.append(
                RetentionFacts(
                    recording=recording,
                    policy_name=row[15],
                    policy_sha256=row[16],
                    policy_retain_days=None if row[17] is None else int(row[17]),
                    participants=tuple(people.get(recording.recording_id, ())),
                    objects=tuple(objects.get(recording.recording_id, ())),
                    account_events=events.get(recording.account_id or "", {}),
                )
            )
        return facts

    def record_account_event(
        self, account_id: str, event: str, *, at_ms: int, recorded_by: str, now_ms: int
    ) -> None:
        """An event a policy may count from (``account_closed``); the first report wins."""
        _require_text("record_account_event", account_id=account_id, event=event)
        with self._transaction("record_account_event", write=True) as tx:
            changed = tx.execute(
                """INSERT INTO account_events (account_id, event, at_ms, recorded_by)
                    VALUES (?, ?, ?, ?) ON CONFLICT (account_id, event) DO NOTHING""",
                (account_id, event, at_ms, recorded_by),
            )
            if changed:
                self._append_audit(
                    tx,
                    actor=recorded_by,
                    action="retention.account_event",
                    target=account_id,
                    reason=event,
                    now_ms=now_ms,
                    details={"event": event, "at_ms": at_ms},
                )

    # --- the retention lock ----------------------------------------------------------------

    def acquire_retention_lock(
        self,
        *,
        holder: str,
        host: str,
        pid: int,
        ttl_ms: int,
        now_ms: int,
        replace_holder: str | None = None,
    ) -> bool:
        """Take the one retention lock: free, expired, or ``replace_holder``'s (a dead run).

        One conditional upsert, so two runs racing for it cannot both win.
        """
        with self._transaction("acquire_retention_lock", write=True) as tx:
            row = tx.fetchone(
                """INSERT INTO retention_lock (lock_name, holder, host, pid, acquired_ms,
                        expires_ms)
                    VALUES ('retention', ?, ?, ?, ?, ?)
                    ON CONFLICT (lock_name) DO UPDATE SET holder = excluded.holder,
                        host = excluded.host, pid = excluded.pid,
                        acquired_ms = excluded.acquired_ms, expires_ms = excluded.expires_ms
                    WHERE retention_lock.expires_ms <= ? OR retention_lock.holder = ?
                    RETURNING holder""",
                (holder, host, pid, now_ms, now_ms + ttl_ms, now_ms, replace_holder or holder),
            )
        return row is not None and row[0] == holder

    def release_retention_lock(self, holder: str) -> bool:
        with self._transaction("release_retention_lock", write=True) as tx:
            return (
                tx.execute(
                    "DELETE FROM retention_lock WHERE lock_name = 'retention' AND holder = ?",
                    (holder,),
                )
                == 1
            )

    def retention_lock(self) -> RetentionLockRow | None:
        with self._transaction("retention_lock", write=False) as tx:
            row = tx.fetchone(
                """SELECT holder, host, pid, acquired_ms, expires_ms FROM retention_lock
                    WHERE lock_name = 'retention'"""
            )
        if row is None:
            return None
        return RetentionLockRow(str(row[0]), str(row[1]), int(row[2]), int(row[3]), int(row[4]))

    # --- hold rules ------------------------------------------------------------------------

    def add_hold_rule(
        self,
        *,
        matter: str,
        rule: Mapping[str, str],
        placed_by: str,
        reason: str,
        now_ms: int,
        personal_macs: PersonalMacs | None = None,
    ) -> HoldRuleRow:
        """Store ``rule`` (its values as given: matching needs them) and audit its placing.

        The audit log outlives every recording and is never rewritten, so its event keeps the
        values that name a person (``HOLD_RULE_PERSONAL_FIELDS``) only as ``personal_macs``;
        a rule naming one without its MAC is refused, the cleartext is never the fallback.
        """
        _require_text("add_hold_rule", matter=matter, placed_by=placed_by, reason=reason)
        cleaned = validate_hold_rule(rule)
        audited = _audited_rule(cleaned, personal_macs)
        rule_json = json.dumps(cleaned, sort_keys=True, separators=(",", ":"))
        with self._transaction("add_hold_rule", write=True) as tx:
            row = tx.fetchone(
                f"""INSERT INTO hold_rules (matter, rule_json, placed_by, reason, placed_ms)
                    VALUES (?, ?, ?, ?, ?) RETURNING {_HOLD_RULE_COLS}""",
                (matter, rule_json, placed_by, reason, now_ms),
            )
            assert row is not None
            created = _hold_rule(row)
            self._append_audit(
                tx,
                actor=placed_by,
                action="hold.rule.place",
                target=f"matter:{matter}",
                reason=reason,
                now_ms=now_ms,
                details={"rule_id": created.rule_id, **audited},
            )
            return created

    def release_hold_rule(
        self, rule_id: int, *, released_by: str, reason: str, now_ms: int
    ) -> HoldRuleRow:
        _require_text("release_hold_rule", released_by=released_by, reason=reason)
        with self._transaction("release_hold_rule", write=True) as tx:
            row = tx.fetchone(
                f"""UPDATE hold_rules SET released_by = ?, released_reason = ?, released_ms = ?
                    WHERE rule_id = ? AND released_ms IS NULL
                    RETURNING {_HOLD_RULE_COLS}""",
                (released_by, reason, now_ms, rule_id),
            )
            if row is None:
                raise CatalogError(f"release_hold_rule: rule {rule_id} is unknown or released")
            released = _hold_rule(row)
            self._append_audit(
                tx,
                actor=released_by,
                action="hold.rule.release",
                target=f"matter:{released.matter}",
                reason=reason,
                now_ms=now_ms,
                details={"rule_id": rule_id},
            )
            return released

    def hold_rules(self, *, active_only: bool = True) -> list[HoldRuleRow]:
        condition = "WHERE released_ms IS NULL" if active_only else ""
        with self._transaction("hold_rules", write=False) as tx:
            rows = tx.fetchall(f"SELECT {_HOLD_RULE_COLS} FROM hold_rules {condition} ORDER BY 1")
        return [_hold_rule(row) for row in rows]

    def join_hold_rules(self, recording_id: str, now_ms: int) -> list[LegalHoldRow]:
        """Place the holds of every active rule ``recording_id`` now matches; returns new ones."""
        with self._transaction("join_hold_rules", write=True) as tx:
            return self._join_hold_rules(tx, recording_id, now_ms)

    def _join_hold_rules(self, tx: Tx, recording_id: str, now_ms: int) -> list[LegalHoldRow]:
        rules = [
            _hold_rule(row)
            for row in tx.fetchall(
                f"SELECT {_HOLD_RULE_COLS} FROM hold_rules WHERE released_ms IS NULL"
            )
        ]
        if not rules:
            return []
        row = tx.fetchone(
            f"SELECT {_RECORDING_COLS_AS_R} FROM recordings r WHERE r.recording_id = ?",
            (recording_id,),
        )
        if row is None:
            raise CatalogError(f"join_hold_rules: no recording {recording_id}")
        recording = _recording(row)
        participants = tuple(
            (str(p[0]), p[1])
            for p in tx.fetchall(
                "SELECT user_id, user_name FROM participants WHERE recording_id = ?",
                (recording_id,),
            )
        )
        joined: list[LegalHoldRow] = []
        for rule in rules:
            if not hold_rule_matches(rule.rule, recording, participants):
                continue
            placed_by = f"hold-rule:{rule.rule_id}"
            if tx.fetchone(
                """SELECT 1 FROM legal_holds WHERE scope = 'recording' AND scope_value = ?
                        AND placed_by = ?""",
                (recording_id, placed_by),
            ):
                continue  # joined before (even if that hold was released since)
            hold_row = tx.fetchone(
                f"""INSERT INTO legal_holds (matter, scope, scope_value, placed_by, reason,
                        placed_ms)
                    VALUES (?, 'recording', ?, ?, ?, ?) RETURNING {_HOLD_COLS}""",
                (rule.matter, recording_id, placed_by, rule.reason, now_ms),
            )
            assert hold_row is not None
            hold = _hold(hold_row)
            self._append_audit(
                tx,
                actor=placed_by,
                action="hold.place",
                target=recording_id,
                reason=rule.reason,
                now_ms=now_ms,
                details={
                    "hold_id": hold.hold_id,
                    "matter": rule.matter,
                    "scope": "recording",
                    "rule_id": rule.rule_id,
                },
            )
            joined.append(hold)
        return joined

    # --- audit -----------------------------------------------------------------------------

    def audit_events(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        after_id: int = 0,
        limit: int = 1_000,
    ) -> list[AuditEvent]:
        """Events matching every given filter, oldest first; page with ``after_id``."""
        if not 1 <= limit <= MAX_AUDIT_PAGE:
            raise CatalogError(f"audit_events: limit must be 1..{MAX_AUDIT_PAGE}, got {limit}")
        clauses = ["audit_id > ?"]
        params: list[object] = [after_id]
        for column, value in (("actor", actor), ("action", action), ("target", target)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since_ms is not None:
            clauses.append("at_ms >= ?")
            params.append(since_ms)
        if until_ms is not None:
            clauses.append("at_ms < ?")
            params.append(until_ms)
        params.append(limit)
        with self._transaction("audit_events", write=False) as tx:
            rows = tx.fetchall(
                f"""SELECT {_AUDIT_COLS} FROM audit_log WHERE {" AND ".join(clauses)}
                    ORDER BY audit_id LIMIT ?""",
                params,
            )
        return [_audit(row) for row in rows]
