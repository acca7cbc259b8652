"""ops/postgres-grants.sql: the service role may INSERT audit events, never change them."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from recorder.catalog import ParticipantInfo, Product, RecordingStart, open_catalog
from recorder.evidence_destruction import DestructionMethod, DestructionRecord
from tests.retention.helpers import T0

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

GRANTS = Path(__file__).resolve().parents[2] / "ops" / "postgres-grants.sql"


def schema_of(dsn: str) -> str:
    options = parse_qs(urlsplit(dsn).query)["options"][0]
    found = re.search(r"search_path=(\S+)", options)
    assert found
    return found.group(1)


@pytest.fixture
def service_role(postgres_server: str) -> Iterator[str]:
    role = f"rtms_service_{secrets.token_hex(4)}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        yield role
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


def apply_grants(dsn: str, schema: str, role: str) -> None:
    """What ``psql -v schema=.. -v service_role=.. -f`` does with the file."""
    lines = [ln for ln in GRANTS.read_text().splitlines() if not ln.strip().startswith("--")]
    sql = "\n".join(lines).replace(':"schema"', f'"{schema}"')
    sql = sql.replace(':"service_role"', f'"{role}"')
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in sql.split(";"):
            if statement.strip():
                conn.execute(statement)


def test_service_role_appends_audit_but_cannot_rewrite_it(
    postgres_dsn: str, service_role: str
) -> None:
    owner = open_catalog(postgres_dsn, now_ms=T0)  # migrations run as the owner
    owner.append_audit(actor="os:owner", action="setup", target="t", reason="", now_ms=T0)
    owner.close()
    schema = schema_of(postgres_dsn)
    apply_grants(postgres_dsn, schema, service_role)

    service_dsn = postgres_dsn.replace("postgres@", f"{service_role}@", 1)
    service = open_catalog(service_dsn, now_ms=T0)  # opening (and the migration check) works
    try:
        service.append_audit(actor="os:svc", action="export", target="rec", reason="r", now_ms=T0)
        # A destruction scrubs personal data with the service role's grants alone.
        rid = service.upsert_recording(
            RecordingStart("s-1", Product.CONTACT_CENTER, "eng-1", T0), T0
        ).recording_id
        service.add_participants(rid, [ParticipantInfo("u-1", "Alice Example")])
        service.add_destruction_record(
            DestructionRecord(
                rid, DestructionMethod.OBJECT_DELETE, (), (), "manual:t", "no holds", "os:svc",
                T0 + 1, "gone",
            )
        )  # fmt: skip
        scrub = service.pii_scrub(rid)
        assert scrub is not None
        assert scrub.scrubbed["participants"] == 1
        assert service.verify_audit_chain().intact
    finally:
        service.close()
    with psycopg.connect(service_dsn, autocommit=True) as conn:
        for statement in (
            "UPDATE audit_log SET reason = 'x'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
            "ALTER TABLE audit_log DISABLE TRIGGER USER",
            "DROP TRIGGER audit_log_append_only ON audit_log",
            "DELETE FROM destruction_records",
            "DELETE FROM pii_scrubs",
            "UPDATE pii_scrubs SET actor = 'x'",
            "DELETE FROM legal_holds",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        count = conn.execute("SELECT count(*) FROM audit_log").fetchone()
        assert count == (3,)  # the setup, the export, the scrub
