"""Key providers: one suite for local and KMS (moto), encrypt-only mode, fallback, shredding."""

from __future__ import annotations

import logging
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from recorder.crypto.keyring import DirectoryRecordingKeyStore, EscrowEvent, RecordingKeyring
from recorder.crypto.keys import (
    FallbackAlert,
    FallbackKeyProvider,
    KeyContext,
    KeyProvider,
    KmsKeyProvider,
    LocalKeyProvider,
    X25519PublicKeyProvider,
    X25519Unwrapper,
    generate_x25519_keypair,
    make_kms_client,
    new_data_key_async,
    unwrap_async,
)
from recorder.crypto.reader import iter_plaintext
from recorder.crypto.recovery import recover
from recorder.crypto.writer import SpoolSinkFactory
from recorder.errors import (
    ConfigError,
    DecryptNotPermitted,
    KeyDestroyed,
    KeyMismatch,
    KeyNotFound,
    KeyProviderError,
    KeyUnavailable,
    LegalHoldViolation,
    StorageError,
)
from tests.conftest import fill_filesystem

from .conftest import make_identity, make_keyring, write_segment

CONTEXT = KeyContext("meeting/uuid+AbC==")


def _dead_endpoint() -> str:
    """A loopback port with nothing listening: connection refused, at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(params=["local", "kms"])
def provider(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyProvider]:
    if request.param == "local":
        yield LocalKeyProvider(tmp_path / "kek")
        return
    endpoint = request.getfixturevalue("moto_endpoint")
    client = make_kms_client(region="us-east-1", endpoint_url=endpoint)
    key_id = client.create_key(Description="rtms-recorder test KEK")["KeyMetadata"]["KeyId"]
    yield KmsKeyProvider(key_id, client=client)


def _unknown_key_id(provider: KeyProvider) -> str:
    if isinstance(provider, KmsKeyProvider):
        return "kms:arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    return "local:kek-20000101T000000Z-deadbeef"


async def test_data_key_round_trip(provider: KeyProvider) -> None:
    with trio.fail_after(20):
        first = await new_data_key_async(provider, CONTEXT)
        second = await new_data_key_async(provider, CONTEXT)
        assert len(first.plaintext) == 32
        assert first.plaintext != second.plaintext
        assert first.wrapped != first.plaintext
        assert provider.handles(first.key_id)
        opened = await unwrap_async(provider, first.wrapped, first.key_id, CONTEXT)
        assert opened == first.plaintext


async def test_wrong_context_does_not_unwrap(provider: KeyProvider) -> None:
    with trio.fail_after(20):
        key = await new_data_key_async(provider, CONTEXT)
        with pytest.raises(KeyMismatch):
            await unwrap_async(provider, key.wrapped, key.key_id, KeyContext("someone-else"))


async def test_altered_wrapped_key_does_not_unwrap(provider: KeyProvider) -> None:
    with trio.fail_after(20):
        key = await new_data_key_async(provider, CONTEXT)
        altered = bytearray(key.wrapped)
        altered[-3] ^= 0x40
        with pytest.raises(KeyMismatch):
            await unwrap_async(provider, bytes(altered), key.key_id, CONTEXT)


async def test_unknown_key_id_is_named(provider: KeyProvider) -> None:
    with trio.fail_after(20):
        key = await new_data_key_async(provider, CONTEXT)
        missing = _unknown_key_id(provider)
        with pytest.raises((KeyNotFound, KeyMismatch), match=missing):
            await unwrap_async(provider, key.wrapped, missing, CONTEXT)


async def test_segments_round_trip_through_the_provider(
    provider: KeyProvider, tmp_path: Path
) -> None:
    store = DirectoryRecordingKeyStore(tmp_path / "rk")
    keyring = RecordingKeyring(store, provider=provider)
    with trio.fail_after(20):
        await keyring.prepare_async(CONTEXT.recording_id)
        factory = SpoolSinkFactory(tmp_path / "spool", keyring, chunk_size=128)
        body = os.urandom(5000)
        sealed = await trio.to_thread.run_sync(
            lambda: write_segment(factory, make_identity(), body, prologue=b"HDR!")
        )
    # A fresh keyring (nothing cached) reads it back through the provider.
    reader = RecordingKeyring(store, provider=provider)
    assert sealed.path is not None
    assert b"".join(iter_plaintext(sealed.path, reader)) == b"HDR!" + body


def test_local_kek_files_are_private_and_rotation_keeps_old_keys(tmp_path: Path) -> None:
    key_dir = tmp_path / "kek"
    provider = LocalKeyProvider(key_dir)
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    (kek_file,) = (key_dir / "keks").iterdir()
    assert stat.S_IMODE(kek_file.stat().st_mode) == 0o600
    first = provider.current_key_id
    assert LocalKeyProvider(key_dir).current_key_id == first  # second process: same KEK

    old = provider.new_data_key(CONTEXT)
    new_id = provider.rotate()
    assert new_id != first
    assert provider.current_key_id == new_id
    assert provider.new_data_key(CONTEXT).key_id == new_id
    assert provider.unwrap(old.wrapped, old.key_id, CONTEXT) == old.plaintext
    assert provider.key_ids() == sorted([first, new_id])
    for path in (key_dir / "keks").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_local_kek_the_disk_refuses_is_named_and_the_current_one_stays(
    tiny_filesystem: Path,
) -> None:
    """A full disk at the first start and at a rotation: a key error naming the directory,
    never a KEK that ``current`` names without its file; the current KEK still works."""
    key_dir = tiny_filesystem / "kek"
    filler = fill_filesystem(tiny_filesystem)
    refused = f"cannot create a local KEK in {key_dir}: No space left on device"
    with pytest.raises(KeyProviderError, match=f"^{refused}$"):
        LocalKeyProvider(key_dir)
    filler.unlink()
    provider = LocalKeyProvider(key_dir)
    first = provider.current_key_id
    data_key = provider.new_data_key(CONTEXT)
    fill_filesystem(tiny_filesystem)
    with pytest.raises(KeyProviderError, match=f"^{refused}$"):
        provider.rotate()
    again = LocalKeyProvider(key_dir)
    assert again.current_key_id == first
    assert again.unwrap(data_key.wrapped, data_key.key_id, CONTEXT) == data_key.plaintext


def test_local_provider_refuses_readable_keys(tmp_path: Path) -> None:
    key_dir = tmp_path / "kek"
    provider = LocalKeyProvider(key_dir)
    key_id = provider.current_key_id
    (kek_file,) = (key_dir / "keks").iterdir()
    kek_file.chmod(0o644)
    with pytest.raises(ConfigError, match="mode 0644"):
        LocalKeyProvider(key_dir).new_data_key(CONTEXT)
    kek_file.chmod(0o600)
    key_dir.chmod(0o755)
    with pytest.raises(ConfigError, match="mode 0755"):
        LocalKeyProvider(key_dir)
    assert key_id


async def test_kms_unreachable_is_key_unavailable() -> None:
    client = make_kms_client(
        region="us-east-1", endpoint_url=_dead_endpoint(), connect_timeout_s=1, max_attempts=1
    )
    provider = KmsKeyProvider("alias/recorder", client=client)
    with trio.fail_after(20), pytest.raises(KeyUnavailable, match="unreachable"):
        await new_data_key_async(provider, CONTEXT)


@pytest.fixture
def x25519_pair(tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "officer.key", tmp_path / "officer.pub"
    generate_x25519_keypair(private, public)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    return private, public


def test_a_key_pair_is_made_whole_or_not_at_all(tiny_filesystem: Path) -> None:
    """Room for the private key's page but not the public one's: the private key goes too
    (nobody holds its public half, so nothing was ever sealed to it) and the error names the
    public file. Then with room, the pair is made."""
    filler = fill_filesystem(tiny_filesystem, leave=4096)
    private, public = tiny_filesystem / "officer.key", tiny_filesystem / "officer.pub"
    with pytest.raises(StorageError, match=f"^{public}: cannot write: No space left on device$"):
        generate_x25519_keypair(private, public)
    assert sorted(p.name for p in tiny_filesystem.iterdir()) == ["filler"]
    filler.unlink()
    generate_x25519_keypair(private, public)
    assert X25519Unwrapper.from_file(private).public_key.public_bytes_raw() == public.read_bytes()


def test_encrypt_only_host_cannot_decrypt_what_it_wrote(
    tmp_path: Path, x25519_pair: tuple[Path, Path]
) -> None:
    private, public = x25519_pair
    store = DirectoryRecordingKeyStore(tmp_path / "rk")
    host = RecordingKeyring(store, provider=X25519PublicKeyProvider.from_file(public))
    factory = SpoolSinkFactory(tmp_path / "spool", host, chunk_size=64)
    body = os.urandom(999)
    sealed = write_segment(factory, make_identity(), body, prologue=b"WAV!")
    assert sealed.path is not None
    assert sealed.key_id.startswith("rk-")

    host_reader = RecordingKeyring(store, provider=X25519PublicKeyProvider.from_file(public))
    with pytest.raises(DecryptNotPermitted, match="encrypt-only"):
        list(iter_plaintext(sealed.path, host_reader))
    # After a restart the host cannot recover its own .part files either: no private key.
    dead_writer = factory.open(make_identity(segment_index=1))
    os.close(dead_writer._fd)  # the process died; its lock went with it
    part = dead_writer.part_path
    with pytest.raises(DecryptNotPermitted):
        recover(part, host_reader)
    assert part.exists()  # left for the workstation

    workstation = RecordingKeyring(store, unwrappers=[X25519Unwrapper.from_file(private)])
    assert b"".join(iter_plaintext(sealed.path, workstation)) == b"WAV!" + body
    assert recover(part, workstation).body_bytes_recovered == 0


def test_fallback_wraps_to_escrow_and_alerts(
    tmp_path: Path, x25519_pair: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    private, public = x25519_pair
    dead = KmsKeyProvider(
        "alias/recorder",
        client=make_kms_client(
            region="us-east-1", endpoint_url=_dead_endpoint(), connect_timeout_s=1, max_attempts=1
        ),
    )
    alerts: list[FallbackAlert] = []
    escrow = X25519PublicKeyProvider.from_file(public)
    provider = FallbackKeyProvider(dead, escrow, on_fallback=alerts.append)
    store = DirectoryRecordingKeyStore(tmp_path / "rk")
    keyring = RecordingKeyring(store, provider=provider)
    factory = SpoolSinkFactory(tmp_path / "spool", keyring, chunk_size=64)
    body = os.urandom(500)
    with caplog.at_level(logging.ERROR, logger="recorder.crypto.keys.fallback"):
        sealed = write_segment(factory, make_identity(), body)
    assert provider.fallback_count == 1
    assert [a.escrow_key_id for a in alerts] == [escrow.key_id]
    assert alerts[0].recording_id == make_identity().recording_id
    (line,) = [r.getMessage() for r in caplog.records]
    assert "escrow" in line
    assert escrow.key_id in line
    assert public.read_bytes().hex() not in line

    custodian = RecordingKeyring(store, unwrappers=[X25519Unwrapper.from_file(private)])
    assert sealed.path is not None
    assert b"".join(iter_plaintext(sealed.path, custodian)) == body


def test_fallback_is_not_used_while_the_primary_works(
    tmp_path: Path, x25519_pair: tuple[Path, Path]
) -> None:
    _, public = x25519_pair
    primary = LocalKeyProvider(tmp_path / "kek")
    provider = FallbackKeyProvider(primary, X25519PublicKeyProvider.from_file(public))
    key = provider.new_data_key(CONTEXT)
    assert key.key_id == primary.current_key_id
    assert provider.unwrap(key.wrapped, key.key_id, CONTEXT) == key.plaintext
    assert provider.fallback_count == 0


def test_fallback_does_not_hide_configuration_errors(
    tmp_path: Path, x25519_pair: tuple[Path, Path]
) -> None:
    _, public = x25519_pair
    primary = LocalKeyProvider(tmp_path / "kek")
    (primary.key_dir / "current").write_text("kek-missing\n")
    provider = FallbackKeyProvider(primary, X25519PublicKeyProvider.from_file(public))
    with pytest.raises(KeyNotFound, match="kek-missing"):
        provider.new_data_key(CONTEXT)
    assert provider.fallback_count == 0


def test_shredding_one_recording_leaves_the_others_readable(tmp_path: Path) -> None:
    keyring = make_keyring(tmp_path / "keys")
    factory = SpoolSinkFactory(tmp_path / "spool", keyring, chunk_size=64)
    body_a, body_b = os.urandom(300), os.urandom(300)
    a0 = write_segment(factory, make_identity("recording-A", segment_index=0), body_a)
    a1 = write_segment(factory, make_identity("recording-A", segment_index=1), body_a)
    b0 = write_segment(factory, make_identity("recording-B", segment_index=0), body_b)
    assert a0.path is not None
    assert a1.path is not None
    assert b0.path is not None

    with pytest.raises(LegalHoldViolation, match="legal hold"):
        keyring.shred("recording-A", on_legal_hold=lambda rid: True, reason="test")
    assert b"".join(iter_plaintext(a0.path, keyring)) == body_a

    destroyed = keyring.shred("recording-A", on_legal_hold=lambda rid: False, reason="GDPR")
    assert destroyed == [a0.key_id]  # one recording key for both of A's segments

    for reader in (keyring, make_keyring(tmp_path / "keys")):
        for segment in (a0, a1):
            assert segment.path is not None
            with pytest.raises(KeyDestroyed, match=f"{segment.key_id}.*crypto-shredded"):
                list(iter_plaintext(segment.path, reader))
        assert b"".join(iter_plaintext(b0.path, reader)) == body_b
    with pytest.raises(KeyDestroyed):
        factory.open(make_identity("recording-A", segment_index=2))
    remaining = list((tmp_path / "keys" / "recording-keys").rglob("rk-*.json"))
    assert [p.stem for p in remaining] == [b0.key_id]
    for path in remaining:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_full_disk_under_the_key_store_sends_the_key_to_the_spill_or_refuses_naming_both(
    tiny_filesystem: Path, tmp_path: Path
) -> None:
    """A real ENOSPC under the directory key store (the embedded default's): never a raw
    ``OSError`` out of ``prepare`` (the engagement would fail as 'unexpected OSError'), never a
    key that lives only in memory, and no half-written key file left."""
    store = DirectoryRecordingKeyStore(tiny_filesystem / "recording-keys")
    full_spill = DirectoryRecordingKeyStore(tiny_filesystem / "spill")
    filler = fill_filesystem(tiny_filesystem)
    provider = LocalKeyProvider(tmp_path / "kek")
    spilled: list[EscrowEvent] = []
    keyring = RecordingKeyring(
        store,
        provider=provider,
        spill=DirectoryRecordingKeyStore(tmp_path / "spill"),
        on_escrow=spilled.append,
    )
    rk_id = keyring.prepare("recording-A")
    assert [event.rk_id for event in spilled] == [rk_id]
    assert f"cannot store recording key {rk_id} in {tiny_filesystem}" in spilled[0].reason
    assert spilled[0].reason.endswith("disk full")
    assert [p.stem for p in (tmp_path / "spill").rglob("rk-*.json")] == [rk_id]

    refusing = RecordingKeyring(store, provider=provider, spill=full_spill)
    with pytest.raises(KeyProviderError) as caught:
        refusing.prepare("recording-B")
    message = str(caught.value)
    assert "key store and local escrow spill both failed" in message
    assert message.count("disk full") == 2
    assert f"{tiny_filesystem}/spill" in message
    assert [p for p in tiny_filesystem.rglob("*") if not p.is_dir()] == [filler]
