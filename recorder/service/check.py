"""``recorder check``: is this configuration ready to record? Says precisely what is not.

Each check runs on its own and reports ``ok`` or the error, so one broken part (a missing secret)
does not hide the others (an unreachable bucket). Exit code 0 when everything passed, otherwise
the exit code of the first failure's error class.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import trio

from recorder.config import Config, load_config
from recorder.errors import ConfigError, RecorderError
from recorder.sink import SegmentIdentity

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
    from recorder.catalog.aio import open_configured_async_catalog
    from recorder.crypto.setup import build_keyring
    from recorder.service.components import keyring_settings, now_ms, open_store

    async def secrets() -> str:
        config.secrets.require("zoom_client_id", "zoom_client_secret", "zoom_secret_token")
        return "Zoom client id, client secret and webhook secret token are set"

    async def catalog() -> str:
        cat = await open_configured_async_catalog(
            config.catalog,
            now_ms=now_ms(),
            postgres_password=config.secrets.postgres_password,
        )
        try:
            version = await cat.schema_version()
        finally:
            await cat.aclose()
        return f"{config.catalog.kind.value} reachable, schema version {version}"

    async def store() -> str:
        s, policy, mode, days = await open_store(config)
        await s.check_ready()
        await s.self_check(policy)
        return f"{config.storage.store.value} store ready; lock mode {mode.value}, {days} days"

    async def keys() -> str:
        def probe() -> str:
            keyring = build_keyring(keyring_settings(config))
            key_id = keyring.prepare("recorder-check")
            keyring.new_segment_key(SegmentIdentity("recorder-check", "check", 0, 0))
            keyring.forget("recorder-check")
            return key_id

        key_id = await trio.to_thread.run_sync(probe)
        return f"{config.keys.provider.value} keys wrap data keys (recording key {key_id})"

    async def spool() -> str:
        from recorder.spool.spool import Spool

        directory = config.storage.spool_dir
        await trio.Path(directory).mkdir(mode=0o700, parents=True, exist_ok=True)
        disk = await Spool(directory / "queue").disk_free()
        if disk.low:
            raise ConfigError(
                f"spool {directory}: only {disk.free_bytes} bytes free "
                f"(warning threshold {disk.warn_below_bytes})"
            )
        return f"{directory} writable, {disk.free_bytes // 2**20} MiB free"

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
