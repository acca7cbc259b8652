"""Key providers: one ``KeyProvider`` seam, several key-encryption-key backends."""

from __future__ import annotations

from recorder.crypto.keys.base import DataKey as DataKey
from recorder.crypto.keys.base import KeyContext as KeyContext
from recorder.crypto.keys.base import KeyProvider as KeyProvider
from recorder.crypto.keys.base import KeyUnwrapper as KeyUnwrapper
from recorder.crypto.keys.base import new_data_key_async as new_data_key_async
from recorder.crypto.keys.base import unwrap_async as unwrap_async
from recorder.crypto.keys.fallback import FallbackAlert as FallbackAlert
from recorder.crypto.keys.fallback import FallbackKeyProvider as FallbackKeyProvider
from recorder.crypto.keys.kms import KmsKeyProvider as KmsKeyProvider
from recorder.crypto.keys.kms import make_kms_client as make_kms_client
from recorder.crypto.keys.local import LocalKeyProvider as LocalKeyProvider
from recorder.crypto.keys.x25519 import X25519PublicKeyProvider as X25519PublicKeyProvider
from recorder.crypto.keys.x25519 import X25519Unwrapper as X25519Unwrapper
from recorder.crypto.keys.x25519 import generate_x25519_keypair as generate_x25519_keypair

__all__ = [
    "DataKey",
    "FallbackAlert",
    "FallbackKeyProvider",
    "KeyContext",
    "KeyProvider",
    "KeyUnwrapper",
    "KmsKeyProvider",
    "LocalKeyProvider",
    "X25519PublicKeyProvider",
    "X25519Unwrapper",
    "generate_x25519_keypair",
    "make_kms_client",
    "new_data_key_async",
    "unwrap_async",
]
