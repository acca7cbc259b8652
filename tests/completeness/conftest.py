"""Completeness tests run on SQLite always and on PostgreSQL when it is up (the catalog's own
fixtures)."""

from __future__ import annotations

from tests.catalog.conftest import catalog, target

__all__ = ["catalog", "target"]
