"""The catalog schema and its forward-only migrations, for SQLite and PostgreSQL.

Rule 1: migrations are append-only. A released migration is never edited; a change is a new
numbered migration for *both* engines, so ``LATEST_VERSION`` is the same everywhere.

Rule 2: the two engines store identical values. Times are ``BIGINT`` Unix milliseconds (UTC),
JSON is canonical text, booleans are ``BOOLEAN`` (SQLite keeps 0/1). Only what SQL itself spells
differently differs: identity columns and the triggers that make ``audit_log`` append-only.

Rule 3: the database itself refuses to rewrite history. ``audit_log`` rejects UPDATE and DELETE
(and TRUNCATE on PostgreSQL) through triggers; ``legal_holds`` rejects DELETE and any UPDATE
other than the one release of a hold: a hold is released, never removed or rewritten.
Application code cannot bypass this by mistake.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final


class Engine(enum.StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    #: Statements per engine, run in order inside one transaction.
    statements: dict[Engine, tuple[str, ...]]


SCHEMA_VERSION_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY,"
    " description TEXT NOT NULL,"
    " applied_ms BIGINT NOT NULL)"
)

_IDENTITY: Final = {
    Engine.SQLITE: "INTEGER PRIMARY KEY AUTOINCREMENT",
    Engine.POSTGRES: "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
}

# ``{identity}`` is replaced per engine; everything else is the same text on both.
_TABLES_V1: Final = (
    """CREATE TABLE streams (
        rtms_stream_id TEXT PRIMARY KEY,
        product TEXT,
        instance_id TEXT,
        state TEXT NOT NULL DEFAULT 'started',
        server_urls TEXT NOT NULL DEFAULT '[]',
        lease_owner TEXT,
        lease_expires_ms BIGINT,
        lease_epoch BIGINT NOT NULL DEFAULT 0,
        first_seen_ms BIGINT NOT NULL,
        last_event_ts_ms BIGINT NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX streams_by_owner ON streams (lease_owner)",
    "CREATE INDEX streams_by_state ON streams (state)",
    "CREATE INDEX streams_by_instance ON streams (instance_id)",
    """CREATE TABLE recordings (
        recording_id TEXT PRIMARY KEY,
        rtms_stream_id TEXT NOT NULL UNIQUE REFERENCES streams (rtms_stream_id),
        product TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        operator_id TEXT,
        account_id TEXT,
        meeting_number TEXT,
        cc_queue_id TEXT,
        cc_queue_name TEXT,
        cc_agent_id TEXT,
        cc_agent_name TEXT,
        started_ms BIGINT NOT NULL,
        ended_ms BIGINT,
        end_reason TEXT,
        status TEXT NOT NULL DEFAULT 'active',
        created_ms BIGINT NOT NULL
    )""",
    "CREATE INDEX recordings_by_instance ON recordings (instance_id)",
    "CREATE INDEX recordings_by_started ON recordings (started_ms)",
    "CREATE INDEX recordings_by_agent ON recordings (cc_agent_id)",
    """CREATE TABLE participants (
        recording_id TEXT NOT NULL REFERENCES recordings (recording_id),
        user_id TEXT NOT NULL,
        user_name TEXT,
        role TEXT,
        first_seen_ms BIGINT,
        PRIMARY KEY (recording_id, user_id)
    )""",
    "CREATE INDEX participants_by_user ON participants (user_id)",
    "CREATE INDEX participants_by_name ON participants (user_name)",
    """CREATE TABLE segments (
        recording_id TEXT NOT NULL REFERENCES recordings (recording_id),
        track TEXT NOT NULL,
        segment_index INTEGER NOT NULL,
        participant_id TEXT,
        object_key TEXT NOT NULL,
        version_id TEXT,
        plaintext_sha256 TEXT NOT NULL,
        stored_sha256 TEXT,
        plaintext_size BIGINT NOT NULL,
        stored_size BIGINT NOT NULL,
        start_ms BIGINT NOT NULL,
        end_ms BIGINT NOT NULL,
        start_sample BIGINT NOT NULL,
        sample_count BIGINT NOT NULL,
        sample_rate INTEGER NOT NULL,
        codec TEXT NOT NULL,
        key_id TEXT NOT NULL,
        retain_until_ms BIGINT,
        upload_state TEXT NOT NULL DEFAULT 'pending',
        recovered BOOLEAN NOT NULL DEFAULT FALSE,
        created_ms BIGINT NOT NULL,
        uploaded_ms BIGINT,
        verified_ms BIGINT,
        PRIMARY KEY (recording_id, track, segment_index)
    )""",
    "CREATE INDEX segments_by_upload_state ON segments (upload_state)",
    "CREATE INDEX segments_by_retain_until ON segments (retain_until_ms)",
    """CREATE TABLE records (
        recording_id TEXT NOT NULL REFERENCES recordings (recording_id),
        kind TEXT NOT NULL,
        record_index INTEGER NOT NULL,
        object_key TEXT NOT NULL,
        version_id TEXT,
        plaintext_sha256 TEXT NOT NULL,
        stored_sha256 TEXT,
        plaintext_size BIGINT NOT NULL,
        stored_size BIGINT NOT NULL,
        start_ms BIGINT NOT NULL,
        end_ms BIGINT NOT NULL,
        key_id TEXT NOT NULL,
        retain_until_ms BIGINT,
        upload_state TEXT NOT NULL DEFAULT 'pending',
        recovered BOOLEAN NOT NULL DEFAULT FALSE,
        created_ms BIGINT NOT NULL,
        uploaded_ms BIGINT,
        verified_ms BIGINT,
        PRIMARY KEY (recording_id, kind, record_index)
    )""",
    "CREATE INDEX records_by_upload_state ON records (upload_state)",
    """CREATE TABLE gaps (
        gap_id {identity},
        recording_id TEXT NOT NULL REFERENCES recordings (recording_id),
        track TEXT NOT NULL,
        start_ms BIGINT NOT NULL,
        end_ms BIGINT NOT NULL,
        start_sample BIGINT,
        end_sample BIGINT,
        cause TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        UNIQUE (recording_id, track, start_ms, cause)
    )""",
    """CREATE TABLE pauses (
        recording_id TEXT NOT NULL REFERENCES recordings (recording_id),
        start_ms BIGINT NOT NULL,
        end_ms BIGINT,
        actor TEXT,
        PRIMARY KEY (recording_id, start_ms)
    )""",
    """CREATE TABLE legal_holds (
        hold_id {identity},
        matter TEXT NOT NULL,
        scope TEXT NOT NULL,
        scope_value TEXT NOT NULL,
        placed_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        placed_ms BIGINT NOT NULL,
        released_by TEXT,
        released_reason TEXT,
        released_ms BIGINT
    )""",
    "CREATE INDEX legal_holds_by_scope ON legal_holds (scope, scope_value)",
    """CREATE TABLE webhook_dedup (
        dedup_key TEXT PRIMARY KEY,
        first_seen_ms BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL
    )""",
    "CREATE INDEX webhook_dedup_by_expiry ON webhook_dedup (expires_ms)",
    """CREATE TABLE audit_log (
        audit_id {identity},
        at_ms BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        reason TEXT NOT NULL,
        details TEXT NOT NULL DEFAULT '{{}}'
    )""",
    "CREATE INDEX audit_log_by_target ON audit_log (target, audit_id)",
)

_GUARDS_V1: Final = {
    Engine.SQLITE: (
        """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
        """CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
        """CREATE TRIGGER legal_holds_no_delete BEFORE DELETE ON legal_holds
        BEGIN SELECT RAISE(ABORT, 'legal holds are released, never deleted'); END""",
        """CREATE TRIGGER legal_holds_release_only BEFORE UPDATE ON legal_holds
        WHEN OLD.released_ms IS NOT NULL OR NEW.released_ms IS NULL
            OR NEW.matter IS NOT OLD.matter OR NEW.scope IS NOT OLD.scope
            OR NEW.scope_value IS NOT OLD.scope_value OR NEW.placed_by IS NOT OLD.placed_by
            OR NEW.reason IS NOT OLD.reason OR NEW.placed_ms IS NOT OLD.placed_ms
        BEGIN SELECT RAISE(ABORT, 'a legal hold can only be released, once'); END""",
    ),
    Engine.POSTGRES: (
        """CREATE FUNCTION recorder_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $body$
        BEGIN
            RAISE EXCEPTION '% on % refused: %', TG_OP, TG_TABLE_NAME, TG_ARGV[0]
                USING ERRCODE = 'integrity_constraint_violation';
        END
        $body$""",
        """CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
        FOR EACH ROW EXECUTE FUNCTION recorder_refuse_change('audit_log is append-only')""",
        """CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION recorder_refuse_change('audit_log is append-only')""",
        """CREATE TRIGGER legal_holds_no_delete BEFORE DELETE ON legal_holds
        FOR EACH ROW EXECUTE FUNCTION
        recorder_refuse_change('legal holds are released, never deleted')""",
        """CREATE FUNCTION recorder_hold_release_only() RETURNS trigger LANGUAGE plpgsql AS $body$
        BEGIN
            IF OLD.released_ms IS NOT NULL OR NEW.released_ms IS NULL
                OR (NEW.matter, NEW.scope, NEW.scope_value, NEW.placed_by, NEW.reason,
                    NEW.placed_ms)
                   IS DISTINCT FROM
                   (OLD.matter, OLD.scope, OLD.scope_value, OLD.placed_by, OLD.reason,
                    OLD.placed_ms)
            THEN
                RAISE EXCEPTION 'a legal hold can only be released, once'
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            RETURN NEW;
        END
        $body$""",
        """CREATE TRIGGER legal_holds_release_only BEFORE UPDATE ON legal_holds
        FOR EACH ROW EXECUTE FUNCTION recorder_hold_release_only()""",
        """CREATE TRIGGER legal_holds_no_truncate BEFORE TRUNCATE ON legal_holds
        FOR EACH STATEMENT EXECUTE FUNCTION
        recorder_refuse_change('legal holds are released, never deleted')""",
    ),
}


def _v1(engine: Engine) -> tuple[str, ...]:
    tables = tuple(ddl.format(identity=_IDENTITY[engine]) for ddl in _TABLES_V1)
    return tables + _GUARDS_V1[engine]


MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        version=1,
        description="streams, leases, recordings, evidence, holds, dedup, append-only audit log",
        statements={engine: _v1(engine) for engine in Engine},
    ),
    Migration(
        version=2,
        description="find evidence by key id, so key destruction can ask about holds quickly",
        statements={
            engine: (
                "CREATE INDEX segments_by_key ON segments (key_id)",
                "CREATE INDEX records_by_key ON records (key_id)",
            )
            for engine in Engine
        },
    ),
    Migration(
        version=3,
        description="hash-chain the audit log, so edits made behind the triggers' back show",
        statements={
            engine: (
                "ALTER TABLE audit_log ADD COLUMN prev_hash TEXT",
                "ALTER TABLE audit_log ADD COLUMN row_hash TEXT",
            )
            for engine in Engine
        },
    ),
    Migration(
        version=4,
        description="server URLs follow the newest webhook that carried URLs, in any order",
        statements={
            engine: ("ALTER TABLE streams ADD COLUMN server_urls_ts_ms BIGINT NOT NULL DEFAULT 0",)
            for engine in Engine
        },
    ),
    Migration(
        version=5,
        description="gap coverage: audio recovered late covers part of a recorded gap "
        "(appended, the gap row itself is never rewritten)",
        statements={
            engine: (
                """CREATE TABLE gap_coverage (
                    recording_id TEXT NOT NULL REFERENCES recordings (recording_id),
                    track TEXT NOT NULL,
                    gap_start_ms BIGINT NOT NULL,
                    cause TEXT NOT NULL,
                    covered_start_ms BIGINT NOT NULL,
                    covered_end_ms BIGINT NOT NULL,
                    segment_index BIGINT NOT NULL,
                    at_ms BIGINT NOT NULL,
                    PRIMARY KEY (recording_id, track, gap_start_ms, cause, segment_index)
                )""",
            )
            for engine in Engine
        },
    ),
)

LATEST_VERSION: Final = MIGRATIONS[-1].version
