"""Every catalog query, written once for both engines.

Rule: this package-private layer (``_core`` with ``_streams``, ``_evidence``, ``_officers``,
``_lifecycle``) holds all SQL that reads or writes catalog rows; the engine modules
(``sqlite.py``, ``postgres.py``) only open connections, run transactions and translate driver
errors. Queries use ``?`` placeholders and the portable subset both engines share
(``INSERT ... ON CONFLICT ... DO UPDATE ... WHERE``, ``RETURNING``, ``CASE``, ``COALESCE``), so the
two engines cannot drift apart in behaviour.

Each public method is one transaction. Atomicity of the lease and dedup operations rests on a
single conditional statement, which is correct on PostgreSQL under READ COMMITTED (the upsert
re-checks its ``WHERE`` against the latest committed row) and on SQLite because writers take the
database lock up front (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from recorder.catalog._completeness import CompletenessQueries
from recorder.catalog._evidence import EvidenceQueries, _upsert_recording
from recorder.catalog._keys import KeyQueries
from recorder.catalog._lifecycle import LifecycleQueries
from recorder.catalog._officers import OfficerQueries
from recorder.catalog._retention import RetentionQueries
from recorder.catalog._rows import Row as Row
from recorder.catalog._rows import Tx as Tx
from recorder.catalog._rtms_requests import RtmsRequestQueries
from recorder.catalog._scrub import ScrubQueries
from recorder.catalog._search import SearchQueries
from recorder.catalog._streams import StreamQueries
from recorder.catalog._textindex import TextIndexQueries
from recorder.catalog._verifications import VerificationQueries
from recorder.catalog._web import WebQueries
from recorder.catalog._workqueue import WorkQueueQueries
from recorder.catalog.base import LegalHoldRow, RecordingRow, RecordingStart
from recorder.catalog.schema import MIGRATIONS, SCHEMA_VERSION_DDL, Engine, Migration
from recorder.errors import CatalogError


class SqlCatalog(
    RtmsRequestQueries,
    StreamQueries,
    EvidenceQueries,
    ScrubQueries,
    RetentionQueries,
    OfficerQueries,
    SearchQueries,
    LifecycleQueries,
    KeyQueries,
    VerificationQueries,
    CompletenessQueries,
    WebQueries,
    WorkQueueQueries,
    TextIndexQueries,
    abc.ABC,
):
    """The ``Catalog`` implementation shared by both engines."""

    engine: Engine

    def _lock_for_migration(self, tx: Tx) -> None:
        """Serialise concurrent migrations across processes (engines override when needed).

        SQLite needs nothing more: ``BEGIN IMMEDIATE`` already excludes every other writer.
        """

    @abc.abstractmethod
    def close(self) -> None: ...

    # --- schema --------------------------------------------------------------------------

    def migrate(self, now_ms: int, migrations: Sequence[Migration] = MIGRATIONS) -> int:
        """Apply every migration newer than the database, all in one transaction.

        Either all pending migrations are applied or none is (both engines have transactional
        DDL). Returns the schema version afterwards. ``migrations`` is for tests of the
        mechanism; the recorder always uses ``schema.MIGRATIONS``.
        """
        latest = migrations[-1].version
        # An up-to-date catalog needs no DDL at all, so a role without CREATE (the PostgreSQL
        # service role of ops/postgres-grants.sql) can open it; migrations run as the owner.
        try:
            if self.schema_version() == latest:
                return latest
        except CatalogError:
            pass  # no schema_version table yet: create it below
        with self._transaction("migrate", write=True) as tx:
            self._lock_for_migration(tx)
            tx.execute(SCHEMA_VERSION_DDL)
            current = self._version(tx)
            if current > latest:
                raise CatalogError(
                    f"catalog schema is version {current}, newer than this recorder knows "
                    f"({latest}): upgrade the recorder before using this catalog"
                )
            for migration in migrations:
                if migration.version <= current:
                    continue
                for statement in migration.statements[self.engine]:
                    tx.execute(statement)
                tx.execute(
                    "INSERT INTO schema_version (version, description, applied_ms)"
                    " VALUES (?, ?, ?)",
                    (migration.version, migration.description, now_ms),
                )
            return max(current, latest)

    def schema_version(self) -> int:
        with self._transaction("schema_version", write=False) as tx:
            return self._version(tx)

    # --- the start of a recording ------------------------------------------------------------

    def start_recording(
        self, start: RecordingStart, now_ms: int
    ) -> tuple[RecordingRow, list[LegalHoldRow]]:
        """``upsert_recording`` and ``join_hold_rules`` in ONE transaction: what an engagement
        writes before it records. One commit (one fsync on SQLite, whose writers all queue on
        one lock) instead of two per start is what a 9 a.m. burst of starts waits on; and a
        recording never exists, even for a moment, without the holds its rules give it."""
        with self._transaction("start_recording", write=True) as tx:
            recording = _upsert_recording(tx, start, now_ms)
            return recording, self._join_hold_rules(tx, recording.recording_id, now_ms)

    @staticmethod
    def _version(tx: Tx) -> int:
        row = tx.fetchone("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        return 0 if row is None else int(row[0])
