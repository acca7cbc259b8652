"""Helpers shared by the catalog tests (kept out of conftest.py so tests can import them)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from recorder.catalog import SqlCatalog, open_catalog

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
