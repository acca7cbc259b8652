"""Encryption at rest: the chunked streaming AEAD file format, key providers, crash recovery.

The format is documented in ``docs/encrypted-format.md``. Producers of evidence only see
``SpoolSinkFactory`` (a ``recorder.sink.SinkFactory``); officers' tools use the reader.
"""

from __future__ import annotations

from recorder.crypto._format import SegmentHeader as SegmentHeader
from recorder.crypto.keyring import DirectoryRecordingKeyStore as DirectoryRecordingKeyStore
from recorder.crypto.keyring import RecordingKeyring as RecordingKeyring
from recorder.crypto.keyring import RecordingKeyStore as RecordingKeyStore
from recorder.crypto.keyring import SegmentKeyOpener as SegmentKeyOpener
from recorder.crypto.keyring import SegmentKeySource as SegmentKeySource
from recorder.crypto.reader import SegmentDigest as SegmentDigest
from recorder.crypto.reader import SegmentReader as SegmentReader
from recorder.crypto.reader import digest_segment as digest_segment
from recorder.crypto.reader import iter_plaintext as iter_plaintext
from recorder.crypto.reader import read_header as read_header
from recorder.crypto.recovery import PrologueStatus as PrologueStatus
from recorder.crypto.recovery import RecoveryFailure as RecoveryFailure
from recorder.crypto.recovery import RecoveryReport as RecoveryReport
from recorder.crypto.recovery import WriterStillAlive as WriterStillAlive
from recorder.crypto.recovery import recover as recover
from recorder.crypto.recovery import recover_directory as recover_directory
from recorder.crypto.recovery import recover_directory_async as recover_directory_async
from recorder.crypto.setup import KeyringSettings as KeyringSettings
from recorder.crypto.setup import build_keyring as build_keyring
from recorder.crypto.writer import EncryptedSegmentWriter as EncryptedSegmentWriter
from recorder.crypto.writer import SpoolSinkFactory as SpoolSinkFactory
from recorder.crypto.writer import segment_file_name as segment_file_name

__all__ = [
    "DirectoryRecordingKeyStore",
    "EncryptedSegmentWriter",
    "KeyringSettings",
    "PrologueStatus",
    "RecordingKeyStore",
    "RecordingKeyring",
    "RecoveryFailure",
    "RecoveryReport",
    "SegmentDigest",
    "SegmentHeader",
    "SegmentKeyOpener",
    "SegmentKeySource",
    "SegmentReader",
    "SpoolSinkFactory",
    "WriterStillAlive",
    "build_keyring",
    "digest_segment",
    "iter_plaintext",
    "read_header",
    "recover",
    "recover_directory",
    "recover_directory_async",
    "segment_file_name",
]
