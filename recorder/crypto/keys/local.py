"""A key-encryption key (KEK) kept in a local directory: the embedded default.

Layout (directory mode 0700, files 0600; anything looser is refused, as ssh does)::

    <key_dir>/
      current             id of the KEK new keys are wrapped under
      keks/<kek-id>.key   32 random bytes each; rotated-out KEKs stay for decryption
      .lock               flock: first-run creation and rotation across worker processes

Wrapped key = version (1) || nonce (12) || AES-256-GCM(KEK, data key) (48); the associated data
is the key id plus the ``KeyContext``, so a wrapped key opens only for the recording it was
made for.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from recorder.crypto.keys.base import DataKey, KeyContext
from recorder.durable import make_durable_dir, write_durably
from recorder.errors import ConfigError, KeyMismatch, KeyNotFound, KeyProviderError

KEY_ID_PREFIX: Final = "local:"
_WRAP_VERSION: Final = 1
_NONCE_SIZE: Final = 12
_KEK_SIZE: Final = 32


def _check_private(path: Path, *, directory: bool) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        kind = "directory" if directory else "file"
        raise ConfigError(
            f"key {kind} {path} has mode {mode:04o}; refusing to use it "
            f"(expected {'0700' if directory else '0600'}, nobody else may read keys)"
        )


class LocalKeyProvider:
    """KEKs in a local directory, created on first use. Thread-safe for reads and wraps."""

    def __init__(self, key_dir: Path | str, *, create: bool = True) -> None:
        self._dir = Path(key_dir)
        self._keks: dict[str, AESGCM] = {}
        if not create:
            # ``recorder check`` and officers: read what is there, never make a key.
            if not self._dir.is_dir():
                raise KeyNotFound(f"no local key directory {self._dir} (run `recorder keys init`)")
            _check_private(self._dir, directory=True)
            if self._read_current() is None:
                raise KeyNotFound(
                    f"no local KEK in {self._dir} (run `recorder keys init`, or let "
                    "`recorder serve` create it on first start)"
                )
            return
        try:
            make_durable_dir(self._dir)
            _check_private(self._dir, directory=True)
            make_durable_dir(self._dir / "keks")
            _check_private(self._dir / "keks", directory=True)
            with self._locked():
                if self._read_current() is None:
                    self._create_kek()
        except OSError as exc:
            raise self._cannot_create(exc) from exc

    @property
    def key_dir(self) -> Path:
        return self._dir

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self._dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read_current(self) -> str | None:
        try:
            current = (self._dir / "current").read_text("ascii").strip()
        except FileNotFoundError:
            return None
        return current or None

    def _create_kek(self) -> str:
        kek_id = f"kek-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(4)}"
        write_durably(self._dir / "keks" / f"{kek_id}.key", secrets.token_bytes(_KEK_SIZE))
        write_durably(self._dir / "current", kek_id.encode("ascii") + b"\n")
        return kek_id

    def rotate(self) -> str:
        """Make a new current KEK; older KEKs stay for unwrapping. Returns the new key id."""
        try:
            with self._locked():
                return KEY_ID_PREFIX + self._create_kek()
        except OSError as exc:
            raise self._cannot_create(exc) from exc

    def _cannot_create(self, exc: OSError) -> KeyProviderError:
        # A KEK written without ``current`` naming it is never used: the next try makes another.
        return KeyProviderError(f"cannot create a local KEK in {self._dir}: {exc.strerror or exc}")

    @property
    def current_key_id(self) -> str:
        current = self._read_current()
        if current is None:
            raise KeyNotFound(f"key directory {self._dir} has no current KEK (file 'current')")
        return KEY_ID_PREFIX + current

    def key_ids(self) -> list[str]:
        """Every KEK id in the directory, oldest name first."""
        return sorted(KEY_ID_PREFIX + p.stem for p in (self._dir / "keks").glob("*.key"))

    def _kek(self, key_id: str) -> AESGCM:
        cached = self._keks.get(key_id)
        if cached is not None:
            return cached
        name = key_id.removeprefix(KEY_ID_PREFIX)
        if not name or "/" in name or name.startswith("."):
            raise KeyNotFound(f"malformed local key id {key_id!r}")
        path = self._dir / "keks" / f"{name}.key"
        try:
            _check_private(path, directory=False)
            material = path.read_bytes()
        except FileNotFoundError as exc:
            raise KeyNotFound(
                f"KEK {key_id} not found in key directory {self._dir} "
                f"(known: {', '.join(self.key_ids()) or 'none'})"
            ) from exc
        if len(material) != _KEK_SIZE:
            raise KeyProviderError(f"KEK file for {key_id} is {len(material)} bytes, expected 32")
        aead = AESGCM(material)
        self._keks[key_id] = aead
        return aead

    def handles(self, key_id: str) -> bool:
        return key_id.startswith(KEY_ID_PREFIX)

    def new_data_key(self, context: KeyContext) -> DataKey:
        return self.wrap_key(secrets.token_bytes(_KEK_SIZE), context)

    def wrap_key(self, plaintext: bytes, context: KeyContext) -> DataKey:
        key_id = self.current_key_id
        nonce = secrets.token_bytes(_NONCE_SIZE)
        sealed = self._kek(key_id).encrypt(nonce, plaintext, _aad(key_id, context))
        return DataKey(
            plaintext=plaintext, wrapped=bytes((_WRAP_VERSION,)) + nonce + sealed, key_id=key_id
        )

    def unwrap(self, wrapped: bytes, key_id: str, context: KeyContext) -> bytes:
        if not self.handles(key_id):
            raise KeyNotFound(f"key id {key_id!r} is not a local KEK id")
        kek = self._kek(key_id)
        if len(wrapped) != 1 + _NONCE_SIZE + _KEK_SIZE + 16 or wrapped[0] != _WRAP_VERSION:
            raise KeyMismatch(f"wrapped key for {key_id} is malformed ({len(wrapped)} bytes)")
        try:
            return kek.decrypt(
                wrapped[1 : 1 + _NONCE_SIZE], wrapped[1 + _NONCE_SIZE :], _aad(key_id, context)
            )
        except InvalidTag as exc:
            raise KeyMismatch(
                f"wrapped key does not open under {key_id} for recording "
                f"{context.recording_id!r} (wrong key, wrong recording, or altered)"
            ) from exc


def _aad(key_id: str, context: KeyContext) -> bytes:
    return key_id.encode("utf-8") + b"\x00" + context.aad()
