"""The embedded catalog: one SQLite file, one connection, one transaction at a time.

Rule: every statement runs inside ``_transaction``, which holds the connection lock, opens the
transaction itself (the driver's implicit transactions are off), and turns ``sqlite3.Error`` into
``CatalogError`` naming the operation. Writers use ``BEGIN IMMEDIATE`` so that two processes (or
two connections) on the same file serialise at the start of a write instead of failing midway
with "database is locked"; readers use a deferred ``BEGIN`` and, thanks to WAL, never block them.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from recorder.catalog._core import Row, SqlCatalog, Tx
from recorder.catalog.schema import Engine
from recorder.errors import CatalogError

logger: Final = logging.getLogger(__name__)

#: How long a writer waits for another connection's write lock before giving up.
DEFAULT_BUSY_TIMEOUT_MS: Final = 10_000
#: Pause between attempts to switch a fresh file to WAL while another connection holds it.
WAL_SWITCH_RETRY_S: Final = 0.01


class _SqliteTx:
    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    def fetchone(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        cursor = self._conn.execute(sql, params)
        row: Row | None = cursor.fetchone()
        # Drain so that an INSERT ... RETURNING has finished before the next statement.
        cursor.fetchall()
        return row

    def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        rows: list[Row] = self._conn.execute(sql, params).fetchall()
        return rows


def _enable_wal(conn: sqlite3.Connection, path: Path, busy_timeout_ms: int) -> None:
    """Switch the file to WAL, waiting out another connection doing the same.

    Changing the journal mode needs an exclusive lock and SQLite reports "database is locked"
    at once instead of calling the busy handler, so two recorders opening a fresh catalog
    together would otherwise fail; retry until the busy timeout instead.
    """
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(WAL_SWITCH_RETRY_S)
            continue
        if str(mode).lower() != "wal":
            raise CatalogError(f"open: {path} refused WAL mode (got {mode})")
        return


class SqliteCatalog(SqlCatalog):
    """``Catalog`` on a single SQLite file (WAL, foreign keys on, synchronous FULL)."""

    engine = Engine.SQLITE

    def __init__(
        self, path: Path | str, *, now_ms: int, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS
    ) -> None:
        """Open (creating if needed, mode 0600) and migrate the catalog at ``path``."""
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # The catalog names participants: create it private before SQLite opens it (the
            # -wal and -shm files inherit the database file's permissions).
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as exc:
            raise CatalogError(f"open: cannot create catalog file {self.path}: {exc}") from exc
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise CatalogError(f"open: cannot open catalog {self.path}: {exc}") from exc
        self._conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            _enable_wal(conn, self.path, busy_timeout_ms)
            conn.execute("PRAGMA foreign_keys = ON")
            # Deleted and overwritten rows are zeroed on disk, not left in free space: a
            # destroyed recording's scrubbed names must not be recoverable from the file.
            conn.execute("PRAGMA secure_delete = ON")
            # Evidence metadata must survive a power cut as well as a crash.
            conn.execute("PRAGMA synchronous = FULL")
            self.migrate(now_ms)
        except sqlite3.Error as exc:
            conn.close()
            raise CatalogError(f"open: cannot configure catalog {self.path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise

    def __repr__(self) -> str:
        return f"<SqliteCatalog {str(self.path)!r}>"

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _transaction(self, operation: str, *, write: bool) -> Iterator[Tx]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as exc:
                raise CatalogError(f"{operation}: cannot begin a transaction: {exc}") from exc
            try:
                yield _SqliteTx(self._conn)
            except sqlite3.Error as exc:
                self._rollback(operation)
                raise CatalogError(f"{operation}: {exc}") from exc
            except BaseException:
                self._rollback(operation)
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(operation)
                raise CatalogError(f"{operation}: commit failed: {exc}") from exc

    def _rollback(self, operation: str) -> None:
        if not self._conn.in_transaction:
            return
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            # The original error is what the caller needs; a failed rollback leaves SQLite to
            # roll back when the connection closes.
            logger.warning("catalog rollback failed operation=%s", operation, exc_info=True)
