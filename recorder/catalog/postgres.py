"""The fleet catalog: PostgreSQL through psycopg 3, synchronous, used from worker threads.

Rule: a transaction borrows one connection from a small pool for exactly its own duration, so
concurrent worker threads never share a connection, and no connection outlives a broken state
(a connection psycopg marks closed or broken is dropped, the next borrow opens a fresh one).
Isolation is READ COMMITTED: every operation that must be atomic across processes is one
conditional statement (see ``recorder.catalog._core``); migrations take a transaction-scoped
advisory lock so that two recorders starting together do not both create the schema.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Final

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from recorder.catalog._core import Row, SqlCatalog, Tx
from recorder.catalog.schema import Engine
from recorder.errors import CatalogError

#: Connections kept open per catalog; match the ``CapacityLimiter`` used in front of it.
DEFAULT_MAX_CONNECTIONS: Final = 4
DEFAULT_CONNECT_TIMEOUT_S: Final = 5
#: A statement that runs longer than this is a bug or a stuck lock, not work to wait for.
DEFAULT_STATEMENT_TIMEOUT_MS: Final = 15_000
#: How long a transaction waits for a free pooled connection.
POOL_WAIT_S: Final = 30.0


@functools.lru_cache(maxsize=256)
def _to_pyformat(sql: str) -> str:
    # The shared queries use ``?``; none of them contains a literal ``?`` or ``%``.
    return sql.replace("?", "%s")


#: Shown in ``pg_stat_activity`` unless the DSN names another, so DBAs can tell who is connected.
DEFAULT_APPLICATION_NAME: Final = "rtms-recorder"


def _conninfo(dsn: str, password: str | None) -> str:
    params = conninfo_to_dict(dsn)
    params.setdefault("application_name", DEFAULT_APPLICATION_NAME)
    if password is not None:
        params["password"] = password
    return make_conninfo("", **params)


class _PostgresTx:
    __slots__ = ("_conn",)

    def __init__(self, conn: psycopg.Connection[Row]) -> None:
        self._conn = conn

    def _run(self, sql: str, params: Sequence[object]) -> psycopg.Cursor[Row]:
        if params:
            return self._conn.execute(_to_pyformat(sql), params)
        # Without parameters psycopg sends the text untouched (DDL bodies contain ``%``).
        return self._conn.execute(sql)

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        return self._run(sql, params).rowcount

    def fetchone(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        return self._run(sql, params).fetchone()

    def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        return self._run(sql, params).fetchall()


class PostgresCatalog(SqlCatalog):
    """``Catalog`` on PostgreSQL. Thread-safe; at most ``max_connections`` transactions at once."""

    engine = Engine.POSTGRES
    # Holds the stream row for the rest of the transaction: a takeover's claim waits for the
    # fenced write to commit, so no write lands after a takeover under the old epoch.
    _fence_lock_sql = " FOR SHARE"
    _now_sql = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"

    def __init__(
        self,
        dsn: str,
        *,
        now_ms: int,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        connect_timeout_s: int = DEFAULT_CONNECT_TIMEOUT_S,
        statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
        password: str | None = None,
    ) -> None:
        """Connect and migrate.

        Args:
            dsn: a libpq connection string, URL (``postgresql://...``) or ``key=value`` form.
            password: kept out of the DSN so configuration files never hold it; when ``None``
                libpq's own sources apply (``PGPASSWORD``, ``~/.pgpass``). Never in errors.
        """
        if max_connections < 1:
            raise CatalogError(f"open: max_connections must be >= 1, got {max_connections}")
        try:
            self._conninfo = _conninfo(dsn, password)
        except psycopg.ProgrammingError as exc:
            raise CatalogError("open: not a valid PostgreSQL connection string") from exc
        self._connect_timeout_s = connect_timeout_s
        self._statement_timeout_ms = statement_timeout_ms
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self._idle: list[psycopg.Connection[Row]] = []
        self._idle_lock = threading.Lock()
        self._closed = False
        try:
            self.migrate(now_ms)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"<PostgresCatalog max_connections={self.max_connections}>"

    def close(self) -> None:
        with self._idle_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _connect(self, operation: str) -> psycopg.Connection[Row]:
        try:
            conn = psycopg.connect(
                self._conninfo, autocommit=True, connect_timeout=self._connect_timeout_s
            )
            conn.execute(
                "SELECT set_config('statement_timeout', %s, false)",
                (str(self._statement_timeout_ms),),
            )
        except psycopg.Error as exc:
            # libpq messages name host and port, never the password.
            raise CatalogError(f"{operation}: cannot connect to PostgreSQL: {exc}") from exc
        return conn

    @contextmanager
    def _borrow(self, operation: str) -> Iterator[psycopg.Connection[Row]]:
        if not self._slots.acquire(timeout=POOL_WAIT_S):
            raise CatalogError(f"{operation}: no catalog connection free after {POOL_WAIT_S} s")
        conn: psycopg.Connection[Row] | None = None
        try:
            with self._idle_lock:
                if self._closed:
                    raise CatalogError(f"{operation}: catalog is closed")
                if self._idle:
                    conn = self._idle.pop()
            if conn is None:
                conn = self._connect(operation)
            yield conn
        finally:
            if conn is not None:
                self._give_back(conn)
            self._slots.release()

    def _give_back(self, conn: psycopg.Connection[Row]) -> None:
        if conn.closed or conn.broken:
            conn.close()
            return
        with self._idle_lock:
            if not self._closed:
                self._idle.append(conn)
                return
        conn.close()

    @contextmanager
    def _transaction(self, operation: str, *, write: bool) -> Iterator[Tx]:
        with self._borrow(operation) as conn:
            try:
                with conn.transaction():
                    yield _PostgresTx(conn)
            except psycopg.Error as exc:
                raise CatalogError(f"{operation}: {exc}") from exc

    def _lock_audit_chain(self, tx: Tx) -> None:
        # Two appends must not both link to the same last event; the lock lasts until commit.
        tx.fetchone(
            "SELECT pg_advisory_xact_lock(hashtext(? || current_schema()))",
            ("rtms-recorder audit chain ",),
        )

    def _lock_for_migration(self, tx: Tx) -> None:
        # Keyed by schema: catalogs in different schemas of one database migrate independently.
        tx.fetchone(
            "SELECT pg_advisory_xact_lock(hashtext(? || current_schema()))",
            ("rtms-recorder catalog migrate ",),
        )
