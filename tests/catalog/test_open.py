"""Opening catalogs: URL forms, file permissions, concurrent first opens, clear errors."""

from __future__ import annotations

import secrets
import stat
import threading
from pathlib import Path

import psycopg
import pytest
import trio
import trio.testing

from recorder.catalog import (
    AsyncCatalog,
    SqlCatalog,
    open_async_catalog,
    open_catalog,
    open_configured_async_catalog,
    open_configured_catalog,
)
from recorder.catalog.postgres import PostgresCatalog
from recorder.catalog.schema import LATEST_VERSION
from recorder.catalog.sqlite import SqliteCatalog
from recorder.config import CatalogConfig, CatalogKind, Secret
from recorder.errors import CatalogError
from tests.catalog.support import T0, CatalogTarget


async def test_sqlite_url_creates_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "catalog.db"
    with trio.fail_after(20):
        async with await open_async_catalog(f"sqlite:///{path}", now_ms=T0) as catalog:
            assert isinstance(catalog.sync, SqliteCatalog)
            assert await catalog.schema_version() == LATEST_VERSION
            await catalog.append_audit(actor="a", action="b", target="c", reason="", now_ms=T0)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        assert stat.S_IMODE(wal.stat().st_mode) == 0o600


def test_sqlite_relative_url_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    catalog = open_catalog("sqlite:///rel/catalog.db", now_ms=T0)
    try:
        assert isinstance(catalog, SqliteCatalog)
        assert (tmp_path / "rel" / "catalog.db").exists()
    finally:
        catalog.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db/x", "unsupported catalog URL scheme 'mysql'"),
        ("catalog.db", "unsupported catalog URL scheme"),
        ("sqlite:///", "no file path"),
    ],
)
def test_bad_urls_are_refused_clearly(url: str, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        open_catalog(url, now_ms=T0)


def test_sqlite_on_an_unwritable_path_is_a_catalog_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    with pytest.raises(CatalogError, match="cannot create catalog file"):
        open_catalog(f"sqlite:///{blocker}/catalog.db", now_ms=T0)


def test_unreachable_postgres_is_a_catalog_error_without_the_password() -> None:
    url = "postgresql://recorder:s3cret-pw@127.0.0.1:1/nowhere?connect_timeout=2"
    with pytest.raises(CatalogError, match="cannot connect to PostgreSQL") as caught:
        PostgresCatalog(url, now_ms=T0, connect_timeout_s=2)
    assert "s3cret-pw" not in str(caught.value)
    config = CatalogConfig(CatalogKind.POSTGRES, postgres_dsn="host=127.0.0.1 port=1 dbname=x")
    with pytest.raises(CatalogError, match="cannot connect to PostgreSQL") as caught:
        open_configured_catalog(config, now_ms=T0, postgres_password=Secret("s3cret-pw"))
    assert "s3cret-pw" not in str(caught.value)


async def test_the_configured_catalog_opens_either_engine(target: CatalogTarget) -> None:
    if target.sqlite_path is not None:
        config = CatalogConfig(CatalogKind.SQLITE, sqlite_path=target.sqlite_path)
    else:
        config = CatalogConfig(CatalogKind.POSTGRES, postgres_dsn=target.url)
    with trio.fail_after(20):
        # The test server trusts every login, so the password only has to travel, not match.
        async with await open_configured_async_catalog(
            config, now_ms=T0, postgres_password=Secret("unused-with-trust-auth")
        ) as catalog:
            assert await catalog.schema_version() == LATEST_VERSION
            assert type(catalog.sync).__name__.lower().startswith(target.engine)


async def test_two_recorders_opening_a_fresh_catalog_together(target: CatalogTarget) -> None:
    """Both migrate-on-open at once: one creates the schema, the other finds it done."""
    barrier = threading.Barrier(2, timeout=20)
    opened: list[SqlCatalog] = []

    def open_together() -> None:
        barrier.wait()
        opened.append(target.open())

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, open_together)
            nursery.start_soon(trio.to_thread.run_sync, open_together)
    try:
        assert [c.schema_version() for c in opened] == [LATEST_VERSION, LATEST_VERSION]
    finally:
        for catalog in opened:
            catalog.close()


async def test_many_concurrent_calls_share_the_catalog_safely(catalog: AsyncCatalog) -> None:
    with trio.fail_after(30):
        results: list[bool] = []

        async def admit(n: int) -> None:
            results.append(await catalog.first_seen(f"k{n % 10}", T0, 60_000))

        async with trio.open_nursery() as nursery:
            for n in range(40):
                nursery.start_soon(admit, n)
        assert sorted(results) == [False] * 30 + [True] * 10


async def test_a_cancelled_caller_waits_for_its_write_to_finish(
    target: CatalogTarget, catalog: AsyncCatalog
) -> None:
    """A write the database has begun is finished, never abandoned halfway by a cancellation."""
    with trio.fail_after(30), target.raw() as raw:
        # Hold the write lock from outside so the catalog's write waits inside the database.
        if target.engine == "sqlite":
            raw.execute("BEGIN IMMEDIATE")
        else:
            raw.execute("BEGIN")
            raw.execute("LOCK TABLE audit_log IN EXCLUSIVE MODE")
        returned = trio.Event()
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def write() -> None:
                with scope:
                    await catalog.append_audit(
                        actor="a", action="export", target="rec_c", reason="r", now_ms=T0
                    )
                returned.set()

            nursery.start_soon(write)
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert not returned.is_set(), "the caller left while its write was still running"
            raw.execute("COMMIT")
        assert returned.is_set()
    assert [e.action for e in await catalog.audit_trail("rec_c")] == ["export"]


@pytest.mark.postgres
async def test_a_killed_postgres_connection_costs_one_call_then_the_pool_reconnects(
    postgres_dsn: str,
) -> None:
    app = f"catalog-test-{secrets.token_hex(4)}"
    dsn = f"{postgres_dsn}&application_name={app}"

    def kill_our_backends() -> int:
        with psycopg.connect(postgres_dsn, autocommit=True) as raw:
            # The timeout form waits until the backend has really exited.
            row = raw.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000))"
                " FROM pg_stat_activity WHERE application_name = %s",
                (app,),
            ).fetchone()
            assert row is not None
            return int(row[0])

    with trio.fail_after(30):
        async with await open_async_catalog(dsn, now_ms=T0, max_connections=1) as catalog:
            assert await catalog.first_seen("before", T0, 60_000)
            assert await trio.to_thread.run_sync(kill_our_backends) == 1
            with pytest.raises(CatalogError, match="first_seen"):
                await catalog.first_seen("during", T0, 60_000)
            assert await catalog.first_seen("after", T0, 60_000)
            assert not await catalog.first_seen("before", T0 + 1, 60_000)


async def test_aclose_runs_even_when_the_owner_is_cancelled(target: CatalogTarget) -> None:
    with trio.fail_after(20):
        catalog = await open_async_catalog(target.url, now_ms=T0)
        with trio.CancelScope() as scope:
            scope.cancel()
            await catalog.aclose()
        with pytest.raises(CatalogError, match="first_seen"):
            await catalog.first_seen("after-close", T0, 1_000)
