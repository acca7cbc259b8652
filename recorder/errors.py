"""The one exception tree of rtms-recorder.

Every error that crosses a module boundary is one of these. Lower-level errors (trio-websocket,
boto3, PyAV, psycopg, cryptography) are translated at the module that calls the library, with
``raise X(...) from exc``, so that callers never see a library's own exception types.

::

    RecorderError (exit_code 2)
    ├── ConfigError (3) ............ bad or missing configuration, secret or credential
    ├── ProtocolError .............. the RTMS conversation went wrong
    │   ├── LocalProtocolError ..... *we* tried something the protocol state forbids
    │   ├── RemoteProtocolError .... the peer sent something malformed or out of order
    │   │   └── UnsupportedProtocolVersion  an RTMS V2 answer (Protobuf, SRT, event_code)
    │   └── HandshakeRejected ...... the server answered a handshake with a non-zero status
    ├── WebhookError ............... a webhook we refuse (answered 4xx, no side effect)
    │   ├── WebhookSignatureError .. missing, forged or stale ``x-zm-signature``
    │   └── WebhookPayloadError .... not JSON, or required fields missing
    ├── TransportError ............. network I/O failed
    │   ├── ConnectTimeout
    │   ├── ConnectionLost
    │   │   └── UpgradeRefused ..... the HTTP upgrade was answered with an error status
    │   └── UrlNotAllowed .......... an RTMS URL outside the allowed scheme/host list
    ├── DecodeError ................ one audio packet could not be decoded (becomes a gap)
    ├── StorageError ............... the spool, a local file or the object store failed
    │   ├── StoreUnavailable ....... the object store cannot be reached right now (retry)
    │   ├── ObjectLocked ........... refused: retention lock or legal hold still applies
    │   ├── ObjectNotFound ......... no object (or version) under that key
    │   ├── ObjectExists ........... a different object already exists under that key
    │   ├── StoreMisconfigured ..... bucket Object Lock / versioning differ from policy
    │   ├── UploadFailed
    │   ├── DiskFull
    │   ├── BundleWriteFailed ...... an export bundle's file could not be written (names it)
    │   └── SpoolJobUnreadable ..... one spool job file cannot be parsed (that job is set aside)
    ├── CatalogError ............... the catalog could not do its job (never "store down")
    ├── LeaseLost .................. another process owns the stream now (a verdict, not a fault)
    │   └── LeaseExpired ........... not renewed in time: this process fenced itself
    ├── KeyProviderError ........... key material missing, unreachable or not allowed
    │   ├── KeyUnavailable ......... the key service cannot be reached right now (retry)
    │   ├── DecryptNotPermitted .... this host holds an encrypt-only key
    │   ├── KeyNotFound ............ no key with this id here (the message names it)
    │   │   └── KeyDestroyed ....... the recording's key was crypto-shredded
    │   └── KeyMismatch ............ a wrapped key does not open under this key / context
    ├── IntegrityError (90) ........ evidence failed verification: never retried silently
    │   ├── DigestMismatch (91)
    │   ├── DecryptionFailed (92) .. a chunk failed authentication
    │   ├── TruncatedFile (93) ..... the final chunk is missing
    │   ├── ChunkOrderError (94) ... chunks reordered, duplicated or spliced from another file
    │   ├── HeaderMismatch (95) .... header does not belong to this key / recording
    │   ├── AuditLogTampered (96) .. the audit log disagrees with its signed tree heads
    │   ├── VerificationFailed (76)  ``recorder verify``: several failure classes, or another error
    │   │   ├── ObjectTampered (77) .. stored bytes, a chunk's tag or the plaintext hash differ
    │   │   ├── ObjectMissing (78) ... the cataloged object or version is not in the store
    │   │   ├── ObjectTruncated (79) . the stored object is shorter than the catalog's size
    │   │   ├── VersionSwapped (80) .. another version was written under the evidence key
    │   │   ├── LockMismatch (81) .... Object Lock mode or retain-until differs from the catalog
    │   │   └── HoldDrift (82) ....... a version's legal hold differs from the catalog's holds
    │   └── BundleError ............ an export bundle failed ``recorder verify-export``
    │       ├── BundleSignatureInvalid (84)  manifest signature wrong (or another key's)
    │       ├── BundleFileTampered (85) .... a file's bytes differ from the manifest
    │       ├── BundleFileMissing (86) ..... a file the manifest lists is not there
    │       └── BundleInconsistent (87) .... manifest malformed, contradicts itself or its files
    └── PolicyError (4)
        ├── PolicyParseError ....... a policies/*.toml file is invalid
        ├── LegalHoldViolation ..... an action would break a legal hold
        │   └── HoldActive ......... refused: the recording (or its key) is under legal hold
        └── RetentionRunBusy (75) .. another retention run holds the catalog's retention lock

Exit codes follow borg's ranges: 0 success, 1 warning, 2 generic error, 3-99 specific errors,
128+N killed by signal N.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


class RecorderError(Exception):
    """Base class of every error rtms-recorder raises on purpose."""

    exit_code: int = 2


class ConfigError(RecorderError):
    exit_code = 3


# --- RTMS protocol -------------------------------------------------------------------------


class ProtocolError(RecorderError):
    pass


class LocalProtocolError(ProtocolError):
    pass


class RemoteProtocolError(ProtocolError):
    pass


class UnsupportedProtocolVersion(RemoteProtocolError):
    """The peer answered in RTMS V2 (rtms-protocol §16): a binary frame that is not JSON
    (Protobuf), a handshake answer with ``protocol_version`` 2 or V2-only fields
    (``srt_passphrase``, ``srt_pbkey_length``), or ``event_code`` without ``event_type``.

    V2 is not public; it is refused by name, never misparsed as V1. ``explicit`` is False when
    the frame merely is not JSON (Protobuf, or garbage): the client retries that a few times
    before it gives up, where an explicit V2 answer is final at once.
    """

    def __init__(self, message: str, *, explicit: bool = True) -> None:
        super().__init__(message)
        self.explicit = explicit


class HandshakeRejected(ProtocolError):
    """The server answered a handshake with ``status_code != 0``.

    ``status_code`` is kept verbatim: two incompatible status tables exist (rtms-protocol §6.14),
    so the meaning is decided from ``reason`` text and repetition, not from the number alone.
    """

    def __init__(self, status_code: int | None, reason: str) -> None:
        super().__init__(f"handshake rejected: status_code={status_code} reason={reason!r}")
        self.status_code = status_code
        self.reason = reason


# --- Webhooks --------------------------------------------------------------------------------


class WebhookError(RecorderError):
    #: HTTP status the ingress answers with.
    http_status: int = 400
    #: Short fixed reason (``stale_timestamp``, ``bad_signature``, ...): a metrics label, never
    #: an id or a value from the request.
    reason: str = "invalid"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class WebhookSignatureError(WebhookError):
    http_status = 401


class WebhookPayloadError(WebhookError):
    http_status = 400


# --- Transport -------------------------------------------------------------------------------


class TransportError(RecorderError):
    pass


class ConnectTimeout(TransportError):
    pass


class ConnectionLost(TransportError):
    pass


class UrlNotAllowed(TransportError):
    pass


class UpgradeRefused(ConnectionLost):
    """The server answered the WebSocket upgrade with an HTTP error (e.g. 404: no such stream)."""

    def __init__(self, message: str, http_status: int) -> None:
        super().__init__(message)
        self.http_status = http_status


# --- Audio -----------------------------------------------------------------------------------


class DecodeError(RecorderError):
    pass


# --- Storage ---------------------------------------------------------------------------------


class StorageError(RecorderError):
    @classmethod
    def from_os_error(cls, exc: OSError, what: str, path: Path) -> StorageError:
        """``DiskFull`` for a full disk or quota, else ``StorageError``: "WHAT PATH: reason"."""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return DiskFull(f"{what} {path}: disk full")
        return StorageError(f"{what} {path}: {exc.strerror or exc}")


class StoreUnavailable(StorageError):
    pass


class ObjectLocked(StorageError):
    pass


class ObjectNotFound(StorageError):
    pass


class ObjectExists(StorageError):
    """Refused: objects are never overwritten with different content."""


class StoreMisconfigured(StorageError):
    exit_code = 5


class UploadFailed(StorageError):
    pass


class DiskFull(StorageError):
    pass


class BundleWriteFailed(StorageError):
    """An export bundle's file could not be written (a full disk, a file size limit, an I/O
    error): the message names the file being written, not the stored object being read."""

    @classmethod
    def of(cls, path: Path, exc: OSError) -> BundleWriteFailed:
        return cls(f"{path}: cannot write: {exc.strerror or exc}")


class SpoolJobUnreadable(StorageError):
    """One spool job file is not a job this recorder can read: it is that job's problem only."""


# --- Catalog and ownership -------------------------------------------------------------------
# Not ``StorageError``s: a catalog outage, a refused catalog write and a lost lease each call
# for their own response, and none of them means the object store is down.


class CatalogError(RecorderError):
    pass


class LeaseLost(RecorderError):
    pass


class LeaseExpired(LeaseLost):
    """This process could not renew its lease in time and fenced itself (stopped recording),
    before another process could take the stream over: not a takeover, a lost catalog."""


# --- Keys ------------------------------------------------------------------------------------


class KeyProviderError(RecorderError):
    exit_code = 6


class KeyUnavailable(KeyProviderError):
    pass


class DecryptNotPermitted(KeyProviderError):
    pass


class KeyNotFound(KeyProviderError):
    pass


class KeyDestroyed(KeyNotFound):
    pass


class KeyMismatch(KeyProviderError):
    pass


# --- Integrity -------------------------------------------------------------------------------


class IntegrityError(RecorderError):
    exit_code = 90


class DigestMismatch(IntegrityError):
    exit_code = 91


class DecryptionFailed(IntegrityError):
    exit_code = 92


class TruncatedFile(IntegrityError):
    exit_code = 93


class ChunkOrderError(IntegrityError):
    exit_code = 94


class HeaderMismatch(IntegrityError):
    exit_code = 95


class AuditLogTampered(IntegrityError):
    exit_code = 96


class VerificationFailed(IntegrityError):
    """``recorder verify`` found problems of more than one class (or an unclassified error)."""

    exit_code = 76


class ObjectTampered(VerificationFailed):
    exit_code = 77


class ObjectMissing(VerificationFailed):
    exit_code = 78


class ObjectTruncated(VerificationFailed):
    exit_code = 79


class VersionSwapped(VerificationFailed):
    exit_code = 80


class LockMismatch(VerificationFailed):
    exit_code = 81


class HoldDrift(VerificationFailed):
    exit_code = 82


class BundleError(IntegrityError):
    pass


class BundleSignatureInvalid(BundleError):
    exit_code = 84


class BundleFileTampered(BundleError):
    exit_code = 85


class BundleFileMissing(BundleError):
    exit_code = 86


class BundleInconsistent(BundleError):
    exit_code = 87


# --- Policy ----------------------------------------------------------------------------------


class PolicyError(RecorderError):
    exit_code = 4


class PolicyParseError(PolicyError):
    pass


class LegalHoldViolation(PolicyError):
    pass


class HoldActive(LegalHoldViolation):
    """Refused: a legal hold covers the recording (or evidence sealed under the key)."""


class RetentionRunBusy(PolicyError):
    #: EX_TEMPFAIL: the timer fires again; the run that holds the lock is doing the work.
    exit_code = 75


class ZoomApiError(RecorderError):
    """Zoom's REST API refused or failed a request. Carries Zoom's own code and message
    (``2308``, ``2310``...) and the HTTP status; never a token or secret."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class VideoError(RecorderError):
    """One video access unit could not be understood (not Annex-B H.264, a broken SPS...).

    The frame is left out of the MP4 and the hole is recorded as a gap; nothing else is lost.
    """
