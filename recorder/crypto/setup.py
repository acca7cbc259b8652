"""Build a keyring from configuration: the one place that knows which backend goes where.

The lead's configuration loader fills a ``KeyringSettings``; the service calls
``build_keyring`` once at start. Three modes:

* ``local``: a KEK in ``local_key_dir`` (created on first run), the embedded default;
* ``kms``: an AWS KMS key (``kms_key_id``), optionally with an escrow public key for outages;
* ``encrypt-only``: only an X25519 public key on this host (``public_key_path``).

``private_key_paths`` adds X25519 private keys for reading (the officers' workstation, or the
escrow custodian). ``escrow_public_key_path`` wraps the primary in ``FallbackKeyProvider``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from recorder.crypto.keyring import (
    DirectoryRecordingKeyStore,
    EscrowEvent,
    RecordingKeyring,
    RecordingKeyStore,
)
from recorder.crypto.keys.base import KeyContext, KeyProvider, KeyUnwrapper
from recorder.crypto.keys.fallback import FallbackAlert, FallbackKeyProvider
from recorder.crypto.keys.kms import KmsKeyProvider, make_kms_client
from recorder.crypto.keys.local import LocalKeyProvider
from recorder.crypto.keys.x25519 import X25519PublicKeyProvider, X25519Unwrapper
from recorder.errors import ConfigError

KeyMode = Literal["local", "kms", "encrypt-only"]


@dataclass(frozen=True, slots=True)
class KeyringSettings:
    #: Wrapped recording keys: separate from the spool and the audio; back it up.
    recording_key_dir: Path
    mode: KeyMode = "local"
    local_key_dir: Path | None = None
    kms_key_id: str | None = None
    kms_region: str = "us-east-1"
    kms_endpoint_url: str | None = None
    #: encrypt-only: the X25519 public key (raw 32 bytes) recording keys are wrapped to.
    public_key_path: Path | None = None
    #: Fallback when the primary key service is unreachable (raw 32-byte X25519 public key).
    escrow_public_key_path: Path | None = None
    #: X25519 private keys this host may read with (workstation / escrow custodian only).
    private_key_paths: tuple[Path, ...] = ()
    #: Where keys the key store could not take are kept durably (escrow spill); None: nowhere.
    spill_dir: Path | None = None
    #: False for ``recorder check``: a missing local KEK is reported, not created.
    create_local_kek: bool = True


def _primary(settings: KeyringSettings) -> KeyProvider:
    if settings.mode == "local":
        if settings.local_key_dir is None:
            raise ConfigError("keys: mode 'local' needs local_key_dir")
        return LocalKeyProvider(settings.local_key_dir, create=settings.create_local_kek)
    if settings.mode == "kms":
        if not settings.kms_key_id:
            raise ConfigError("keys: mode 'kms' needs kms_key_id (key id, alias or ARN)")
        client = make_kms_client(region=settings.kms_region, endpoint_url=settings.kms_endpoint_url)
        return KmsKeyProvider(settings.kms_key_id, client=client)
    if settings.mode == "encrypt-only":
        if settings.public_key_path is None:
            raise ConfigError("keys: mode 'encrypt-only' needs public_key_path")
        return X25519PublicKeyProvider.from_file(settings.public_key_path)
    raise ConfigError(f"keys: unknown mode {settings.mode!r} (local, kms or encrypt-only)")


def build_provider(
    settings: KeyringSettings,
    *,
    on_fallback: Callable[[FallbackAlert], None] | None = None,
) -> KeyProvider:
    """The configured KEK backend, wrapped in the escrow fallback when one is configured."""
    provider = _primary(settings)
    if settings.escrow_public_key_path is not None:
        escrow = X25519PublicKeyProvider.from_file(settings.escrow_public_key_path)
        provider = FallbackKeyProvider(provider, escrow, on_fallback=on_fallback)
    return provider


def build_keyring(
    settings: KeyringSettings,
    *,
    store: RecordingKeyStore | None = None,
    on_fallback: Callable[[FallbackAlert], None] | None = None,
    on_escrow: Callable[[EscrowEvent], None] | None = None,
) -> RecordingKeyring:
    """The keyring the writer, the reader and recovery use, as configured.

    ``store`` is the catalog's key store in the service; without it keys go to the directory
    ``recording_key_dir`` (tests, and reading keys an older version kept there).
    """
    provider = build_provider(settings, on_fallback=on_fallback)
    unwrappers: list[KeyUnwrapper] = [
        X25519Unwrapper.from_file(p) for p in settings.private_key_paths
    ]
    escrow = provider.escrow if isinstance(provider, FallbackKeyProvider) else None
    return RecordingKeyring(
        store if store is not None else DirectoryRecordingKeyStore(settings.recording_key_dir),
        provider=provider,
        unwrappers=unwrappers,
        spill=None
        if settings.spill_dir is None
        else DirectoryRecordingKeyStore(settings.spill_dir),
        escrow=escrow,
        on_escrow=on_escrow,
    )


def init_local_keys(key_dir: Path) -> str:
    """Create the local KEK (``recorder keys init``); refuses when one exists. Returns its id."""
    if (Path(key_dir) / "current").exists():
        raise ConfigError(f"refusing to overwrite: {key_dir} already holds a local KEK")
    return LocalKeyProvider(key_dir).current_key_id


def rotate_local_key(key_dir: Path) -> str:
    """New current local KEK; old ones stay for reading (``recorder keys rotate``)."""
    return LocalKeyProvider(key_dir).rotate()


#: The recording id of the readiness probe's throw-away data key (KMS logs show it as such).
READINESS_PROBE_ID = "readiness-probe"


def key_service_probe(settings: KeyringSettings) -> Callable[[], None]:
    """A blocking readiness probe (``/readyz`` check ``keys``): the configured *primary* key
    provider wraps a throw-away data key, the same call (and IAM permission) a new recording
    needs. It never goes through the escrow fallback: a probe is not a recording, and falling
    back would both hide the outage and count a fallback that did not happen.
    """
    provider = _primary(settings)
    context = KeyContext(recording_id=READINESS_PROBE_ID, purpose="readiness-probe")

    def probe() -> None:
        provider.new_data_key(context)  # the plaintext key is dropped unused

    return probe
