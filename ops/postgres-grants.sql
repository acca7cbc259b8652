-- rtms-recorder on PostgreSQL: the service role may only INSERT into the audit trail.
--
-- Two roles: the schema's OWNER runs migrations (`recorder check` or the first start with the
-- owner's DSN); the SERVICE role runs `recorder serve`, `recorder retention run` and the
-- officer commands. Triggers already refuse UPDATE/DELETE on audit_log, but an owner can drop
-- triggers; the service role cannot, and with these grants it cannot even try. Run this file
-- as the owner (or a superuser) after every migration, with psql variables:
--
--   psql "$OWNER_DSN" -v schema=recorder -v service_role=rtms_recorder \
--        -f ops/postgres-grants.sql
--
-- The service role must not own anything in the schema (an owner bypasses grants).

GRANT USAGE ON SCHEMA :"schema" TO :"service_role";
REVOKE CREATE ON SCHEMA :"schema" FROM :"service_role";

-- Working tables: what the recorder reads and writes while recording.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA :"schema" TO :"service_role";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA :"schema" TO :"service_role";

-- Evidence of what happened: append only.
REVOKE UPDATE, DELETE, TRUNCATE ON :"schema".audit_log FROM :"service_role";
REVOKE UPDATE, DELETE, TRUNCATE ON :"schema".destruction_records FROM :"service_role";
-- What destroying a recording scrubbed (migration 17): one row per recording, kept.
REVOKE UPDATE, DELETE, TRUNCATE ON :"schema".pii_scrubs FROM :"service_role";
REVOKE UPDATE, DELETE, TRUNCATE ON :"schema".schema_version FROM :"service_role";
REVOKE INSERT ON :"schema".schema_version FROM :"service_role";
-- Holds are released (one UPDATE, guarded by a trigger), never deleted.
REVOKE DELETE, TRUNCATE ON :"schema".legal_holds FROM :"service_role";
REVOKE DELETE, TRUNCATE ON :"schema".hold_rules FROM :"service_role";
-- Completeness (migration 14): what was expected and what was found missing is evidence too:
-- updated in place (start results, a finding resolved), never deleted.
REVOKE DELETE, TRUNCATE ON :"schema".expectations FROM :"service_role";
REVOKE DELETE, TRUNCATE ON :"schema".findings FROM :"service_role";
-- Web console accounts say who could look at evidence: disabled, never deleted.
REVOKE DELETE, TRUNCATE ON :"schema".web_accounts FROM :"service_role";
