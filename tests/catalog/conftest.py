"""Catalog fixtures: every conformance test runs on SQLite (always) and PostgreSQL (when up)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from recorder.catalog import AsyncCatalog, SqlCatalog, open_async_catalog, open_catalog

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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> CatalogTarget:
    if request.param == "sqlite":
        path = tmp_path / "catalog.db"
        return CatalogTarget("sqlite", f"sqlite:///{path}", sqlite_path=path)
    dsn: str = request.getfixturevalue("postgres_dsn")
    return CatalogTarget("postgres", dsn)


@pytest.fixture
async def catalog(target: CatalogTarget) -> AsyncIterator[AsyncCatalog]:
    async with await open_async_catalog(target.url, now_ms=T0) as opened:
        yield opened
