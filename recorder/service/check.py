"""``recorder check``: is this configuration ready to record? Says precisely what is not.

Each check runs on its own and reports ``ok`` or the error, so one broken part (a missing secret)
does not hide the others (an unreachable bucket). Exit code 0 when everything passed, otherwise
the exit code of the first failure's error class.

Rule: check only reads. It never creates a catalog, a directory or a key, never migrates the
schema and never stores a recording key; what ``recorder serve`` would create on its first
start is reported as such ("not created yet").
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path

import trio

from recorder.catalog.schema import LATEST_VERSION
from recorder.config import CatalogKind, Config, KeyProviderKind, StoreKind, load_config
from recorder.errors import CatalogError, ConfigError, KeyNotFound, RecorderError

Check = Callable[[], Awaitable[str]]


async def _run_one(name: str, check: Check, print_fn: Callable[[str], None]) -> int:
    try:
        with trio.fail_after(30):
            detail = await check()
    except RecorderError as exc:
        print_fn(f"FAIL  {name}: {exc}")
        return exc.exit_code
    except trio.TooSlowError:
        print_fn(f"FAIL  {name}: no answer within 30 s")
        return 2
    print_fn(f"ok    {name}: {detail}")
    return 0


def _checks(config: Config) -> list[tuple[str, Check]]:
    from recorder.crypto.keys.base import KeyContext
    from recorder.crypto.setup import build_provider
    from recorder.service.components import keyring_settings, open_store

    async def secrets() -> str:
        config.secrets.require("zoom_client_id", "zoom_client_secret", "zoom_secret_token")
        return "Zoom client id, client secret and webhook secret token are set"

    async def catalog() -> str:
        version = await trio.to_thread.run_sync(_read_schema_version, config)
        kind = config.catalog.kind.value
        if version is None:
            return f"{kind}: no catalog yet (recorder serve creates and migrates it)"
        if version > LATEST_VERSION:
            raise CatalogError(
                f"catalog schema is version {version}, newer than this recorder knows "
                f"({LATEST_VERSION}): upgrade the recorder"
            )
        if version < LATEST_VERSION:
            return (
                f"{kind} reachable, schema version {version} (serve migrates to {LATEST_VERSION})"
            )
        return f"{kind} reachable, schema version {version}"

    async def store() -> str:
        if config.storage.store is StoreKind.LOCAL:
            root = config.storage.local_store_path or config.storage.state_dir / "store"
            if not root.exists():
                return f"local store {root} not created yet (recorder serve creates it)"
            if not os.access(root, os.W_OK | os.X_OK):
                raise ConfigError(f"local store {root} is not writable")
            return f"local store {root} writable"
        s, policy, mode, days = await open_store(config)
        await s.check_ready()
        await s.self_check(policy)
        return f"{config.storage.store.value} store ready; lock mode {mode.value}, {days} days"

    async def keys() -> str:
        def probe() -> str:
            settings = replace(keyring_settings(config), create_local_kek=False)
            try:
                provider = build_provider(settings)
            except KeyNotFound as exc:
                if config.keys.provider is KeyProviderKind.LOCAL and not (
                    settings.local_key_dir is not None and settings.local_key_dir.exists()
                ):
                    return f"no local KEK yet ({exc})"
                raise
            # Wrap a throwaway key: proves the KEK works without storing anything.
            wrapped = provider.new_data_key(KeyContext("recorder-check", purpose="check"))
            return f"{config.keys.provider.value} KEK {wrapped.key_id} wraps keys"

        return await trio.to_thread.run_sync(probe)

    async def spool() -> str:
        directory = config.storage.spool_dir
        existing = directory
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(f"spool {directory}: {existing} is not writable")
        free = (await trio.to_thread.run_sync(shutil.disk_usage, existing)).free
        if free < config.storage.spool_warn_bytes:
            raise ConfigError(
                f"spool {directory}: only {free} bytes free "
                f"(warning threshold {config.storage.spool_warn_bytes})"
            )
        state = "" if directory.exists() else " (not created yet)"
        return f"{directory} writable{state}, {free // 2**20} MiB free"

    async def policies() -> str:
        from recorder.retention.policy import load_policies

        found = load_policies(config.retention.policies_dir)
        return (
            f"{len(found.policies)} retention policies in {config.retention.policies_dir}, "
            f"default {found.default.name!r} ({found.default.retain_days} days)"
        )

    return [
        ("secrets", secrets),
        ("catalog", catalog),
        ("policies", policies),
        ("store", store),
        ("keys", keys),
        ("spool", spool),
    ]


def _read_schema_version(config: Config) -> int | None:
    """The catalog's schema version, read-only; None when there is no catalog yet."""
    if config.catalog.kind is CatalogKind.SQLITE:
        path = config.catalog.sqlite_path
        if path is None or not path.exists():
            return None
        try:
            lite = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
            try:
                row = lite.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM schema_version"
                ).fetchone()
            finally:
                lite.close()
        except sqlite3.Error as exc:
            raise CatalogError(f"catalog {path}: {exc}") from exc
        return int(row[0])
    import psycopg

    from recorder.catalog.postgres import _conninfo

    dsn = config.catalog.postgres_dsn or ""
    password = config.secrets.postgres_password
    try:
        with psycopg.connect(
            _conninfo(dsn, None if password is None else password.reveal()), connect_timeout=5
        ) as conn:
            exists = conn.execute("SELECT to_regclass('schema_version')").fetchone()
            if exists is None or exists[0] is None:
                return None
            row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    except psycopg.Error as exc:
        raise CatalogError(f"cannot read the PostgreSQL catalog: {exc}") from exc
    return 0 if row is None else int(row[0])


async def run_check(
    config_path: Path | None, environ: Mapping[str, str], print_fn: Callable[[str], None]
) -> int:
    try:
        config = load_config(config_path, environ)
    except ConfigError as exc:
        print_fn(f"FAIL  config: {exc}")
        return exc.exit_code
    print_fn(f"ok    config: {config.source or 'embedded default'}")
    first_failure = 0
    for name, check in _checks(config):
        code = await _run_one(name, check, print_fn)
        first_failure = first_failure or code
    return first_failure
