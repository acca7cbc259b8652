"""Search latency over a large generated catalog: ``recorder bench search [--recordings N]``.

Generates N recordings (default 1,000,000) with two participants each, Contact Center queues
and agents on a third of them, gaps on one in twenty, a few hundred legal holds, spread over two
years, and a transcript blind index of six words per recording (two of 50 common words, Zipf
distributed, and four of a 200,000-word tail: a sparse index next to real calls' hundreds of
words, but the same plan: the rarest word's postings are walked newest first, the others are
probed); writes them straight into a migrated catalog (SQLite file, and a fresh PostgreSQL
schema when ``--postgres DSN`` is reachable, dropped afterwards unless ``--keep``, which keeps
both and reuses them next time, migrated forward by ``open_catalog`` as a customer's would be;
the PostgreSQL catalog is then ``VACUUM (ANALYZE)``d, as autovacuum would, and says so); then
runs the officer's queries through ``search_recordings`` (the same code ``recorder search``
uses), each many times with varied values, and prints wall-clock and CPU p50 / p99 per query
and over all of them, with the load average while it measured.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import secrets
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final

from recorder.catalog import SqlCatalog, open_catalog
from recorder.catalog.base import Product, RecordingStatus
from recorder.catalog.schema import Engine
from recorder.catalog.search import RecordingQuery, SearchPage
from recorder.crypto.blind_index import SearchKey

T0: Final = 1_735_689_600_000  # 2025-01-01T00:00:00Z
SPAN_MS: Final = 2 * 365 * 86_400_000
DAY_MS: Final = 86_400_000
PRODUCTS: Final = (Product.MEETING, Product.CONTACT_CENTER, Product.PHONE, Product.WEBINAR)
CAUSES: Final = ("media_interrupted", "packets_lost", "reconnect", "late_packets")
DEFAULT_POSTGRES: Final = "postgresql://postgres@127.0.0.1:5432/test"
#: Where ``--keep`` keeps the generated catalogs; the g-number changes when the generator does.
KEPT_SQLITE: Final = "search-{count}-g2.sqlite3"
KEPT_SCHEMA: Final = "bench_search_{count}_g2"

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
        try:
            # No foreign-key checks while filling (the rows are consistent by construction):
            # in one long transaction PostgreSQL keeps the check's plan made for an empty
            # table, a scan of every recording per row, and a million took hours.
            conn.execute("SET session_replication_role = replica")
        except psycopg.errors.InsufficientPrivilege:
            conn.rollback()  # not a superuser: fill with the checks, slowly
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


def vacuum_postgres(dsn: str) -> float:
    """``VACUUM (ANALYZE)`` of the catalog's tables (its schema's, not the whole database's):
    the steady state a server's autovacuum keeps, statistics and the visibility map that lets
    index-only scans skip the tables. Returns the seconds it took."""
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema()"
            " ORDER BY tablename"
        ).fetchall()
        conn.execute("VACUUM (ANALYZE) " + ", ".join(str(row[0]) for row in tables))
    return time.perf_counter() - started


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


#: CPU nanoseconds spent on searches so far: this thread's, plus the PostgreSQL backend's.
CpuClock = Callable[[], int]


def _backend_cpu(catalog: SqlCatalog) -> CpuClock | None:
    """This thread's CPU plus the catalog's one PostgreSQL backend's (``/proc/PID/schedstat``,
    nanoseconds on a CPU, not waiting for one): other work on a shared machine moves it far
    less than wall clock. ``None`` when the server is not a local process this host can see."""
    with catalog._transaction("bench", write=False) as tx:
        row = tx.fetchone("SELECT pg_backend_pid()")
    if row is None:
        return None
    proc = Path(f"/proc/{int(str(row[0]))}")
    try:
        if not (proc / "cmdline").read_bytes().startswith(b"postgres"):
            return None
        stat = proc / "schedstat"
        stat.read_text()
    except OSError:
        return None
    return lambda: time.thread_time_ns() + int(stat.read_text().split()[0])


#: Per query shape: (wall ms, CPU ms or None) per search.
Timings = dict[str, list[tuple[float, float | None]]]


def measure(
    catalog: SqlCatalog, count: int, rounds: int, cpu: CpuClock | None = time.thread_time_ns
) -> Timings:
    rng = random.Random(7)  # noqa: S311 (generated test data, not secrets)
    made = queries(count, rng)
    timings: Timings = {name: [] for name in made}

    def timed(name: str, query: RecordingQuery) -> SearchPage:
        cpu_start = cpu() if cpu else 0
        start = time.perf_counter()
        page = catalog.search_recordings(query)
        wall = (time.perf_counter() - start) * 1000
        used = (cpu() - cpu_start) / 1e6 if cpu else None
        timings.setdefault(name, []).append((wall, used))
        return page

    for name, make in made.items():
        catalog.search_recordings(make())  # warm the cache once per query shape
        for _ in range(rounds):
            page = timed(name, make())
            if name == "newest page" and page.next_cursor:
                timed("next page", RecordingQuery(after=page.next_cursor))
    return timings


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _line(name: str, samples: Sequence[tuple[float, float | None]]) -> str:
    wall = [w for w, _ in samples]
    line = f"  {name:<24} wall p50 {_pct(wall, 0.5):7.2f} p99 {_pct(wall, 0.99):7.2f} ms"
    cpu = [c for _, c in samples if c is not None]
    if cpu:
        line += f"   CPU p50 {_pct(cpu, 0.5):7.2f} p99 {_pct(cpu, 0.99):7.2f} ms"
    return line


def report(engine: str, timings: Timings) -> None:
    out = io.StringIO()
    everything = [t for values in timings.values() for t in values]
    print(f"{engine}: {len(everything)} searches", file=out)
    for name, values in timings.items():
        print(_line(name, values), file=out)
    print(
        _line("ALL", everything) + "   (target p99 < 100 ms; CPU: this process"
        " + the PostgreSQL backend; other load moves it far less than wall clock)",
        file=out,
    )
    print(out.getvalue(), end="")


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min) {five:.1f} (5 min), {os.cpu_count()} CPUs"


def _measured(engine: str, url: str, count: int, rounds: int) -> None:
    # One connection, so the CPU clock follows the one backend every search runs on.
    catalog = open_catalog(url, now_ms=T0, max_connections=1)  # migrates a kept catalog
    try:
        cpu = _backend_cpu(catalog) if catalog.engine is Engine.POSTGRES else time.thread_time_ns
        before = _load()
        timings = measure(catalog, count, rounds, cpu)
        print(f"{engine}: measured at {before}; after: {_load()}")
        report(engine, timings)
    finally:
        catalog.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=50, help="runs of each query shape")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="DSN; 'none' to skip")
    parser.add_argument("--dir", type=Path, default=None, help="where the SQLite file goes")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the generated catalogs (SQLite file in --dir, PostgreSQL schema "
        f"{KEPT_SCHEMA.format(count='N')}) and reuse them on the next run with the same "
        "--recordings: generating a million recordings takes many minutes",
    )
    args = parser.parse_args(argv)
    if args.keep and args.dir is None:
        parser.error("--keep needs --dir (where the SQLite catalog is kept)")
    with contextlib.ExitStack() as stack:
        if args.keep:
            folder = args.dir
        else:
            folder = Path(
                stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="rtms-bench-search-", dir=args.dir)
                )
            )
        path = folder / KEPT_SQLITE.format(count=args.recordings)
        if path.exists():
            print(f"SQLite: reusing {path}")
        else:
            started = time.perf_counter()
            partial = path.with_suffix(".partial")
            partial.unlink(missing_ok=True)
            fill_sqlite(partial, args.recordings, seed=1)
            partial.rename(path)  # only a complete catalog is ever reused
            elapsed = time.perf_counter() - started
            print(f"SQLite: generated {args.recordings} recordings in {elapsed:.0f} s")
        _measured("SQLite", f"sqlite:///{path}", args.recordings, args.rounds)
    if args.postgres != "none":
        _postgres(args.postgres, args.recordings, args.rounds, keep=args.keep)
    return 0


def _postgres(server: str, count: int, rounds: int, *, keep: bool) -> None:
    import psycopg

    kept = KEPT_SCHEMA.format(count=count)
    schema = f"{kept}_partial" if keep else f"bench_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(server, autocommit=True, connect_timeout=3) as conn:
            reuse = (
                keep
                and conn.execute(
                    "SELECT 1 FROM pg_namespace WHERE nspname = %s", (kept,)
                ).fetchone()
            )
            if not reuse:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                conn.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.Error as exc:
        print(f"PostgreSQL: not measured ({server} not reachable: {exc})")
        return
    try:
        if reuse:
            print(f"PostgreSQL: reusing schema {kept}")
        else:
            started = time.perf_counter()
            fill_postgres(_in_schema(server, schema), count, seed=1)
            print(
                f"PostgreSQL: generated {count} recordings in {time.perf_counter() - started:.0f} s"
            )
            if keep:
                with psycopg.connect(server, autocommit=True) as conn:
                    conn.execute(f'ALTER SCHEMA "{schema}" RENAME TO "{kept}"')
        url = _in_schema(server, kept if keep else schema)
        open_catalog(url, now_ms=T0).close()  # a kept catalog is migrated forward first
        # A migration may rewrite a table (18 rewrote every posting), and this test server's
        # autovacuum may be off: measured as a server running autovacuum would be.
        print(
            f"PostgreSQL: VACUUM (ANALYZE) of the catalog's tables, as autovacuum would:"
            f" {vacuum_postgres(url):.0f} s"
        )
        _measured("PostgreSQL", url, count, rounds)
    finally:
        if not keep:
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _in_schema(server: str, schema: str) -> str:
    return f"{server}?options=-csearch_path%3D{schema}"


if __name__ == "__main__":
    raise SystemExit(main())
