"""The recording-key store and destruction records in the catalog, on both engines."""

from __future__ import annotations

import dataclasses
import secrets

import pytest
import trio

from recorder.catalog import AsyncCatalog
from recorder.catalog.base import HoldScope, RecordingKeyRow
from recorder.crypto.keyring import RecordingKeyEntry, RecordingKeyring
from recorder.crypto.keys.local import LocalKeyProvider
from recorder.crypto.keystore import CatalogRecordingKeyStore
from recorder.errors import CatalogError, HoldActive, IntegrityError, KeyDestroyed
from recorder.evidence_destruction import (
    DestroyedObject,
    DestructionMethod,
    DestructionRecord,
)
from tests.catalog.support import T0, CatalogTarget
from tests.catalog.test_conformance import _recording


def _row(recording_id: str, rk_id: str = "rk-aa-01", kek: str = "local:kek-1") -> RecordingKeyRow:
    return RecordingKeyRow(
        rk_id=rk_id,
        recording_id=recording_id,
        kek_key_id=kek,
        wrapped=secrets.token_bytes(61),
        created_ms=T0,
    )


def _record(recording_id: str) -> DestructionRecord:
    return DestructionRecord(
        recording_id=recording_id,
        method=DestructionMethod.CRYPTO_ERASE,
        objects=(DestroyedObject("rec/a.wav.rec", "v1", "c" * 64),),
        key_ids=("rk-aa-01",),
        rule="manual:test",
        hold_check="no holds at now",
        actor="tester",
        destroyed_ms=T0 + 5,
        verification="decrypt fails: key destroyed",
    )


async def test_keys_are_stored_once_rewrapped_and_tombstoned_for_good(
    catalog: AsyncCatalog,
) -> None:
    rec = await _recording(catalog)
    row = _row(rec.recording_id)
    await catalog.put_recording_key(row)
    await catalog.put_recording_key(row)  # a retried write of the same key is no change
    with pytest.raises(CatalogError, match="different key"):
        await catalog.put_recording_key(dataclasses.replace(row, wrapped=b"x" * 61))
    assert await catalog.get_recording_key(row.rk_id) == row
    assert [(u.kek_key_id, u.live) for u in await catalog.kek_usage()] == [("local:kek-1", 1)]
    # Re-wrapping is compare-and-swap on the old KEK: a second, stale attempt changes nothing.
    assert await catalog.rewrap_recording_key(
        row.rk_id,
        old_kek_key_id="local:kek-1",
        new_kek_key_id="local:kek-2",
        wrapped=b"n" * 61,
        now_ms=T0 + 1,
    )
    assert not await catalog.rewrap_recording_key(
        row.rk_id,
        old_kek_key_id="local:kek-1",
        new_kek_key_id="local:kek-3",
        wrapped=b"m" * 61,
        now_ms=T0 + 2,
    )
    assert await catalog.recording_keys_not_under("local:kek-2") == []
    hold = await catalog.place_hold(
        matter="m-1",
        scope=HoldScope.RECORDING,
        scope_value=rec.recording_id,
        placed_by="legal",
        reason="litigation",
        now_ms=T0 + 3,
    )
    with pytest.raises(HoldActive):
        await catalog.destroy_recording_keys(rec.recording_id, reason="r", now_ms=T0 + 4)
    assert (await catalog.get_recording_key(row.rk_id)).wrapped == b"n" * 61  # type: ignore[union-attr]
    await catalog.release_hold(hold.hold_id, released_by="legal", reason="settled", now_ms=T0 + 5)
    assert await catalog.destroy_recording_keys(
        rec.recording_id, reason="manual:test", now_ms=T0 + 6
    ) == [row.rk_id]
    tomb = await catalog.get_recording_key(row.rk_id)
    assert tomb is not None
    assert tomb.destroyed
    assert tomb.wrapped is None
    assert await catalog.recording_key_tombstone(rec.recording_id) == (T0 + 6, "manual:test")
    # The tombstone refuses a key restored from anywhere (a cache, an old copy).
    with pytest.raises(KeyDestroyed, match="key destroyed"):
        await catalog.put_recording_key(_row(rec.recording_id, rk_id="rk-aa-02"))
    sync = catalog.sync
    for statement in (
        "UPDATE recording_keys SET wrapped = 'AAAA', destroyed_ms = NULL",
        "DELETE FROM recording_keys",
        "DELETE FROM recording_key_tombstones",
        "INSERT INTO recording_keys (rk_id, recording_id, kek_key_id, wrapped, created_ms)"
        f" VALUES ('rk-aa-03', '{rec.recording_id}', 'local:kek-2', 'AAAA', 1)",
    ):
        with pytest.raises(CatalogError):
            await trio.to_thread.run_sync(_execute, sync, statement)


def _execute(sync: object, statement: str) -> None:
    with sync._transaction("test", write=True) as tx:  # type: ignore[attr-defined]
        tx.execute(statement)


async def test_destruction_records_are_append_only_and_checked_on_read(
    catalog: AsyncCatalog, target: CatalogTarget
) -> None:
    record = _record("rec-1")
    await catalog.add_destruction_record(record)
    assert await catalog.destruction_records("rec-1") == [record]
    assert await catalog.destruction_records() == [record]
    for statement in (
        "UPDATE destruction_records SET actor = 'x'",
        "DELETE FROM destruction_records",
    ):
        with pytest.raises(CatalogError):
            await trio.to_thread.run_sync(
                _execute, catalog.sync, statement.replace("actor", "method")
            )
    if target.engine == "sqlite":
        # Someone with file access drops the trigger and edits a record: the digest tells.
        await trio.to_thread.run_sync(
            _execute, catalog.sync, "DROP TRIGGER destruction_records_no_update"
        )
        await trio.to_thread.run_sync(
            _execute,
            catalog.sync,
            "UPDATE destruction_records SET record_json = replace(record_json, 'tester', 'x')",
        )
        with pytest.raises(IntegrityError, match="does not match its stored SHA-256"):
            await catalog.destruction_records("rec-1")


async def test_keyring_on_the_catalog_reads_across_keyrings_and_reports_key_destroyed(
    catalog: AsyncCatalog, tmp_path: object
) -> None:
    from pathlib import Path

    from recorder.crypto._format import SegmentHeader  # noqa: F401  (type only)
    from recorder.crypto.reader import iter_plaintext
    from recorder.crypto.writer import SpoolSinkFactory
    from tests.crypto.conftest import make_identity, write_segment

    root = Path(str(tmp_path))
    rec = await _recording(catalog)
    kek = LocalKeyProvider(root / "kek")
    host_a = RecordingKeyring(CatalogRecordingKeyStore(catalog.sync), provider=kek)
    identity = dataclasses.replace(make_identity(), recording_id=rec.recording_id)

    def write() -> Path:
        sealed = write_segment(
            SpoolSinkFactory(root / "spool", host_a, chunk_size=64), identity, b"speech" * 100
        )
        assert sealed.path is not None
        return sealed.path

    path = await trio.to_thread.run_sync(write)
    [stored] = await catalog.recording_keys_of(rec.recording_id)
    entry = RecordingKeyEntry(
        stored.rk_id, stored.recording_id, stored.kek_key_id, stored.wrapped or b"", T0
    )
    plaintext_key = await trio.to_thread.run_sync(host_a._unwrap_entry, entry)
    # Nothing the catalog holds is the unwrapped key, in any spelling.
    assert plaintext_key not in (stored.wrapped or b"")
    # Another keyring (another host) with only the catalog and the KEK reads it.
    host_b = RecordingKeyring(CatalogRecordingKeyStore(catalog.sync), unwrappers=[kek])

    def read() -> bytes:
        with path.open("rb") as f:
            return b"".join(iter_plaintext(f, host_b))

    assert (await trio.to_thread.run_sync(read)) == b"speech" * 100
    await trio.to_thread.run_sync(
        lambda: host_a.shred(rec.recording_id, on_legal_hold=lambda _: False, reason="test")
    )
    fresh = RecordingKeyring(CatalogRecordingKeyStore(catalog.sync), unwrappers=[kek])

    def read_fresh() -> bytes:
        with path.open("rb") as f:
            return b"".join(iter_plaintext(f, fresh))

    with pytest.raises(KeyDestroyed, match="key destroyed"):
        await trio.to_thread.run_sync(read_fresh)
    with pytest.raises(KeyDestroyed):
        await trio.to_thread.run_sync(host_a.prepare, rec.recording_id)


async def test_a_key_the_catalog_cannot_take_goes_to_the_escrow_spill_and_syncs_later(
    target: CatalogTarget, tmp_path: object
) -> None:
    from pathlib import Path

    from recorder.catalog import open_async_catalog
    from recorder.crypto.keyring import DirectoryRecordingKeyStore, EscrowEvent
    from recorder.crypto.keys.x25519 import X25519PublicKeyProvider, generate_x25519_keypair

    root = Path(str(tmp_path))
    generate_x25519_keypair(root / "escrow.key", root / "escrow.pub")
    escrow = X25519PublicKeyProvider.from_file(root / "escrow.pub")
    events: list[EscrowEvent] = []
    async with await open_async_catalog(target.url, now_ms=T0) as catalog:
        rec = await _recording(catalog)
        sync = target.open()
        store = CatalogRecordingKeyStore(sync)
        keyring = RecordingKeyring(
            store,
            provider=LocalKeyProvider(root / "kek"),
            spill=DirectoryRecordingKeyStore(root / "spill"),
            escrow=escrow,
            on_escrow=events.append,
        )
        sync.close()  # the key store is gone: the catalog refuses every call now
        rk_id = await trio.to_thread.run_sync(keyring.prepare, rec.recording_id)
        assert [e.rk_id for e in events] == [rk_id]
        assert events[0].kek_key_id == escrow.key_id
        spilled = list((root / "spill").rglob("rk-*.json"))
        assert len(spilled) == 1
        assert spilled[0].stat().st_mode & 0o077 == 0
        back = RecordingKeyring(
            CatalogRecordingKeyStore(catalog.sync),
            provider=LocalKeyProvider(root / "kek"),
            spill=DirectoryRecordingKeyStore(root / "spill"),
        )
        assert await trio.to_thread.run_sync(back.sync_spilled) == 1
        assert not list((root / "spill").rglob("rk-*.json"))
        [row] = await catalog.recording_keys_of(rec.recording_id)
        assert (row.rk_id, row.kek_key_id) == (rk_id, escrow.key_id)
