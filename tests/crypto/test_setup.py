"""build_keyring: configuration to a working keyring, for each mode."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from recorder.crypto import KeyringSettings, build_keyring, recover_directory_async
from recorder.crypto.keys import FallbackAlert, generate_x25519_keypair, make_kms_client
from recorder.crypto.reader import iter_plaintext
from recorder.crypto.recovery import RecoveryReport
from recorder.crypto.setup import init_local_keys, rotate_local_key
from recorder.crypto.writer import SpoolSinkFactory
from recorder.errors import ConfigError, DecryptNotPermitted

from .conftest import make_identity, write_segment


def _round_trip(
    tmp_path: Path, writer_settings: KeyringSettings, reader_settings: KeyringSettings
) -> None:
    factory = SpoolSinkFactory(tmp_path / "spool", build_keyring(writer_settings), chunk_size=64)
    body = os.urandom(700)
    sealed = write_segment(factory, make_identity(), body, prologue=b"WAV!")
    assert sealed.path is not None
    assert b"".join(iter_plaintext(sealed.path, build_keyring(reader_settings))) == b"WAV!" + body


def test_local_mode(tmp_path: Path) -> None:
    settings = KeyringSettings(recording_key_dir=tmp_path / "rk", local_key_dir=tmp_path / "kek")
    _round_trip(tmp_path, settings, settings)
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        init_local_keys(tmp_path / "kek")
    first = init_local_keys(tmp_path / "kek2")
    assert (tmp_path / "kek2" / "current").stat().st_mode & 0o077 == 0
    assert rotate_local_key(tmp_path / "kek2") != first


async def test_kms_mode(tmp_path: Path, moto_endpoint: str) -> None:
    client = make_kms_client(region="us-east-1", endpoint_url=moto_endpoint)
    with trio.fail_after(30):
        created = await trio.to_thread.run_sync(client.create_key)
        settings = KeyringSettings(
            recording_key_dir=tmp_path / "rk",
            mode="kms",
            kms_key_id=created["KeyMetadata"]["KeyId"],
            kms_endpoint_url=moto_endpoint,
        )
        await trio.to_thread.run_sync(_round_trip, tmp_path, settings, settings)


def test_encrypt_only_mode_reads_only_with_the_private_key(tmp_path: Path) -> None:
    private, public = tmp_path / "k", tmp_path / "k.pub"
    generate_x25519_keypair(private, public)
    host = KeyringSettings(
        recording_key_dir=tmp_path / "rk", mode="encrypt-only", public_key_path=public
    )
    with pytest.raises(DecryptNotPermitted):
        _round_trip(tmp_path / "a", host, host)
    workstation = KeyringSettings(
        recording_key_dir=tmp_path / "rk",
        mode="encrypt-only",
        public_key_path=public,
        private_key_paths=(private,),
    )
    _round_trip(tmp_path / "b", host, workstation)


async def test_escrow_is_wired_as_fallback(tmp_path: Path) -> None:
    private, public = tmp_path / "escrow", tmp_path / "escrow.pub"
    generate_x25519_keypair(private, public)
    alerts: list[FallbackAlert] = []
    settings = KeyringSettings(
        recording_key_dir=tmp_path / "rk",
        mode="kms",
        kms_key_id="alias/none",
        kms_endpoint_url="http://127.0.0.1:9",  # discard port: nothing answers
        escrow_public_key_path=public,
    )
    keyring = build_keyring(settings, on_fallback=alerts.append)
    with trio.fail_after(30):
        rk_id = await keyring.prepare_async("recording")
    assert len(alerts) == 1
    assert rk_id.startswith("rk-")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mode": "local"}, "local_key_dir"),
        ({"mode": "kms"}, "kms_key_id"),
        ({"mode": "encrypt-only"}, "public_key_path"),
        ({"mode": "other"}, "unknown mode"),
    ],
)
def test_incomplete_settings_are_config_errors(
    tmp_path: Path, settings: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        build_keyring(KeyringSettings(recording_key_dir=tmp_path / "rk", **settings))  # type: ignore[arg-type]


async def test_recover_directory_async(tmp_path: Path) -> None:
    settings = KeyringSettings(recording_key_dir=tmp_path / "rk", local_key_dir=tmp_path / "kek")
    keyring = build_keyring(settings)
    factory = SpoolSinkFactory(tmp_path / "spool", keyring, chunk_size=64)
    sink = factory.open(make_identity())
    sink.write(b"abc" * 100)
    sink.checkpoint()
    os.close(sink._fd)  # the writer died
    with trio.fail_after(20):
        (report,) = await recover_directory_async(factory.directory, keyring)
    assert isinstance(report, RecoveryReport)
    assert report.body_bytes_recovered == 300
