"""Encrypt-only mode: the recorder host holds an X25519 *public* key and cannot decrypt.

Wrap (HPKE-like, ephemeral-static): a fresh ephemeral X25519 key per wrapped key; the shared
secret goes through HKDF-SHA256 (salt = ephemeral public || recipient public) to an AES-256-GCM
key that seals the data key, with the key id and the ``KeyContext`` as associated data::

    wrapped = version (1) || ephemeral public key (32) || nonce (12) || sealed key + tag (48)

The same construction wraps to the pre-provisioned escrow key of ``FallbackKeyProvider``. The
private key lives only on the officers' workstation, in ``X25519Unwrapper``.
"""

from __future__ import annotations

import hashlib
import secrets
import stat
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from recorder.crypto.keys.base import DataKey, KeyContext
from recorder.durable import write_new_file
from recorder.errors import ConfigError, DecryptNotPermitted, KeyMismatch, KeyNotFound

KEY_ID_PREFIX: Final = "x25519:"
_VERSION: Final = 1
_WRAPPED_SIZE: Final = 1 + 32 + 12 + 32 + 16
_INFO: Final = b"rtms-recorder/x25519-wrap/v1"


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def x25519_key_id(public_key: X25519PublicKey) -> str:
    """``x25519:`` + the first 16 bytes of SHA-256 of the raw public key, hex."""
    return KEY_ID_PREFIX + hashlib.sha256(_raw_public(public_key)).hexdigest()[:32]


def _wrap_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=_INFO)
    return AESGCM(hkdf.derive(shared))


def _aad(key_id: str, context: KeyContext) -> bytes:
    return key_id.encode("utf-8") + b"\x00" + context.aad()


class X25519PublicKeyProvider:
    """Wraps to a public key. ``unwrap`` always raises ``DecryptNotPermitted``."""

    def __init__(self, public_key: X25519PublicKey) -> None:
        self._public = public_key
        self._raw = _raw_public(public_key)
        self.key_id = x25519_key_id(public_key)

    @classmethod
    def from_file(cls, path: Path | str) -> X25519PublicKeyProvider:
        try:
            raw = Path(path).read_bytes()
            return cls(X25519PublicKey.from_public_bytes(raw))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load X25519 public key {path}: {exc}") from exc

    def handles(self, key_id: str) -> bool:
        return key_id == self.key_id

    @property
    def current_key_id(self) -> str:
        return self.key_id

    def new_data_key(self, context: KeyContext) -> DataKey:
        return self.wrap_key(secrets.token_bytes(32), context)

    def wrap_key(self, plaintext: bytes, context: KeyContext) -> DataKey:
        ephemeral = X25519PrivateKey.generate()
        ephemeral_raw = _raw_public(ephemeral.public_key())
        aead = _wrap_key(ephemeral.exchange(self._public), ephemeral_raw, self._raw)
        nonce = secrets.token_bytes(12)
        sealed = aead.encrypt(nonce, plaintext, _aad(self.key_id, context))
        wrapped = bytes((_VERSION,)) + ephemeral_raw + nonce + sealed
        return DataKey(plaintext=plaintext, wrapped=wrapped, key_id=self.key_id)

    def unwrap(self, wrapped: bytes, key_id: str, context: KeyContext) -> bytes:
        raise DecryptNotPermitted(
            f"this host holds only the public key {key_id} (encrypt-only mode) and cannot "
            f"decrypt recording {context.recording_id!r}; decrypt on a workstation that holds "
            "the private key"
        )


class X25519Unwrapper:
    """The private half, for the officers' workstation (or the escrow custodian)."""

    def __init__(self, private_key: X25519PrivateKey) -> None:
        self._private = private_key
        self._raw_public = _raw_public(private_key.public_key())
        self.key_id = x25519_key_id(private_key.public_key())

    @classmethod
    def from_file(cls, path: Path | str) -> X25519Unwrapper:
        path = Path(path)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                raise ConfigError(f"private key {path} has mode {mode:04o}; expected 0600")
            return cls(X25519PrivateKey.from_private_bytes(path.read_bytes()))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load X25519 private key {path}: {exc}") from exc

    @property
    def public_key(self) -> X25519PublicKey:
        return self._private.public_key()

    def handles(self, key_id: str) -> bool:
        return key_id == self.key_id

    def unwrap(self, wrapped: bytes, key_id: str, context: KeyContext) -> bytes:
        if key_id != self.key_id:
            raise KeyNotFound(f"this private key is {self.key_id}, not {key_id}")
        if len(wrapped) != _WRAPPED_SIZE or wrapped[0] != _VERSION:
            raise KeyMismatch(f"wrapped key for {key_id} is malformed ({len(wrapped)} bytes)")
        ephemeral_raw, nonce, sealed = wrapped[1:33], wrapped[33:45], wrapped[45:]
        try:
            shared = self._private.exchange(X25519PublicKey.from_public_bytes(ephemeral_raw))
            aead = _wrap_key(shared, ephemeral_raw, self._raw_public)
            return aead.decrypt(nonce, sealed, _aad(key_id, context))
        except (InvalidTag, ValueError) as exc:
            raise KeyMismatch(
                f"wrapped key does not open under {key_id} for recording "
                f"{context.recording_id!r} (wrong key, wrong recording, or altered)"
            ) from exc


def generate_x25519_keypair(private_path: Path | str, public_path: Path | str) -> str:
    """Write a new key pair (raw 32-byte files; the private one 0600). Returns the key id.

    Run on the workstation that will decrypt; copy only the public file to recorder hosts.
    """
    private = X25519PrivateKey.generate()
    raw_private = private.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    private_path = Path(private_path)
    write_new_file(private_path, raw_private, mode=0o600)
    try:
        write_new_file(Path(public_path), _raw_public(private.public_key()), mode=0o644)
    except BaseException:
        # Nobody holds its public half yet, so nothing was ever sealed to it: the pair is made
        # whole or not at all.
        private_path.unlink(missing_ok=True)
        raise
    return x25519_key_id(private.public_key())
