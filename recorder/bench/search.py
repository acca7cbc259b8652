"""Search latency over a large generated catalog: ``recorder bench search [--recordings N]``.

Generates N recordings (default 1,000,000) with two participants each, Contact Center queues
and agents on a third of them, gaps on one in twenty, a few hundred legal holds, spread over two
years, and a transcript blind index of six words per recording (two of 50 common words, Zipf
distributed, and four of a 200,000-word tail: a sparse index next to real calls' hundreds of
words, but the same two plans: a rare word drives, common words are probed); writes them
straight into a migrated catalog (SQLite file, and a fresh PostgreSQL schema
when ``--postgres DSN`` is reachable, dropped afterwards); then runs the officer's queries through
``search_recordings`` (the same code ``recorder search`` uses), each many times with varied
values, and prints p50 / p99 per query and over all of them.
"""

from __future__ import annotations

import argparse
import io
import random
import secrets
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final

from recorder.catalog import SqlCatalog, open_catalog
from recorder.catalog.base import Product, RecordingStatus
from recorder.catalog.search import RecordingQuery
from recorder.crypto.blind_index import SearchKey

T0: Final = 1_735_689_600_000  # 2025-01-01T00:00:00Z
SPAN_MS: Final = 2 * 365 * 86_400_000
DAY_MS: Final = 86_400_000
PRODUCTS: Final = (Product.MEETING, Product.CONTACT_CENTER, Product.PHONE, Product.WEBINAR)
CAUSES: Final = ("media_interrupted", "packets_lost", "reconnect", "late_packets")
DEFAULT_POSTGRES: Final = "postgresql://postgres@127.0.0.1:5432/test"

Row = tuple[object, ...]


#: The blind index's generated words: a few common ones (most recordings hold some), a long tail.
COMMON_WORDS: Final = 50
RARE_WORDS: Final = 200_000
WORDS_PER_RECORDING: Final = (2, 4)  # common, rare
BENCH_KEY: Final = SearchKey(bytes(range(32)))


def word(rank: int) -> str:
    return f"w{rank}"


def _zipf(rng: random.Random, size: int) -> int:
    """A rank in 0..size-1, rank r about 1/(r+1) as likely as rank 0."""
    return min(size - 1, int(size ** rng.random()) - 1)


def _word_macs() -> tuple[list[str], list[str]]:
    common = [BENCH_KEY.mac(word(i)) for i in range(COMMON_WORDS)]
    rare = [BENCH_KEY.mac(word(COMMON_WORDS + i)) for i in range(RARE_WORDS)]
    return common, rare


def _recordings(
    count: int, seed: int
) -> Iterator[tuple[Row, Row, list[Row], Row | None, list[Row]]]:
    rng = random.Random(seed)  # noqa: S311 (generated test data, not secrets)
    common, rare = _word_macs()
    for n in range(count):
        started = T0 + rng.randrange(SPAN_MS)
        ended = started + rng.randrange(30_000, 3 * 3_600_000)
        product = PRODUCTS[n % len(PRODUCTS)]
        rid = f"{n:012x}{secrets.token_hex(4)}"
        stream = f"st-{n}"
        instance = f"in-{n}"
        status = (RecordingStatus.INCOMPLETE if n % 50 == 0 else RecordingStatus.COMPLETE).value
        cc = product in (Product.CONTACT_CENTER, Product.PHONE)
        queue = f"Queue {n % 200}" if cc else None
        agent = f"Agent {n % 5000}" if cc else None
        stream_row: Row = (stream, product.value, instance, "stopped", "[]", started, started)
        recording: Row = (
            rid,
            stream,
            product.value,
            instance,
            f"op-{n % 1000}",
            f"acct-{n % 50}",
            str(80_000_000 + n),
            f"q-{n % 200}" if cc else None,
            queue,
            f"ag-{n % 5000}" if cc else None,
            agent,
            started,
            ended,
            "done",
            status,
            started,
        )
        people: list[Row] = [
            (rid, f"u-{n % 20_000}", f"Person {n % 20_000}", "callee" if cc else None, started),
            (rid, f"c-{n % 300_000}", f"Client {n % 300_000}", "caller" if cc else None, started),
        ]
        gap: Row | None = None
        if n % 20 == 0:
            gap = (
                rid,
                "mixed",
                started + 1000,
                started + 3000,
                CAUSES[(n // 20) % len(CAUSES)],
                "",
            )
        macs = {common[_zipf(rng, COMMON_WORDS)] for _ in range(WORDS_PER_RECORDING[0])}
        macs |= {rare[rng.randrange(RARE_WORDS)] for _ in range(WORDS_PER_RECORDING[1])}
        tokens: list[Row] = [(mac, rid, started) for mac in sorted(macs)]
        yield stream_row, recording, people, gap, tokens


_INSERTS: Final = {
    "streams": "INSERT INTO streams (rtms_stream_id, product, instance_id, state, server_urls,"
    " first_seen_ms, last_event_ts_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
    "recordings": "INSERT INTO recordings (recording_id, rtms_stream_id, product, instance_id,"
    " operator_id, account_id, meeting_number, cc_queue_id, cc_queue_name, cc_agent_id,"
    " cc_agent_name, started_ms, ended_ms, end_reason, status, created_ms)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "participants": "INSERT INTO participants (recording_id, user_id, user_name, role,"
    " first_seen_ms) VALUES (?, ?, ?, ?, ?)",
    "gaps": "INSERT INTO gaps (recording_id, track, start_ms, end_ms, cause, detail)"
    " VALUES (?, ?, ?, ?, ?, ?)",
    "transcript_tokens": "INSERT INTO transcript_tokens (token_mac, recording_id, started_ms)"
    " VALUES (?, ?, ?)",
}
_BATCH: Final = 20_000


def _batches(count: int, seed: int) -> Iterator[dict[str, list[Row]]]:
    batch: dict[str, list[Row]] = {name: [] for name in _INSERTS}
    for stream, recording, people, gap, tokens in _recordings(count, seed):
        batch["transcript_tokens"].extend(tokens)
        batch["streams"].append(stream)
        batch["recordings"].append(recording)
        batch["participants"].extend(people)
        if gap is not None:
            batch["gaps"].append(gap)
        if len(batch["recordings"]) >= _BATCH:
            yield batch
            batch = {name: [] for name in _INSERTS}
    if batch["recordings"]:
        yield batch


def _holds(count: int) -> list[Row]:
    return [
        (f"M-{i}", "instance", f"in-{i * (count // 300 or 1)}", "legal", "matter", T0, None)
        for i in range(300)
    ]


#: What ``add_transcript_tokens`` keeps up to date as it goes, made in one step after the fill.
_TOKEN_STATS: Final = (
    "INSERT INTO transcript_token_stats (token_mac, recordings)"
    " SELECT token_mac, COUNT(*) FROM transcript_tokens GROUP BY token_mac",
    "INSERT INTO transcript_token_stats (token_mac, recordings)"
    " SELECT '', COUNT(DISTINCT recording_id) FROM transcript_tokens",
)

_HOLD_INSERT: Final = (
    "INSERT INTO legal_holds (matter, scope, scope_value, placed_by, reason, placed_ms,"
    " released_ms) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def fill_sqlite(path: Path, count: int, seed: int) -> None:
    open_catalog(f"sqlite:///{path}", now_ms=T0).close()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN")
        for batch in _batches(count, seed):
            for name, sql in _INSERTS.items():
                conn.executemany(sql, batch[name])
        conn.executemany(_HOLD_INSERT, _holds(count))
        for sql in _TOKEN_STATS:
            conn.execute(sql)
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
    finally:
        conn.close()


def fill_postgres(dsn: str, count: int, seed: int) -> None:
    import psycopg

    open_catalog(dsn, now_ms=T0).close()
    columns = {name: sql.split("(", 1)[1].split(")", 1)[0] for name, sql in _INSERTS.items()}
    with psycopg.connect(dsn) as conn:
        for batch in _batches(count, seed):
            with conn.cursor() as cur:
                for name in _INSERTS:
                    with cur.copy(f"COPY {name} ({columns[name]}) FROM STDIN") as copy:
                        for row in batch[name]:
                            copy.write_row(row)
        with conn.cursor() as cur:
            cur.executemany(_HOLD_INSERT.replace("?", "%s"), _holds(count))
            for sql in _TOKEN_STATS:
                cur.execute(sql)
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        # The steady state autovacuum keeps: statistics, and the visibility map that lets
        # index-only scans skip the table.
        conn.execute("VACUUM ANALYZE")


def queries(count: int, rng: random.Random) -> dict[str, Callable[[], RecordingQuery]]:
    def month() -> tuple[int, int]:
        start = T0 + rng.randrange(SPAN_MS - 31 * DAY_MS)
        return start, start + 31 * DAY_MS

    def rare_word() -> str:
        return word(COMMON_WORDS + rng.randrange(RARE_WORDS))

    def text(*words: str, since_until: tuple[int, int] | None = None) -> RecordingQuery:
        since, until = since_until or (None, None)
        return RecordingQuery(
            text_macs=tuple(BENCH_KEY.query(" ".join(words))), since_ms=since, until_ms=until
        )

    def trader_in_month() -> RecordingQuery:
        since, until = month()
        return RecordingQuery(agent=f"Agent {rng.randrange(5000)}", since_ms=since, until_ms=until)

    return {
        "newest page": lambda: RecordingQuery(),
        "one month": lambda: RecordingQuery(since_ms=(m := month())[0], until_ms=m[1]),
        "product + month": lambda: RecordingQuery(
            product=Product.PHONE, since_ms=(m := month())[0], until_ms=m[1]
        ),
        "any id (instance)": lambda: RecordingQuery(any_id=f"in-{rng.randrange(count)}"),
        "any id (meeting number)": lambda: RecordingQuery(
            any_id=str(80_000_000 + rng.randrange(count))
        ),
        "participant name": lambda: RecordingQuery(participant=f"client {rng.randrange(300_000)}"),
        "agent + month": trader_in_month,
        # Callers exist on calls only (products 1 and 2 of every 4).
        "caller": lambda: RecordingQuery(
            caller=f"Client {(4 * rng.randrange(count // 4) + 1) % 300_000}"
        ),
        "queue": lambda: RecordingQuery(queue=f"queue {rng.randrange(200)}"),
        "gap cause": lambda: RecordingQuery(gap_cause=CAUSES[rng.randrange(len(CAUSES))]),
        "has gaps + month": lambda: RecordingQuery(
            has_gaps=True, since_ms=(m := month())[0], until_ms=m[1]
        ),
        "incomplete": lambda: RecordingQuery(statuses=(RecordingStatus.INCOMPLETE,)),
        "under hold": lambda: RecordingQuery(on_hold=True),
        # The blind index: words as MACs (``recorder search --text``).
        "text: rare word": lambda: text(rare_word()),
        "text: common word": lambda: text(word(_zipf(rng, COMMON_WORDS))),
        "text: common + rare": lambda: text(word(_zipf(rng, COMMON_WORDS)), rare_word()),
        "text: two common": lambda: text(word(rng.randrange(10)), word(10 + rng.randrange(40))),
        "text + month": lambda: text(word(_zipf(rng, COMMON_WORDS)), since_until=month()),
    }


def measure(catalog: SqlCatalog, count: int, rounds: int) -> dict[str, list[float]]:
    rng = random.Random(7)  # noqa: S311 (generated test data, not secrets)
    made = queries(count, rng)
    timings: dict[str, list[float]] = {name: [] for name in made}
    for name, make in made.items():
        catalog.search_recordings(make())  # warm the cache once per query shape
        for _ in range(rounds):
            query = make()
            start = time.perf_counter()
            page = catalog.search_recordings(query)
            timings[name].append((time.perf_counter() - start) * 1000)
            if name == "newest page" and page.next_cursor:
                start = time.perf_counter()
                catalog.search_recordings(RecordingQuery(after=page.next_cursor))
                timings.setdefault("next page", []).append((time.perf_counter() - start) * 1000)
    return timings


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(engine: str, timings: dict[str, list[float]]) -> None:
    out = io.StringIO()
    everything = [t for values in timings.values() for t in values]
    print(f"{engine}: {len(everything)} searches", file=out)
    for name, values in timings.items():
        print(
            f"  {name:<24} p50 {_pct(values, 0.5):7.2f} ms   p99 {_pct(values, 0.99):7.2f} ms",
            file=out,
        )
    print(
        f"  {'ALL':<24} p50 {_pct(everything, 0.5):7.2f} ms   p99 {_pct(everything, 0.99):7.2f} ms"
        f"   (target p99 < 100 ms; mean {statistics.fmean(everything):.2f} ms)",
        file=out,
    )
    print(out.getvalue(), end="")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=50, help="runs of each query shape")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="DSN; 'none' to skip")
    parser.add_argument("--dir", type=Path, default=None, help="where the SQLite file goes")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rtms-bench-search-", dir=args.dir) as tmp:
        path = Path(tmp) / "catalog.sqlite3"
        started = time.perf_counter()
        fill_sqlite(path, args.recordings, seed=1)
        elapsed = time.perf_counter() - started
        print(f"SQLite: generated {args.recordings} recordings in {elapsed:.0f} s")
        catalog = open_catalog(f"sqlite:///{path}", now_ms=T0)
        try:
            report("SQLite", measure(catalog, args.recordings, args.rounds))
        finally:
            catalog.close()
    if args.postgres != "none":
        _postgres(args.postgres, args.recordings, args.rounds)
    return 0


def _postgres(server: str, count: int, rounds: int) -> None:
    import psycopg

    schema = f"bench_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(server, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.Error as exc:
        print(f"PostgreSQL: not measured ({server} not reachable: {exc})")
        return
    dsn = f"{server}?options=-csearch_path%3D{schema}"
    try:
        started = time.perf_counter()
        fill_postgres(dsn, count, seed=1)
        print(f"PostgreSQL: generated {count} recordings in {time.perf_counter() - started:.0f} s")
        catalog = open_catalog(dsn, now_ms=T0)
        try:
            report("PostgreSQL", measure(catalog, count, rounds))
        finally:
            catalog.close()
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    raise SystemExit(main())
