"""The search benchmark runs in its smallest configuration (no timing asserted): every query
shape gets wall and CPU percentiles, the load average is printed, and ``--keep`` reuses."""

from __future__ import annotations

import random
from pathlib import Path

import psycopg
import pytest

from recorder.bench import search

SHAPES = ("newest page", "text: two common", "text + month", "next page", "ALL")


def _shape_lines(out: str, engine: str) -> list[str]:
    section = out.split(f"{engine}: measured at load average", 1)[1]
    return [line for line in section.splitlines() if "wall p50" in line]


@pytest.mark.timeout(300)
def test_sqlite_every_shape_measured_and_a_kept_catalog_reused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--recordings", "400", "--rounds", "2", "--postgres", "none", "--dir", str(tmp_path)]
    assert search.main([*argv, "--keep"]) == 0
    out = capsys.readouterr().out
    assert "SQLite: generated 400 recordings" in out, out
    lines = _shape_lines(out, "SQLite")
    assert len(lines) == len(search.queries(400, random.Random(0))) + 2  # next page, ALL
    for shape in SHAPES:
        assert any(line.strip().startswith(shape) and "CPU p50" in line for line in lines), out
    assert search.main([*argv, "--keep"]) == 0
    again = capsys.readouterr().out
    assert f"SQLite: reusing {tmp_path / search.KEPT_SQLITE.format(count=400)}" in again, again
    assert "generated" not in again


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_postgres_every_shape_measured_with_the_backends_cpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], postgres_server: str
) -> None:
    argv = ["--recordings", "400", "--rounds", "2", "--postgres", postgres_server]
    assert search.main([*argv, "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "PostgreSQL: generated 400 recordings" in out, out
    assert "PostgreSQL: VACUUM (ANALYZE) of the catalog's tables, as autovacuum would" in out, out
    lines = _shape_lines(out, "PostgreSQL")
    for shape in SHAPES:
        # The server runs on this host here, so its backend's CPU is read and added.
        assert any(line.strip().startswith(shape) and "CPU p50" in line for line in lines), out


@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_every_table_of_the_postgres_catalog_is_vacuumed_and_analyzed(postgres_dsn: str) -> None:
    search.fill_postgres(postgres_dsn, 50, seed=1)
    search.vacuum_postgres(postgres_dsn)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT relname, last_vacuum IS NOT NULL AND last_analyze IS NOT NULL"
            " FROM pg_stat_user_tables WHERE schemaname = current_schema()"
        ).fetchall()
    assert {str(name) for name, _ in rows} >= {"recordings", "transcript_tokens", "legal_holds"}
    assert all(done for _, done in rows), rows


def test_keep_without_a_directory_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        search.main(["--keep", "--postgres", "none"])
    assert "--keep needs --dir" in capsys.readouterr().err
