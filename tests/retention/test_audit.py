"""Signed audit heads: rewriting, deleting or truncating the log as the database owner is caught."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from recorder.catalog import AsyncCatalog
from recorder.catalog._rows import AUDIT_GENESIS_HASH, audit_chain_hash
from recorder.errors import ConfigError, StorageError
from recorder.retention.audit_heads import (
    load_public_key,
    load_signing_key,
    public_path,
    verify_audit,
    write_head,
)
from recorder.store.local import LocalStore
from tests.catalog.support import CatalogTarget
from tests.conftest import fill_filesystem
from tests.retention.helpers import T0

pytestmark = pytest.mark.timeout(120)


def disable_guards(target: CatalogTarget, conn: Any) -> None:
    """What an owner of the database can do: switch the append-only triggers off."""
    if target.sqlite_path is not None:
        for trigger in ("audit_log_no_update", "audit_log_no_delete"):
            conn.execute(f"DROP TRIGGER {trigger}")
    else:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")


def rechain(conn: Any, placeholder: str) -> None:
    """Recompute every prev_hash/row_hash so that the chain alone looks intact again."""
    rows = conn.execute(
        "SELECT audit_id, at_ms, actor, action, target, reason, details FROM audit_log"
        " ORDER BY audit_id"
    ).fetchall()
    prev = AUDIT_GENESIS_HASH
    for audit_id, at_ms, actor, action, target, reason, details in rows:
        row_hash = audit_chain_hash(prev, at_ms, actor, action, target, reason, details)
        conn.execute(
            f"UPDATE audit_log SET prev_hash = {placeholder}, row_hash = {placeholder}"
            f" WHERE audit_id = {placeholder}",
            (prev, row_hash, audit_id),
        )
        prev = row_hash


def rewrite_third(conn: Any, p: str) -> None:
    conn.execute(f"UPDATE audit_log SET reason = {p} WHERE audit_id = 3", ("nothing happened",))
    rechain(conn, p)


def delete_fourth(conn: Any, p: str) -> None:
    conn.execute("DELETE FROM audit_log WHERE audit_id = 4")
    rechain(conn, p)


def truncate_tail(conn: Any, p: str) -> None:
    conn.execute("DELETE FROM audit_log WHERE audit_id >= 5")


def rewrite_without_rechaining(conn: Any, p: str) -> None:
    conn.execute(f"UPDATE audit_log SET actor = {p} WHERE audit_id = 2", ("os:someone-else",))


@pytest.mark.parametrize(
    ("tamper", "first_bad", "words"),
    [
        (rewrite_third, 3, "rewritten"),
        (delete_fourth, 4, "deleted"),
        (truncate_tail, 5, "deleted or truncated"),
        (rewrite_without_rechaining, 2, "hash chain broken"),
    ],
)
async def test_tampering_as_the_owner_is_caught_and_the_first_bad_event_named(
    catalog: AsyncCatalog,
    target: CatalogTarget,
    tmp_path: Path,
    tamper: Callable[[Any, str], None],
    first_bad: int,
    words: str,
) -> None:
    store = LocalStore(tmp_path / "store")
    key = load_signing_key(tmp_path / "keys" / "audit.key")
    for n in range(6):
        await catalog.append_audit(
            actor=f"os:officer{n % 2}",
            action="export",
            target=f"rec_{n}",
            reason="review",
            now_ms=T0 + n,
        )
    head = await write_head(catalog, store, key, now_ms=T0 + 10)
    assert head is not None
    assert (head.first_id, head.last_id) == (1, 6)
    assert await write_head(catalog, store, key, now_ms=T0 + 11) is None  # nothing new
    public = load_public_key(public_path(tmp_path / "keys" / "audit.key"))
    verdict = await verify_audit(catalog, store, public)
    assert verdict.ok, verdict
    assert (verdict.events_checked, verdict.heads_checked) == (6, 1)

    placeholder = "?" if target.sqlite_path is not None else "%s"
    with target.raw() as conn:
        disable_guards(target, conn)
        tamper(conn, placeholder)
    verdict = await verify_audit(catalog, store, public)
    assert not verdict.ok
    assert verdict.first_bad_id == first_bad, verdict
    assert words in verdict.problem
    assert verdict.problem.startswith(f"event #{first_bad}:")


async def test_heads_chain_and_a_foreign_signature_is_refused(
    catalog: AsyncCatalog, tmp_path: Path
) -> None:
    store = LocalStore(tmp_path / "store")
    key = load_signing_key(tmp_path / "audit.key")
    for n in range(3):
        await catalog.append_audit(actor="os:a", action="x", target="t", reason="", now_ms=T0 + n)
        await write_head(catalog, store, key, now_ms=T0 + n)
    public = load_public_key(public_path(tmp_path / "audit.key"))
    verdict = await verify_audit(catalog, store, public)
    assert (verdict.ok, verdict.heads_checked) == (True, 3)
    # A head signed by someone else (the database owner, say) does not verify.
    await catalog.append_audit(actor="os:a", action="x", target="t", reason="", now_ms=T0 + 9)
    await write_head(catalog, store, load_signing_key(tmp_path / "forger.key"), now_ms=T0 + 9)
    verdict = await verify_audit(catalog, store, public)
    assert not verdict.ok
    assert "bad head" in verdict.problem


def test_signing_key_is_0600_and_refused_otherwise(tmp_path: Path) -> None:
    path = tmp_path / "k" / "audit.key"
    load_signing_key(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert len(public_path(path).read_text().strip()) == 64
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="0600"):
        load_signing_key(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_signing_key(tmp_path / "none.key", create=False)


@pytest.mark.parametrize(
    "garbage",
    [b"not json", b"[]", b'{"body": 1, "signature": "00"}', b'{"body": {}, "signature": 5}'],
)
async def test_a_garbage_head_is_reported_not_a_crash(
    catalog: AsyncCatalog, tmp_path: Path, garbage: bytes
) -> None:
    import hashlib

    store = LocalStore(tmp_path / "store")
    key = load_signing_key(tmp_path / "audit.key")
    await catalog.append_audit(actor="os:a", action="x", target="t", reason="", now_ms=T0)
    source = tmp_path / "garbage.json"
    source.write_bytes(garbage)
    await store.put(
        "audit/heads/00000000000000000001.json",
        source,
        sha256=hashlib.sha256(garbage).hexdigest(),
        retain_until=None,
    )
    del key
    verdict = await verify_audit(
        catalog, store, load_public_key(public_path(tmp_path / "audit.key"))
    )
    assert not verdict.ok
    assert "bad head" in verdict.problem


async def test_a_head_that_cannot_be_staged_is_named_and_the_next_one_covers_its_events(
    catalog: AsyncCatalog, tmp_path: Path, tiny_filesystem: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path / "store")
    key = load_signing_key(tmp_path / "keys" / "audit.key", create=True)
    for n in range(3):
        await catalog.append_audit(
            actor="os:officer", action="export", target=f"rec_{n}", reason="review", now_ms=T0 + n
        )
    filler = fill_filesystem(tiny_filesystem)
    monkeypatch.setattr(tempfile, "tempdir", str(tiny_filesystem))
    with pytest.raises(StorageError) as caught:
        await write_head(catalog, store, key, now_ms=T0 + 10)
    assert re.fullmatch(
        rf"audit/heads/0+3\.json: cannot stage it in {tiny_filesystem}/rtms-document-\w+: "
        "No space left on device",
        str(caught.value),
    ), str(caught.value)
    assert await store.list("audit/") == []
    filler.unlink()
    head = await write_head(catalog, store, key, now_ms=T0 + 11)
    assert head is not None
    assert (head.first_id, head.last_id) == (1, 3)
