"""Transcript postings in time order (migration 18), on SQLite and PostgreSQL: the walk over the
rarest word's postings finds exactly what a plain query over every recording finds, page after
page; a posting follows its recording's start when that moves; postings made before migration 18
get their start; and the engines walk ``transcript_tokens_by_time`` without sorting."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.catalog import SqlCatalog
from recorder.catalog._search import search_sql
from recorder.catalog.base import Product, RecordingStart, RecordingStatus, StreamEvent, StreamState
from recorder.catalog.schema import MIGRATIONS, SCHEMA_VERSION_DDL, Engine
from recorder.catalog.search import RecordingQuery
from recorder.crypto.blind_index import SearchKey
from tests.catalog.support import (
    T0,
    CatalogTarget,
    every_page,
    explain,
    fill_for_plans,
    reference_ids,
)

pytestmark = pytest.mark.timeout(120)
KEY = SearchKey(bytes(range(32)))
MINUTE = 60_000
#: Word i is in about 1 / (i + 1) of the recordings: common words next to rare ones.
WORDS = tuple(f"word{i}" for i in range(8))


def _start(catalog: SqlCatalog, n: int, started_ms: int) -> str:
    stream = f"stream-{n}"
    product = (Product.MEETING, Product.PHONE)[n % 2]
    catalog.upsert_stream(
        StreamEvent(
            stream, product, f"instance-{n}", StreamState.STARTED, started_ms, ("wss://a",)
        ),
        now_ms=started_ms,
    )
    start = RecordingStart(stream, product, f"instance-{n}", started_ms)
    return catalog.upsert_recording(start, now_ms=started_ms).recording_id


def _world(catalog: SqlCatalog, count: int, seed: int) -> None:
    """``count`` recordings, start times with ties, some unfinished, some whose start moves
    earlier after their words were indexed (a re-upserted recording)."""
    rng = random.Random(seed)
    for n in range(count):
        started = T0 + rng.randrange(40) * MINUTE  # 40 slots: many ties, broken by the id
        rid = _start(catalog, n, started)
        if n % 7:
            catalog.end_recording(
                rid,
                ended_ms=started + rng.randrange(1, 30) * MINUTE,
                reason="done",
                status=RecordingStatus.COMPLETE,
            )
        words = [w for i, w in enumerate(WORDS) if rng.random() < 1 / (i + 1)]
        if words:
            catalog.add_transcript_tokens(rid, KEY.key_id, KEY.query(" ".join(words)), started)
        if n % 5 == 0:
            _start(catalog, n, started - rng.randrange(1, 20) * MINUTE)


def _reference(target: CatalogTarget, query: RecordingQuery) -> list[str]:
    """Every recording holding every word and matching the time and product filters, newest
    first: the plainest query there is, no postings order, no stats, no probes to choose."""
    clauses: list[str] = []
    params: list[object] = []
    for mac in query.text_macs:
        clauses.append(
            "EXISTS (SELECT 1 FROM transcript_tokens t"
            " WHERE t.recording_id = r.recording_id AND t.token_mac = ?)"
        )
        params.append(mac)
    return reference_ids(target, query, clauses, params)


_queries = st.builds(
    lambda words, since, until, product, limit: RecordingQuery(
        text_macs=tuple(KEY.query(" ".join(words))),
        since_ms=None if since is None else T0 + since * MINUTE,
        until_ms=None if until is None else T0 + until * MINUTE,
        product=product,
        limit=limit,
    ),
    words=st.lists(st.sampled_from((*WORDS, "never-said")), min_size=1, max_size=3),
    since=st.none() | st.integers(-20, 70),
    until=st.none() | st.integers(-20, 50),
    product=st.none() | st.sampled_from((Product.MEETING, Product.PHONE)),
    limit=st.integers(1, 9),
)


def test_text_search_pages_through_exactly_what_a_plain_query_finds(
    target: CatalogTarget,
) -> None:
    catalog = target.open()
    try:
        _world(catalog, 90, seed=3)

        @settings(max_examples=60, deadline=None, database=None)
        @given(query=_queries)
        def check(query: RecordingQuery) -> None:
            assert every_page(catalog, query) == _reference(target, query)

        check()
    finally:
        catalog.close()


def test_a_posting_follows_its_recording_to_an_earlier_start(target: CatalogTarget) -> None:
    catalog = target.open()
    try:
        first = _start(catalog, 1, T0 + 10 * MINUTE)
        second = _start(catalog, 2, T0 + 20 * MINUTE)
        for rid in (first, second):
            catalog.add_transcript_tokens(rid, KEY.key_id, KEY.query("hello"), T0)
        query = RecordingQuery(text_macs=tuple(KEY.query("hello")))
        assert every_page(catalog, query) == [second, first]
        # The second recording's stream is upserted again with an earlier start.
        assert _start(catalog, 2, T0 + 5 * MINUTE) == second
        assert every_page(catalog, query) == [first, second]
        assert every_page(catalog, RecordingQuery(text_macs=query.text_macs, limit=1)) == [
            first,
            second,
        ]
        assert every_page(
            catalog, RecordingQuery(text_macs=query.text_macs, until_ms=T0 + 6 * MINUTE)
        ) == [second]
    finally:
        catalog.close()


@pytest.mark.postgres
def test_postings_indexed_while_their_start_moves_get_the_new_start(postgres_dsn: str) -> None:
    """A start moved earlier in a transaction still open when the recording's words are indexed:
    the indexing waits for it (PostgreSQL; SQLite writers take turns anyway), so no posting
    keeps the old start, which a two-word search, matching postings on it, would miss."""
    target = CatalogTarget("postgres", postgres_dsn)
    catalog = target.open()
    try:
        rid = _start(catalog, 1, T0 + 10 * MINUTE)
        catalog.add_transcript_tokens(rid, KEY.key_id, KEY.query("hello"), T0)
        with psycopg.connect(target.url) as mover, psycopg.connect(target.url) as watcher:
            watcher.autocommit = True
            mover.execute(
                "UPDATE recordings SET started_ms = %s WHERE recording_id = %s",
                (T0 + 5 * MINUTE, rid),
            )
            indexing = threading.Thread(
                target=catalog.add_transcript_tokens,
                args=(rid, KEY.key_id, KEY.query("world"), T0),
            )
            indexing.start()
            deadline = time.monotonic() + 30
            waiting = None  # until the indexing waits for the move (or, unlocked, is done)
            while indexing.is_alive() and waiting is None and time.monotonic() < deadline:
                waiting = watcher.execute(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE 'SELECT started_ms FROM recordings WHERE recording_id%%'"
                ).fetchone()
            mover.commit()
            indexing.join(timeout=30)
            assert not indexing.is_alive()
        with target.raw() as conn:
            starts = conn.execute(
                "SELECT DISTINCT started_ms FROM transcript_tokens WHERE recording_id = %s",
                (rid,),
            ).fetchall()
        assert [int(row[0]) for row in starts] == [T0 + 5 * MINUTE]
        both = RecordingQuery(text_macs=tuple(KEY.query("hello world")))
        assert every_page(catalog, both) == [rid]
    finally:
        catalog.close()


def _catalog_at_version(target: CatalogTarget, version: int) -> None:
    engine = Engine(target.engine)
    with target.raw() as conn:
        conn.execute(SCHEMA_VERSION_DDL)
        for migration in MIGRATIONS:
            if migration.version > version:
                break
            for statement in migration.statements[engine]:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, description, applied_ms)"
                f" VALUES ({migration.version}, 'test', {T0})"
            )


def _raw_insert(target: CatalogTarget, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
    if target.engine == "postgres":
        sql = sql.replace("?", "%s")
    with target.raw() as conn:
        for row in rows:
            conn.execute(sql, row)


def test_migration_18_gives_postings_made_before_it_their_recordings_start(
    target: CatalogTarget,
) -> None:
    _catalog_at_version(target, 16)
    starts = {f"rec-{n}": T0 + n * MINUTE for n in range(3)}
    _raw_insert(
        target,
        "INSERT INTO streams (rtms_stream_id, first_seen_ms) VALUES (?, ?)",
        [(f"st-{rid}", T0) for rid in starts],
    )
    _raw_insert(
        target,
        "INSERT INTO recordings (recording_id, rtms_stream_id, product, instance_id,"
        " started_ms, status, created_ms) VALUES (?, ?, 'meeting', ?, ?, 'complete', ?)",
        [(rid, f"st-{rid}", f"in-{rid}", started, T0) for rid, started in starts.items()],
    )
    mac = KEY.mac("hello")
    _raw_insert(
        target,
        "INSERT INTO transcript_tokens (token_mac, recording_id) VALUES (?, ?)",
        [(mac, rid) for rid in starts],
    )
    _raw_insert(
        target,
        "INSERT INTO transcript_token_stats (token_mac, recordings) VALUES (?, ?)",
        [(mac, 3), ("", 3)],
    )
    catalog = target.open()  # migrates 16 -> latest
    try:
        with target.raw() as conn:
            rows = conn.execute("SELECT recording_id, started_ms FROM transcript_tokens").fetchall()
        assert {str(rid): int(started) for rid, started in rows} == starts
        assert every_page(catalog, RecordingQuery(text_macs=(mac,), limit=2)) == [
            "rec-2",
            "rec-1",
            "rec-0",
        ]
    finally:
        catalog.close()


def test_migration_20_puts_postings_back_on_their_recordings_start(
    target: CatalogTarget,
) -> None:
    """A posting left on an old start (the indexing race fixed by reading the start FOR SHARE)
    would hide its recording from PostgreSQL's multi-word probe; migration 20 repairs it there.
    SQLite never had the race and its probe does not read the start: the search finds the
    recording either way."""
    _catalog_at_version(target, 19)
    started, stale = T0 + 5 * MINUTE, T0 + 9 * MINUTE
    _raw_insert(
        target,
        "INSERT INTO streams (rtms_stream_id, first_seen_ms) VALUES (?, ?)",
        [("st-moved", T0)],
    )
    _raw_insert(
        target,
        "INSERT INTO recordings (recording_id, rtms_stream_id, product, instance_id,"
        " started_ms, status, created_ms) VALUES (?, ?, 'meeting', ?, ?, 'complete', ?)",
        [("rec-moved", "st-moved", "in-moved", started, T0)],
    )
    macs = KEY.query("hello world")
    _raw_insert(
        target,
        "INSERT INTO transcript_tokens (token_mac, recording_id, started_ms) VALUES (?, ?, ?)",
        [(mac, "rec-moved", stale) for mac in macs],
    )
    _raw_insert(
        target,
        "INSERT INTO transcript_token_stats (token_mac, recordings) VALUES (?, ?)",
        [*((mac, 1) for mac in macs), ("", 1)],
    )
    catalog = target.open()  # migrates 19 -> latest
    try:
        with target.raw() as conn:
            rows = conn.execute("SELECT DISTINCT started_ms FROM transcript_tokens").fetchall()
        expected = stale if target.engine == "sqlite" else started
        assert [int(row[0]) for row in rows] == [expected]
        assert every_page(catalog, RecordingQuery(text_macs=tuple(macs))) == ["rec-moved"]
    finally:
        catalog.close()


def test_a_text_search_walks_the_postings_in_time_order_without_sorting(
    target: CatalogTarget,
) -> None:
    """The plan the engine picks once it knows the tables' sizes (autovacuum's statistics on
    PostgreSQL, ``ANALYZE`` here): a backward walk of ``transcript_tokens_by_time`` that stops
    at the page, no sort of the word's recordings."""
    fill_for_plans(target, 20_000)
    for words, month in ((("b", "a"), False), (("c",), False), (("b",), True)):
        query = RecordingQuery(
            text_macs=words,
            since_ms=5_000_000 if month else None,
            until_ms=8_000_000 if month else None,
        )
        plan = explain(target, *search_sql(query, Engine(target.engine)))
        assert "transcript_tokens_by_time" in plan, plan
        if target.engine == "sqlite":
            assert "TEMP B-TREE" not in plan, plan
        else:
            assert "Scan Backward using transcript_tokens_by_time" in plan, plan
            assert "Sort" not in plan, plan
        if len(words) > 1:
            # The other word's probe reads no table row; on PostgreSQL it names the whole
            # walked key, so successive probes land side by side on the walked index (not on a
            # page each, as on the recording's).
            if target.engine == "sqlite":
                probe = "SEARCH t USING COVERING INDEX"
            else:
                probe = "Index Only Scan using transcript_tokens_by_time on transcript_tokens t "
            assert probe in plan, plan
