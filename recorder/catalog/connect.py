"""Pick the catalog engine from a URL: ``sqlite:///relative.db``, ``sqlite:////abs.db`` or
``postgresql://user@host/db`` (``postgres://`` too).

The SQLite spelling follows the common SQLAlchemy convention: three slashes then a relative
path, four slashes for an absolute one.
"""

from __future__ import annotations

from typing import Final

from recorder.catalog._core import SqlCatalog
from recorder.catalog.postgres import DEFAULT_MAX_CONNECTIONS, PostgresCatalog
from recorder.catalog.sqlite import SqliteCatalog
from recorder.errors import CatalogError

SQLITE_PREFIX: Final = "sqlite:///"
POSTGRES_PREFIXES: Final = ("postgresql://", "postgres://")


def open_catalog(
    url: str, *, now_ms: int, max_connections: int = DEFAULT_MAX_CONNECTIONS
) -> SqlCatalog:
    """Open and migrate the catalog at ``url``. Blocking: call it from a worker thread in trio.

    ``max_connections`` applies to PostgreSQL; SQLite always uses one connection.
    """
    if url.startswith(SQLITE_PREFIX):
        path = url.removeprefix(SQLITE_PREFIX)
        if not path or path == "/":
            raise CatalogError("open: sqlite URL has no file path (sqlite:///catalog.db)")
        return SqliteCatalog(path, now_ms=now_ms)
    if url.startswith(POSTGRES_PREFIXES):
        return PostgresCatalog(url, now_ms=now_ms, max_connections=max_connections)
    scheme = url.split(":", 1)[0] if ":" in url else "(none)"
    raise CatalogError(
        f"open: unsupported catalog URL scheme {scheme!r}: use sqlite:///path or postgresql://..."
    )
