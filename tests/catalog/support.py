"""Helpers shared by the catalog tests (kept out of conftest.py so tests can import them)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg

from recorder.catalog import SqlCatalog, open_catalog
from recorder.catalog.search import RecordingQuery

#: A fixed "now" for tests: 2026-01-01T00:00:00Z in Unix ms.
T0 = 1_767_225_600_000


@dataclass(frozen=True)
class CatalogTarget:
    engine: str
    url: str
    sqlite_path: Path | None = None

    def open(self, now_ms: int = T0) -> SqlCatalog:
        """Another independent catalog (its own connection or pool) on the same database."""
        return open_catalog(self.url, now_ms=now_ms)

    @contextmanager
    def raw(self) -> Iterator[Any]:
        """A plain driver connection in autocommit mode, to poke the database behind our back."""
        if self.sqlite_path is not None:
            conn = sqlite3.connect(self.sqlite_path, isolation_level=None)
            try:
                yield conn
            finally:
                conn.close()
        else:
            with psycopg.connect(self.url, autocommit=True) as pg:
                yield pg

    @property
    def driver_error(self) -> type[Exception]:
        return sqlite3.Error if self.sqlite_path is not None else psycopg.Error


def fill_for_plans(target: CatalogTarget, count: int) -> None:
    """A migrated catalog with ``count`` recordings of one participant each and transcript
    words 'a' (every recording), 'b' (one in 10) and 'c' (one in 1000), inserted in bulk, then
    ``ANALYZE``: the statistics autovacuum keeps on PostgreSQL, so a plan check sees the plan
    a grown catalog gets (on four rows PostgreSQL rightly scans whole tables)."""
    target.open().close()
    with target.raw() as conn:
        series = (
            "WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n < ?)"
            if target.engine == "sqlite"
            else "WITH s(n) AS (SELECT generate_series(0, %s))"
        )
        for sql in (
            "INSERT INTO streams (rtms_stream_id, first_seen_ms) SELECT 'st-' || n, 0 FROM s",
            "INSERT INTO recordings (recording_id, rtms_stream_id, product, instance_id,"
            " started_ms, ended_ms, status, created_ms)"
            " SELECT 'rec-' || n, 'st-' || n, 'meeting', 'in-' || n, n * 1000, n * 1000 + 500,"
            " 'complete', 0 FROM s",
            "INSERT INTO participants (recording_id, user_id, user_name, first_seen_ms)"
            " SELECT 'rec-' || n, 'u-' || n, 'Person ' || n, 0 FROM s",
            "INSERT INTO transcript_tokens (token_mac, recording_id, started_ms)"
            " SELECT 'a', 'rec-' || n, n * 1000 FROM s",
            "INSERT INTO transcript_tokens (token_mac, recording_id, started_ms)"
            " SELECT 'b', 'rec-' || n, n * 1000 FROM s WHERE n % 10 = 0",
            "INSERT INTO transcript_tokens (token_mac, recording_id, started_ms)"
            " SELECT 'c', 'rec-' || n, n * 1000 FROM s WHERE n % 1000 = 0",
        ):
            if target.engine == "postgres":
                sql = sql.replace("%", "%%")
            conn.execute(f"{series} {sql}", (count - 1,))
        conn.execute("ANALYZE")


def explain(target: CatalogTarget, sql: str, params: Sequence[object]) -> str:
    """The engine's plan for ``sql`` (``?`` placeholders) as text."""
    with target.raw() as conn:
        if target.engine == "sqlite":
            rows = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
            return "\n".join(str(row[-1]) for row in rows)
        rows = conn.execute("EXPLAIN " + sql.replace("?", "%s"), params).fetchall()
        return "\n".join(str(row[0]) for row in rows)


def reference_ids(
    target: CatalogTarget,
    query: RecordingQuery,
    clauses: Sequence[str],
    params: Sequence[object],
) -> list[str]:
    """The plainest search there is, as the oracle for the catalog's own: ``clauses`` (the
    caller's filters) and ``query``'s time and product filters over every recording, newest
    first, no index to choose, no walk to merge."""
    where = list(clauses)
    args = list(params)
    if query.since_ms is not None:
        where.append("(r.ended_ms IS NULL OR r.ended_ms >= ?)")
        args.append(query.since_ms)
    if query.until_ms is not None:
        where.append("r.started_ms < ?")
        args.append(query.until_ms)
    if query.product is not None:
        where.append("r.product = ?")
        args.append(query.product.value)
    sql = (
        "SELECT r.recording_id FROM recordings r WHERE "
        + (" AND ".join(where) or "1 = 1")
        + " ORDER BY r.started_ms DESC, r.recording_id DESC"
    )
    if target.engine == "postgres":
        sql = sql.replace("?", "%s")
    with target.raw() as conn:
        return [str(row[0]) for row in conn.execute(sql, args).fetchall()]


def every_page(catalog: SqlCatalog, query: RecordingQuery) -> list[str]:
    """Every recording ``query`` finds, page after page through its cursor."""
    seen: list[str] = []
    cursor = None
    for _ in range(200):
        page = catalog.search_recordings(replace(query, after=cursor))
        seen += [hit.recording.recording_id for hit in page.hits]
        cursor = page.next_cursor
        if cursor is None:
            return seen
    raise AssertionError("paging did not end")
