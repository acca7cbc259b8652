"""The key-less frame scan an encrypt-only host uses before shipping a file it cannot decrypt.

Whatever a crash or a bad disk did to the file, the scan either refuses the header (a clear
``RecorderError``) or reports a clean prefix that never claims more than was written, and an
officer holding the key recovers exactly that prefix.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.crypto.keyring import DirectoryRecordingKeyStore, RecordingKeyring
from recorder.crypto.keys.x25519 import (
    X25519PublicKeyProvider,
    X25519Unwrapper,
    generate_x25519_keypair,
)
from recorder.crypto.opaque import scan_opaque
from recorder.crypto.reader import iter_plaintext
from recorder.crypto.recovery import recover
from recorder.crypto.writer import SpoolSinkFactory
from recorder.errors import RecorderError

from .conftest import make_identity

BODY = bytes(range(256)) * 8  # 2 KiB: 32 chunks of 64 bytes


def dead_part(root: Path) -> tuple[Path, RecordingKeyring]:
    """A .part an encrypt-only writer left (checkpointed chunks), and the officer's keyring."""
    generate_x25519_keypair(root / "officer.key", root / "officer.pub")
    store = DirectoryRecordingKeyStore(root / "rk")
    host = RecordingKeyring(store, provider=X25519PublicKeyProvider.from_file(root / "officer.pub"))
    factory = SpoolSinkFactory(root / "spool", host, chunk_size=64)
    sink = factory.open(make_identity(), prologue_size=4)
    sink.write(BODY)
    sink.checkpoint()
    os.close(sink._fd)  # the process died; its lock went with it
    officer = RecordingKeyring(store, unwrappers=[X25519Unwrapper.from_file(root / "officer.key")])
    return sink.part_path, officer


def test_scan_counts_the_checkpointed_body_without_a_key(tmp_path: Path) -> None:
    part, officer = dead_part(tmp_path)
    scan = scan_opaque(part)
    assert (scan.body_bytes, scan.chunks, scan.sealed) == (len(BODY), len(BODY) // 64, False)
    assert scan.clean_end == part.stat().st_size
    report = recover(part, officer)
    assert report.body_bytes_recovered == scan.body_bytes


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.integers(min_value=0, max_value=5000), flip=st.integers(min_value=0, max_value=5000))
def test_a_damaged_part_is_refused_or_scanned_conservatively(
    tmp_path_factory: object, cut: int, flip: int
) -> None:
    root = Path(str(tmp_path_factory.mktemp("opaque")))  # type: ignore[attr-defined]
    part, officer = dead_part(root)
    data = bytearray(part.read_bytes())
    data = data[: min(cut + 200, len(data))]
    if flip < len(data):
        data[flip] ^= 0x40
    part.write_bytes(bytes(data))
    try:
        scan = scan_opaque(part)
    except RecorderError:
        return
    assert scan.body_bytes <= len(BODY)
    assert scan.clean_end <= len(data)
    copy = root / "copy" / part.name
    copy.parent.mkdir()
    shutil.copy(part, copy)
    try:
        report = recover(copy, officer, zero_fill_holes=lambda _header: True)
    except RecorderError:
        return  # e.g. a flipped header byte: refused by name, as for any damaged header
    # Keyless, the scan only reads the framing and stops at the first damage; with the key,
    # recovery authenticates, resynchronises past a damaged chunk and zero-fills it as a hole (so
    # neither count bounds the other). Every recovered byte outside a hole is authentic.
    assert report.sealed.path is not None
    with report.sealed.path.open("rb") as sealed:
        body = b"".join(iter_plaintext(sealed, officer))[4:]
    assert len(body) <= len(BODY)
    holes = [range(h.body_offset, h.body_offset + (h.length or 0)) for h in report.holes]
    for offset, byte in enumerate(body):
        assert byte == BODY[offset] or any(offset in hole for hole in holes), offset
