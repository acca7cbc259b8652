"""Ed25519 signing of export manifests: the key pair, the detached signature, its check.

Rule: the private key lives outside the catalog in a 0600 file on the officer host (created once,
never overwritten); the public key is a raw 32-byte file anyone may hold. A bundle carries the
signature next to the manifest, with the key id (SHA-256 of the raw public key) so a verifier
can tell which key it needs before it tries.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from recorder.durable import write_new_file
from recorder.errors import ConfigError, StorageError

SIGNATURE_ALGORITHM: Final = "ed25519"
_RAW_SIZE: Final = 32


def key_id(public: Ed25519PublicKey) -> str:
    """``ed25519:`` and the first 16 hex digits of the SHA-256 of the raw public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def generate_signing_key(private_path: Path) -> str:
    """A new Ed25519 key in ``private_path`` (raw 32 bytes, 0600); returns its key id."""
    try:
        private_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        what = "cannot create the key directory"
        raise StorageError.from_os_error(exc, what, private_path.parent) from exc
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    write_new_file(private_path, raw, mode=0o600)
    return key_id(private.public_key())


def load_signing_key(private_path: Path) -> Ed25519PrivateKey:
    try:
        mode = os.stat(private_path).st_mode & 0o777
        raw = private_path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(
            f"no export signing key at {private_path}: run `recorder keys init --export-signing`"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read export signing key {private_path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise ConfigError(f"export signing key {private_path} is mode {mode:04o}; it must be 0600")
    if len(raw) != _RAW_SIZE:
        raise ConfigError(f"export signing key {private_path} is not a raw 32-byte Ed25519 key")
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_bytes(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read public key {path}: {exc.strerror}") from exc
    if len(raw) != _RAW_SIZE:
        raise ConfigError(f"{path} is not a raw 32-byte Ed25519 public key")
    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True, slots=True)
class DetachedSignature:
    algorithm: str
    key_id: str
    signature: bytes

    def to_json(self) -> bytes:
        body = {
            "algorithm": self.algorithm,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode("ascii"),
            "signed_file": "manifest.json",
        }
        return json.dumps(body, indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> DetachedSignature:
        """Raises ``ValueError`` naming what is wrong with the signature file."""
        body = json.loads(data)
        if not isinstance(body, dict):
            raise ValueError("the signature file is not a JSON object")
        algorithm, kid, sig = body.get("algorithm"), body.get("key_id"), body.get("signature")
        if algorithm != SIGNATURE_ALGORITHM:
            raise ValueError(f"unsupported signature algorithm {algorithm!r}")
        if not isinstance(kid, str) or not isinstance(sig, str):
            raise ValueError("the signature file lacks key_id or signature")
        raw = base64.b64decode(sig, validate=True)
        return cls(SIGNATURE_ALGORITHM, kid, raw)


def sign(private: Ed25519PrivateKey, message: bytes) -> DetachedSignature:
    return DetachedSignature(
        SIGNATURE_ALGORITHM, key_id(private.public_key()), private.sign(message)
    )


def signature_valid(public: Ed25519PublicKey, message: bytes, signature: DetachedSignature) -> bool:
    if signature.key_id != key_id(public):
        return False
    try:
        public.verify(signature.signature, message)
    except InvalidSignature:
        return False
    return True
