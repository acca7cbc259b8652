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


# Migration 7 (keys): the recording-key store, its tombstones and the destruction records.
_KEYS_TABLES_V7: Final = (
    """CREATE TABLE recording_keys (
        rk_id TEXT PRIMARY KEY,
        recording_id TEXT NOT NULL,
        kek_key_id TEXT NOT NULL,
        wrapped TEXT,
        created_ms BIGINT NOT NULL,
        rewrapped_ms BIGINT,
        destroyed_ms BIGINT,
        destroy_reason TEXT
    )""",
    "CREATE INDEX recording_keys_by_recording ON recording_keys (recording_id)",
    "CREATE INDEX recording_keys_by_kek ON recording_keys (kek_key_id)",
    """CREATE TABLE recording_key_tombstones (
        recording_id TEXT PRIMARY KEY,
        destroyed_ms BIGINT NOT NULL,
        reason TEXT NOT NULL
    )""",
    """CREATE TABLE destruction_records (
        id {identity},
        recording_id TEXT NOT NULL,
        method TEXT NOT NULL,
        record_json TEXT NOT NULL,
        record_sha256 TEXT NOT NULL,
        destroyed_ms BIGINT NOT NULL
    )""",
    "CREATE INDEX destruction_records_by_recording ON destruction_records (recording_id, id)",
)

_KEYS_GUARDS_V7: Final = {
    Engine.SQLITE: (
        """CREATE TRIGGER destruction_records_no_update BEFORE UPDATE ON destruction_records
        BEGIN SELECT RAISE(ABORT, 'destruction_records is append-only'); END""",
        """CREATE TRIGGER destruction_records_no_delete BEFORE DELETE ON destruction_records
        BEGIN SELECT RAISE(ABORT, 'destruction_records is append-only'); END""",
        """CREATE TRIGGER recording_key_tombstones_no_change
        BEFORE UPDATE ON recording_key_tombstones
        BEGIN SELECT RAISE(ABORT, 'a key tombstone is permanent'); END""",
        """CREATE TRIGGER recording_key_tombstones_no_delete
        BEFORE DELETE ON recording_key_tombstones
        BEGIN SELECT RAISE(ABORT, 'a key tombstone is permanent'); END""",
        """CREATE TRIGGER recording_keys_no_delete BEFORE DELETE ON recording_keys
        BEGIN SELECT RAISE(ABORT, 'recording keys are destroyed by tombstone, never deleted');
        END""",
        """CREATE TRIGGER recording_keys_not_after_shred BEFORE INSERT ON recording_keys
        WHEN EXISTS (SELECT 1 FROM recording_key_tombstones
                     WHERE recording_id = NEW.recording_id)
        BEGIN SELECT RAISE(ABORT, 'recording key destroyed: the recording was shredded'); END""",
        """CREATE TRIGGER recording_keys_tombstone_final BEFORE UPDATE ON recording_keys
        WHEN OLD.destroyed_ms IS NOT NULL OR NEW.rk_id IS NOT OLD.rk_id
            OR NEW.recording_id IS NOT OLD.recording_id
            OR (NEW.destroyed_ms IS NOT NULL AND NEW.wrapped IS NOT NULL)
            OR (NEW.destroyed_ms IS NULL AND NEW.wrapped IS NULL)
        BEGIN SELECT RAISE(ABORT, 'recording key destroyed: a tombstone cannot be undone'); END""",
    ),
    Engine.POSTGRES: (
        """CREATE TRIGGER destruction_records_append_only
        BEFORE UPDATE OR DELETE ON destruction_records
        FOR EACH ROW EXECUTE FUNCTION
        recorder_refuse_change('destruction_records is append-only')""",
        """CREATE TRIGGER destruction_records_no_truncate BEFORE TRUNCATE ON destruction_records
        FOR EACH STATEMENT EXECUTE FUNCTION
        recorder_refuse_change('destruction_records is append-only')""",
        """CREATE TRIGGER recording_key_tombstones_permanent
        BEFORE UPDATE OR DELETE ON recording_key_tombstones
        FOR EACH ROW EXECUTE FUNCTION recorder_refuse_change('a key tombstone is permanent')""",
        """CREATE TRIGGER recording_keys_no_delete BEFORE DELETE ON recording_keys
        FOR EACH ROW EXECUTE FUNCTION
        recorder_refuse_change('recording keys are destroyed by tombstone, never deleted')""",
        """CREATE FUNCTION recorder_recording_key_guard() RETURNS trigger LANGUAGE plpgsql
        AS $body$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                IF EXISTS (SELECT 1 FROM recording_key_tombstones
                           WHERE recording_id = NEW.recording_id) THEN
                    RAISE EXCEPTION 'recording key destroyed: the recording was shredded'
                        USING ERRCODE = 'integrity_constraint_violation';
                END IF;
            ELSIF OLD.destroyed_ms IS NOT NULL
                OR NEW.rk_id IS DISTINCT FROM OLD.rk_id
                OR NEW.recording_id IS DISTINCT FROM OLD.recording_id
                OR (NEW.destroyed_ms IS NOT NULL AND NEW.wrapped IS NOT NULL)
                OR (NEW.destroyed_ms IS NULL AND NEW.wrapped IS NULL)
            THEN
                RAISE EXCEPTION 'recording key destroyed: a tombstone cannot be undone'
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            RETURN NEW;
        END
        $body$""",
        """CREATE TRIGGER recording_keys_guard BEFORE INSERT OR UPDATE ON recording_keys
        FOR EACH ROW EXECUTE FUNCTION recorder_recording_key_guard()""",
    ),
}


def _v7(engine: Engine) -> tuple[str, ...]:
    tables = tuple(ddl.format(identity=_IDENTITY[engine]) for ddl in _KEYS_TABLES_V7)
    return tables + _KEYS_GUARDS_V7[engine]


# Migration 8 (retention): the policy in force per recording, the run lock, hold rules and
# account events (destruction_records came with migration 7).
_RETENTION_TABLES_V8: Final = (
    "ALTER TABLE recordings ADD COLUMN policy_name TEXT",
    "ALTER TABLE recordings ADD COLUMN policy_sha256 TEXT",
    "ALTER TABLE recordings ADD COLUMN policy_retain_days INTEGER",
    """CREATE TABLE retention_lock (
        lock_name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        host TEXT NOT NULL,
        pid BIGINT NOT NULL,
        acquired_ms BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL
    )""",
    """CREATE TABLE hold_rules (
        rule_id {identity},
        matter TEXT NOT NULL,
        rule_json TEXT NOT NULL,
        placed_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        placed_ms BIGINT NOT NULL,
        released_by TEXT,
        released_reason TEXT,
        released_ms BIGINT
    )""",
    """CREATE TABLE account_events (
        account_id TEXT NOT NULL,
        event TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        recorded_by TEXT NOT NULL,
        PRIMARY KEY (account_id, event)
    )""",
)

_RETENTION_GUARDS_V8: Final = {
    Engine.SQLITE: (
        """CREATE TRIGGER hold_rules_no_delete BEFORE DELETE ON hold_rules
        BEGIN SELECT RAISE(ABORT, 'hold rules are released, never deleted'); END""",
    ),
    Engine.POSTGRES: (
        """CREATE TRIGGER hold_rules_no_delete BEFORE DELETE ON hold_rules
        FOR EACH ROW EXECUTE FUNCTION
        recorder_refuse_change('hold rules are released, never deleted')""",
    ),
}


def _v8(engine: Engine) -> tuple[str, ...]:
    tables = tuple(ddl.format(identity=_IDENTITY[engine]) for ddl in _RETENTION_TABLES_V8)
    return tables + _RETENTION_GUARDS_V8[engine]


#: ``search_recordings`` (``recorder.catalog._search``): keyset paging newest first, every id it
#: matches, and names compared as ``LOWER(...)`` (expression indexes, on both engines).
_SEARCH_INDEXES_V9: Final = (
    "CREATE INDEX recordings_by_started_id ON recordings (started_ms, recording_id)",
    "CREATE INDEX recordings_by_product_started ON recordings (product, started_ms)",
    "CREATE INDEX recordings_by_status_started ON recordings (status, started_ms)",
    "CREATE INDEX recordings_by_meeting_number ON recordings (meeting_number)",
    "CREATE INDEX recordings_by_account ON recordings (account_id)",
    "CREATE INDEX recordings_by_operator ON recordings (operator_id)",
    "CREATE INDEX recordings_by_queue_id ON recordings (cc_queue_id)",
    "CREATE INDEX recordings_by_queue_name ON recordings (LOWER(cc_queue_name))",
    "CREATE INDEX recordings_by_agent_name ON recordings (LOWER(cc_agent_name))",
    "CREATE INDEX participants_by_lower_name ON participants (LOWER(user_name))",
    "CREATE INDEX gaps_by_cause ON gaps (cause, recording_id)",
)


# Migration 14 (zoom-completeness): what should have been recorded, whether its RTMS start was
# asked for and how that went, the reconciler's findings (one row per expectation, resolved in
# place when a later run finds it met), and the Zoom directory's answers per instance.
_COMPLETENESS_TABLES_V14: Final = (
    """CREATE TABLE expectations (
        expectation_id {identity},
        product TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        target_id TEXT NOT NULL,
        source TEXT NOT NULL,
        event TEXT NOT NULL,
        account_id TEXT,
        user_id TEXT,
        queue_id TEXT,
        expected_start_ms BIGINT NOT NULL,
        expected_end_ms BIGINT,
        created_ms BIGINT NOT NULL,
        start_state TEXT NOT NULL,
        start_attempts INTEGER NOT NULL DEFAULT 0,
        start_claimed_ms BIGINT,
        start_error_status INTEGER,
        start_error_code INTEGER,
        start_error TEXT,
        start_result_ms BIGINT,
        settled_ms BIGINT,
        UNIQUE (product, instance_id)
    )""",
    "CREATE INDEX expectations_by_start ON expectations (expected_start_ms)",
    """CREATE INDEX expectations_unsettled ON expectations (expected_start_ms, expectation_id)
        WHERE settled_ms IS NULL""",
    "CREATE INDEX expectations_by_start_state ON expectations (start_state)",
    """CREATE TABLE findings (
        expectation_id BIGINT PRIMARY KEY REFERENCES expectations (expectation_id),
        kind TEXT NOT NULL,
        cause TEXT NOT NULL,
        detail TEXT NOT NULL,
        recording_id TEXT,
        first_found_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL,
        resolved_ms BIGINT
    )""",
    "CREATE INDEX findings_by_found ON findings (first_found_ms)",
    "CREATE INDEX findings_by_recording ON findings (recording_id)",
    """CREATE TABLE enrichments (
        product TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        lookup_id TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms BIGINT NOT NULL,
        last_error TEXT,
        topic TEXT,
        host_id TEXT,
        host_email TEXT,
        queue_id TEXT,
        queue_name TEXT,
        agent_id TEXT,
        agent_name TEXT,
        agent_email TEXT,
        consumer_number TEXT,
        direction TEXT,
        caller_number TEXT,
        callee_number TEXT,
        updated_ms BIGINT NOT NULL,
        PRIMARY KEY (product, instance_id)
    )""",
    "CREATE INDEX enrichments_by_instance ON enrichments (instance_id)",
    "CREATE INDEX enrichments_due ON enrichments (state, next_attempt_ms)",
    "CREATE INDEX enrichments_by_topic ON enrichments (LOWER(topic))",
    "CREATE INDEX enrichments_by_host ON enrichments (host_id)",
    "CREATE INDEX enrichments_by_host_email ON enrichments (LOWER(host_email))",
    "CREATE INDEX enrichments_by_agent ON enrichments (agent_id)",
    "CREATE INDEX enrichments_by_agent_name ON enrichments (LOWER(agent_name))",
    "CREATE INDEX enrichments_by_agent_email ON enrichments (LOWER(agent_email))",
    "CREATE INDEX enrichments_by_queue ON enrichments (queue_id)",
    "CREATE INDEX enrichments_by_queue_name ON enrichments (LOWER(queue_name))",
    "CREATE INDEX enrichments_by_consumer ON enrichments (consumer_number)",
    "CREATE INDEX enrichments_by_caller ON enrichments (caller_number)",
    "CREATE INDEX enrichments_by_callee ON enrichments (callee_number)",
)


def _v14(engine: Engine) -> tuple[str, ...]:
    return tuple(ddl.format(identity=_IDENTITY[engine]) for ddl in _COMPLETENESS_TABLES_V14)


#: The officers' web console (``recorder.web``, ``recorder.catalog._web``). A session row is
#: keyed by the SHA-256 of its cookie, so a read of the catalog yields no usable session id.
_WEB_TABLES_V15: Final = (
    """CREATE TABLE web_accounts (
        username TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        password_hash TEXT,
        oidc_subject TEXT UNIQUE,
        disabled BOOLEAN NOT NULL DEFAULT FALSE,
        created_ms BIGINT NOT NULL,
        created_by TEXT NOT NULL
    )""",
    """CREATE TABLE web_sessions (
        session_hash TEXT PRIMARY KEY,
        username TEXT REFERENCES web_accounts (username),
        csrf_token TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL,
        pending TEXT
    )""",
    "CREATE INDEX web_sessions_by_expiry ON web_sessions (expires_ms)",
    """CREATE TABLE web_session_reasons (
        session_hash TEXT NOT NULL REFERENCES web_sessions (session_hash) ON DELETE CASCADE,
        recording_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        given_ms BIGINT NOT NULL,
        PRIMARY KEY (session_hash, recording_id)
    )""",
)


# Migration 17 (pii-shred): what destroying a recording scrubbed of personal data from the
# catalog, and when (``recorder.catalog._scrub``). One row per recording, never changed: a
# scrub is not undone. A scrubbed enrichment is final, so a directory answer that arrives after
# the recording was destroyed cannot bring names or numbers back.
_SCRUB_TABLES_V17: Final = (
    """CREATE TABLE pii_scrubs (
        recording_id TEXT PRIMARY KEY,
        scrubbed_ms BIGINT NOT NULL,
        actor TEXT NOT NULL,
        scrubbed TEXT NOT NULL
    )""",
)

_SCRUB_GUARDS_V17: Final = {
    Engine.SQLITE: (
        """CREATE TRIGGER pii_scrubs_no_update BEFORE UPDATE ON pii_scrubs
        BEGIN SELECT RAISE(ABORT, 'pii_scrubs is append-only'); END""",
        """CREATE TRIGGER pii_scrubs_no_delete BEFORE DELETE ON pii_scrubs
        BEGIN SELECT RAISE(ABORT, 'pii_scrubs is append-only'); END""",
        """CREATE TRIGGER enrichments_scrubbed_final BEFORE UPDATE ON enrichments
        WHEN OLD.state = 'scrubbed'
        BEGIN SELECT RAISE(ABORT, 'enrichment scrubbed: its recordings were destroyed'); END""",
        """CREATE TRIGGER enrichments_scrubbed_no_delete BEFORE DELETE ON enrichments
        WHEN OLD.state = 'scrubbed'
        BEGIN SELECT RAISE(ABORT, 'enrichment scrubbed: its recordings were destroyed'); END""",
    ),
    Engine.POSTGRES: (
        """CREATE TRIGGER pii_scrubs_append_only BEFORE UPDATE OR DELETE ON pii_scrubs
        FOR EACH ROW EXECUTE FUNCTION recorder_refuse_change('pii_scrubs is append-only')""",
        """CREATE TRIGGER pii_scrubs_no_truncate BEFORE TRUNCATE ON pii_scrubs
        FOR EACH STATEMENT EXECUTE FUNCTION recorder_refuse_change('pii_scrubs is append-only')""",
        """CREATE TRIGGER enrichments_scrubbed_final BEFORE UPDATE OR DELETE ON enrichments
        FOR EACH ROW WHEN (OLD.state = 'scrubbed') EXECUTE FUNCTION
        recorder_refuse_change('enrichment scrubbed: its recordings were destroyed')""",
    ),
}


# Migration 18 (pg-search): each posting carries its recording's start, and an index lists a
# word's recordings newest first. A text search then walks the rarest word's postings in the
# order the page wants and stops at the page, instead of collecting every recording of the word
# (or walking every recording) first. ``started_ms`` is a copy of ``recordings.started_ms``: a
# trigger follows the one change that column gets (an earlier start on a re-upsert), and
# ``add_transcript_tokens`` writes it. Added in place (not a rebuilt table), so columns other
# migrations add to ``transcript_tokens`` survive.
_TEXT_POSTINGS_INDEX_V18: Final = (
    "CREATE INDEX transcript_tokens_by_time"
    " ON transcript_tokens (token_mac, started_ms, recording_id)"
)
_TEXT_POSTINGS_V18: Final = {
    Engine.SQLITE: (
        "ALTER TABLE transcript_tokens ADD COLUMN started_ms BIGINT NOT NULL DEFAULT 0",
        """UPDATE transcript_tokens SET started_ms = (SELECT r.started_ms FROM recordings r
            WHERE r.recording_id = transcript_tokens.recording_id)""",
        _TEXT_POSTINGS_INDEX_V18,
        """CREATE TRIGGER transcript_tokens_follow_start AFTER UPDATE OF started_ms ON recordings
        WHEN NEW.started_ms <> OLD.started_ms
        BEGIN
            UPDATE transcript_tokens SET started_ms = NEW.started_ms
                WHERE recording_id = NEW.recording_id;
        END""",
    ),
    Engine.POSTGRES: (
        # Minutes per million indexed recordings, far past the catalog's 15 s statement limit
        # (which is for the recorder's own queries); for this transaction only.
        "SET LOCAL statement_timeout = 0",
        "ALTER TABLE transcript_tokens ADD COLUMN started_ms BIGINT NOT NULL DEFAULT 0",
        # A join, not a subquery per posting: one pass over each table.
        """UPDATE transcript_tokens t SET started_ms = r.started_ms FROM recordings r
            WHERE r.recording_id = t.recording_id""",
        _TEXT_POSTINGS_INDEX_V18,
        """CREATE FUNCTION recorder_tokens_follow_start() RETURNS trigger LANGUAGE plpgsql
        AS $body$
        BEGIN
            UPDATE transcript_tokens SET started_ms = NEW.started_ms
                WHERE recording_id = NEW.recording_id;
            RETURN NULL;
        END
        $body$""",
        """CREATE TRIGGER transcript_tokens_follow_start AFTER UPDATE OF started_ms ON recordings
        FOR EACH ROW WHEN (NEW.started_ms IS DISTINCT FROM OLD.started_ms)
        EXECUTE FUNCTION recorder_tokens_follow_start()""",
    ),
}


# Migration 19 (queue-search): the Contact Center columns, each with the page's sort key, so a
# --queue or --agent search walks one queue's or agent's recordings newest first and stops at
# the page instead of collecting all of them (thousands per queue) and sorting. They replace
# the single-column indexes, which are their prefixes (an equality look-up uses these as well).
_CC_WALKS_V19: Final = (
    "DROP INDEX recordings_by_queue_id",
    "DROP INDEX recordings_by_queue_name",
    "DROP INDEX recordings_by_agent",
    "DROP INDEX recordings_by_agent_name",
    "CREATE INDEX recordings_by_queue_id_started"
    " ON recordings (cc_queue_id, started_ms, recording_id)",
    "CREATE INDEX recordings_by_queue_name_started"
    " ON recordings (LOWER(cc_queue_name), started_ms, recording_id)",
    "CREATE INDEX recordings_by_agent_id_started"
    " ON recordings (cc_agent_id, started_ms, recording_id)",
    "CREATE INDEX recordings_by_agent_name_started"
    " ON recordings (LOWER(cc_agent_name), started_ms, recording_id)",
)
_CC_WALKS_SETUP_V19: Final = {
    Engine.SQLITE: (),
    # Seconds per million recordings: past the catalog's statement limit on a big catalog.
    Engine.POSTGRES: ("SET LOCAL statement_timeout = 0",),
}


def _v17(engine: Engine) -> tuple[str, ...]:
    return _SCRUB_TABLES_V17 + _SCRUB_GUARDS_V17[engine]


# Migration 20: PostgreSQL's text search now probes the other words on the walked key (word,
# start, recording), so a posting whose ``started_ms`` is not its recording's start would hide
# the recording from every search of two words or more. Before ``add_transcript_tokens`` read the
# start FOR SHARE, a start moved earlier in a transaction concurrent with indexing could leave
# such postings (the follow-start trigger did not see them yet). This puts every posting back on
# its recording's start; it writes only the postings that differ. SQLite serialises writers, so
# the race never happened there, and its probe does not use the start.
_TEXT_POSTINGS_REPAIR_V20: Final[dict[Engine, tuple[str, ...]]] = {
    Engine.SQLITE: (),
    Engine.POSTGRES: (
        # One pass over each table, like migration 18's backfill: not for the 15 s limit.
        "SET LOCAL statement_timeout = 0",
        """UPDATE transcript_tokens t SET started_ms = r.started_ms FROM recordings r
            WHERE r.recording_id = t.recording_id AND t.started_ms <> r.started_ms""",
    ),
}

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
    Migration(
        version=6,
        description="lifecycle events (rtms.start_failed, concurrency), kept whole as evidence",
        statements={
            engine: (
                f"""CREATE TABLE lifecycle_events (
                    event_id {_IDENTITY[engine]},
                    dedup_key TEXT NOT NULL UNIQUE,
                    event TEXT NOT NULL,
                    kind TEXT NOT NULL,
                    failed BOOLEAN NOT NULL,
                    product TEXT,
                    event_ts_ms BIGINT,
                    received_ms BIGINT NOT NULL,
                    rtms_stream_id TEXT,
                    instance_id TEXT,
                    ids TEXT NOT NULL DEFAULT '{{}}',
                    reason TEXT,
                    body TEXT NOT NULL
                )""",
                "CREATE INDEX lifecycle_events_by_stream ON lifecycle_events (rtms_stream_id)",
                "CREATE INDEX lifecycle_events_by_instance ON lifecycle_events (instance_id)",
                "CREATE INDEX lifecycle_events_by_received ON lifecycle_events (received_ms)",
            )
            for engine in Engine
        },
    ),
    Migration(
        version=7,
        description="recording keys in the catalog, tombstones, destruction records",
        statements={engine: _v7(engine) for engine in Engine},
    ),
    Migration(
        version=8,
        description="retention: policy per recording, run lock, hold rules, account events",
        statements={engine: _v8(engine) for engine in Engine},
    ),
    Migration(
        version=9,
        description="officer search: time order with a tie-break, every id, names without case",
        statements={engine: _SEARCH_INDEXES_V9 for engine in Engine},
    ),
    Migration(
        version=10,
        description="verification runs: each recording's `recorder verify` results, appended",
        statements={
            engine: (
                f"""CREATE TABLE verification_runs (
                    run_id {_IDENTITY[engine]},
                    recording_id TEXT NOT NULL REFERENCES recordings (recording_id),
                    verified_ms BIGINT NOT NULL,
                    ok BOOLEAN NOT NULL,
                    failures TEXT NOT NULL,
                    detail TEXT NOT NULL
                )""",
                "CREATE INDEX verification_runs_by_recording"
                " ON verification_runs (recording_id, verified_ms)",
            )
            for engine in Engine
        },
    ),
    Migration(
        version=11,
        description="the lease row keeps its owner's last durable capture checkpoint",
        statements={
            engine: ("ALTER TABLE streams ADD COLUMN lease_checkpoint_ms BIGINT",)
            for engine in Engine
        },
    ),
    Migration(
        version=12,
        description="workers: the fleet work queue's live workers, their capacity and heartbeat",
        statements={
            engine: (
                """CREATE TABLE workers (
                    owner TEXT PRIMARY KEY,
                    capacity INTEGER NOT NULL,
                    heartbeat_ms BIGINT NOT NULL,
                    expires_ms BIGINT NOT NULL
                )""",
                "CREATE INDEX streams_by_lease_expiry ON streams (state, lease_expires_ms)",
            )
            for engine in Engine
        },
    ),
    Migration(
        version=13,
        description="RTMS control requests made through the recorder: actor, reason, Zoom's "
        "answer, and the recording whose pause a request explains",
        statements={
            engine: (
                f"""CREATE TABLE rtms_requests (
                    request_id {_IDENTITY[engine]},
                    product TEXT NOT NULL,
                    target_id TEXT NOT NULL,
                    action TEXT NOT NULL,
                    actor TEXT NOT NULL,
                    reason TEXT NOT NULL,
                    requested_ms BIGINT NOT NULL,
                    outcome TEXT NOT NULL,
                    error TEXT,
                    matched_recording_id TEXT,
                    matched_ms BIGINT,
                    audit_target TEXT NOT NULL
                )""",
                "CREATE INDEX rtms_requests_by_target"
                " ON rtms_requests (product, target_id, requested_ms)",
            )
            for engine in Engine
        },
    ),
    Migration(
        version=14,
        description="completeness: expectations, auto-start results, findings, enrichment",
        statements={engine: _v14(engine) for engine in Engine},
    ),
    Migration(
        version=15,
        description="web console: local accounts, server-side sessions, reasons given per session",
        statements={engine: _WEB_TABLES_V15 for engine in Engine},
    ),
    Migration(
        version=16,
        description="officer search: a keyed blind index of transcript words (MACs, no words)",
        statements={
            engine: (
                """CREATE TABLE transcript_tokens (
                    token_mac TEXT NOT NULL,
                    recording_id TEXT NOT NULL REFERENCES recordings (recording_id),
                    PRIMARY KEY (token_mac, recording_id)
                )""",
                # Both orders cover both columns: a probe "this recording, this word" is an
                # index-only lookup either way; this one also serves deleting a recording.
                "CREATE INDEX transcript_tokens_by_recording"
                " ON transcript_tokens (recording_id, token_mac)",
                """CREATE TABLE transcript_index (
                    recording_id TEXT NOT NULL REFERENCES recordings (recording_id),
                    key_id TEXT NOT NULL,
                    segments BIGINT NOT NULL,
                    indexed_ms BIGINT NOT NULL,
                    PRIMARY KEY (recording_id, key_id)
                )""",
                # Recordings per token (and, under the empty MAC, recordings indexed): what the
                # search planner reads to start from the rarest word.
                """CREATE TABLE transcript_token_stats (
                    token_mac TEXT PRIMARY KEY,
                    recordings BIGINT NOT NULL
                )""",
            )
            for engine in Engine
        },
    ),
    Migration(
        version=17,
        description="destruction scrubs personal data: what was scrubbed per recording, when; "
        "a scrubbed enrichment is final",
        statements={engine: _v17(engine) for engine in Engine},
    ),
    Migration(
        version=18,
        description="officer search: transcript postings in time order, so a --text search "
        "stops at a page",
        statements={engine: _TEXT_POSTINGS_V18[engine] for engine in Engine},
    ),
    Migration(
        version=19,
        description="officer search: queue and agent columns in time order, so a --queue or "
        "--agent search stops at a page",
        statements={engine: _CC_WALKS_SETUP_V19[engine] + _CC_WALKS_V19 for engine in Engine},
    ),
    Migration(
        version=20,
        description="officer search: every transcript posting carries its recording's start "
        "(PostgreSQL's multi-word probe matches on it)",
        statements={engine: _TEXT_POSTINGS_REPAIR_V20[engine] for engine in Engine},
    ),
)

LATEST_VERSION: Final = MIGRATIONS[-1].version
