"""AWS KMS as the key-encryption key: GenerateDataKey / Decrypt with an encryption context.

The encryption context names the recording, so CloudTrail shows which recording every key use
was for, and a wrapped key only decrypts for the recording it was made for. An encrypt-only IAM
policy (GenerateDataKey without Decrypt) turns Decrypt into ``DecryptNotPermitted`` here.

boto3 calls block: async code calls ``new_data_key_async`` / ``unwrap_async`` from
``recorder.crypto.keys.base`` (worker threads with a limiter), or the keyring's
``prepare_async``. Every botocore error is translated here; none escapes this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from recorder.crypto.keys.base import DataKey, KeyContext
from recorder.errors import (
    ConfigError,
    DecryptNotPermitted,
    KeyMismatch,
    KeyNotFound,
    KeyProviderError,
    KeyUnavailable,
)

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

KEY_ID_PREFIX: Final = "kms:"

#: Codes that mean "try again later": audio must not wait on them (see FallbackKeyProvider).
_RETRYABLE: Final = frozenset(
    {
        "ThrottlingException",
        "KMSInternalException",
        "DependencyTimeoutException",
        "KeyUnavailableException",
        "ServiceUnavailable",
        "InternalFailure",
    }
)


def make_kms_client(
    *,
    region: str,
    endpoint_url: str | None = None,
    connect_timeout_s: float = 3.0,
    read_timeout_s: float = 5.0,
    max_attempts: int = 3,
) -> KMSClient:
    """A KMS client with short timeouts: a stalled key service must fail fast, not hang."""
    config = Config(
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        retries={"max_attempts": max_attempts, "mode": "standard"},
    )
    return boto3.client("kms", region_name=region, endpoint_url=endpoint_url, config=config)


class KmsKeyProvider:
    """Data keys from one KMS key (id, alias or ARN). Thread-safe (boto3 clients are)."""

    def __init__(self, kms_key_id: str, *, client: KMSClient) -> None:
        self._kms_key_id = kms_key_id
        self._client = client
        self._arn: str | None = None

    @property
    def current_key_id(self) -> str:
        """``kms:`` + the key's ARN (an alias is resolved once, with DescribeKey)."""
        if self._arn is None:
            try:
                response = self._client.describe_key(KeyId=self._kms_key_id)
            except (ClientError, BotoCoreError) as exc:
                raise _translate(exc, "DescribeKey", KEY_ID_PREFIX + self._kms_key_id) from exc
            self._arn = response["KeyMetadata"]["Arn"]
        return KEY_ID_PREFIX + self._arn

    def wrap_key(self, plaintext: bytes, context: KeyContext) -> DataKey:
        """KMS Encrypt (an encrypt-only role may have it: it never reveals a key)."""
        try:
            response = self._client.encrypt(
                KeyId=self._kms_key_id,
                Plaintext=plaintext,
                EncryptionContext=context.encryption_context(),
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "Encrypt", KEY_ID_PREFIX + self._kms_key_id) from exc
        return DataKey(
            plaintext=plaintext,
            wrapped=response["CiphertextBlob"],
            key_id=KEY_ID_PREFIX + response["KeyId"],
        )

    def handles(self, key_id: str) -> bool:
        return key_id.startswith(KEY_ID_PREFIX)

    def new_data_key(self, context: KeyContext) -> DataKey:
        try:
            response = self._client.generate_data_key(
                KeyId=self._kms_key_id,
                KeySpec="AES_256",
                EncryptionContext=context.encryption_context(),
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "GenerateDataKey", KEY_ID_PREFIX + self._kms_key_id) from exc
        return DataKey(
            plaintext=response["Plaintext"],
            wrapped=response["CiphertextBlob"],
            key_id=KEY_ID_PREFIX + response["KeyId"],
        )

    def unwrap(self, wrapped: bytes, key_id: str, context: KeyContext) -> bytes:
        if not self.handles(key_id):
            raise KeyNotFound(f"key id {key_id!r} is not a KMS key id")
        try:
            response = self._client.decrypt(
                CiphertextBlob=wrapped,
                KeyId=key_id.removeprefix(KEY_ID_PREFIX),
                EncryptionContext=context.encryption_context(),
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "Decrypt", key_id, context) from exc
        return response["Plaintext"]


def _translate(
    exc: ClientError | BotoCoreError,
    operation: str,
    key_id: str,
    context: KeyContext | None = None,
) -> KeyProviderError | ConfigError:
    if isinstance(exc, NoCredentialsError):
        return ConfigError(f"KMS {operation} for {key_id}: no AWS credentials configured")
    if isinstance(exc, BotoCoreError):
        # Connection refused, DNS, timeouts: the service is unreachable right now.
        return KeyUnavailable(f"KMS {operation} for {key_id}: key service unreachable ({exc})")
    code = exc.response.get("Error", {}).get("Code", "")
    if code in _RETRYABLE:
        return KeyUnavailable(f"KMS {operation} for {key_id}: {code}, retry later")
    if code == "NotFoundException":
        return KeyNotFound(f"KMS key {key_id} not found")
    if code in {"InvalidCiphertextException", "IncorrectKeyException"}:
        recording = f" for recording {context.recording_id!r}" if context else ""
        return KeyMismatch(
            f"KMS {operation}: wrapped key does not open under {key_id}{recording} "
            "(wrong key, wrong recording, or altered)"
        )
    if code == "AccessDeniedException" and operation == "Decrypt":
        return DecryptNotPermitted(
            f"KMS denied Decrypt with {key_id}: this host has encrypt-only rights; "
            "decrypt on a workstation allowed to use the key"
        )
    if code in {"DisabledException", "KMSInvalidStateException"}:
        return KeyNotFound(f"KMS key {key_id} is disabled or pending deletion ({code})")
    return KeyProviderError(f"KMS {operation} for {key_id} failed: {code or exc}")
