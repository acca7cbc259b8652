"""Pick the catalog engine: from a URL, or from the ``[catalog]`` section of the configuration.

URLs: ``sqlite:///relative.db``, ``sqlite:////abs.db`` or ``postgresql://user@host/db``
(``postgres://`` too). The SQLite spelling follows the common SQLAlchemy convention: three
slashes then a relative path, four slashes for an absolute one.
"""

from __future__ import annotations

from typing import Final

from recorder.catalog._core import SqlCatalog
from recorder.catalog.postgres import DEFAULT_MAX_CONNECTIONS, PostgresCatalog
from recorder.catalog.sqlite import SqliteCatalog
from recorder.config import CatalogConfig, CatalogKind, Secret
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


def open_configured_catalog(
    config: CatalogConfig,
    *,
    now_ms: int,
    postgres_password: Secret | None = None,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> SqlCatalog:
    """Open and migrate the catalog the configuration names. Blocking, like ``open_catalog``.

    ``postgres_password`` is ``Secrets.postgres_password`` (``RECORDER_POSTGRES_PASSWORD``).
    """
    if config.kind is CatalogKind.POSTGRES:
        if not config.postgres_dsn:
            raise CatalogError("open: [catalog] kind is postgres but postgres_dsn is empty")
        return PostgresCatalog(
            config.postgres_dsn,
            now_ms=now_ms,
            max_connections=max_connections,
            password=None if postgres_password is None else postgres_password.reveal(),
        )
    if config.sqlite_path is None:
        raise CatalogError("open: [catalog] kind is sqlite but sqlite_path is empty")
    return SqliteCatalog(config.sqlite_path, now_ms=now_ms)
