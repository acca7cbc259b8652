"""Retention tests run on SQLite (always) and PostgreSQL (when up), like the catalog's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from recorder.catalog import AsyncCatalog, open_async_catalog
from tests.catalog.support import T0, CatalogTarget


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
