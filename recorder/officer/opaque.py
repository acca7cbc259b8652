"""Reading evidence a host without decrypt rights uploaded as an opaque blob.

An encrypt-only recorder cannot seal a crashed writer's ``.part`` file (that needs the data
key), so it uploads it as is (``recorder.service.recovery``) with ``OPAQUE_PLAINTEXT_DIGEST`` in
place of a plaintext digest. The officer, who holds the key, recovers such an object on read:
a private temporary copy is sealed by ``recover`` (which authenticates every chunk it keeps and
discards a torn tail) and then read like any sealed segment. The copy stays encrypted.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from recorder.audio.wav import recovery_prologue
from recorder.crypto.keyring import SegmentKeyOpener
from recorder.crypto.opaque import OPAQUE_PLAINTEXT_DIGEST
from recorder.crypto.recovery import recover
from recorder.crypto.writer import PART_SUFFIX
from recorder.store.base import not_staged

#: What ``not_staged`` names (the caller adds the object's key).
_WHAT = "the opaque object's recovered copy"


def is_opaque(plaintext_sha256: str) -> bool:
    return plaintext_sha256 == OPAQUE_PLAINTEXT_DIGEST


@contextmanager
def recovered_copy(stored: BinaryIO, keyring: SegmentKeyOpener) -> Iterator[BinaryIO]:
    """A sealed, readable copy of the opaque object in ``stored`` (blocking: use a thread)."""
    try:
        workdir = tempfile.TemporaryDirectory(prefix="rtms-opaque-")
    except OSError as exc:
        raise not_staged(_WHAT, tempfile.gettempdir(), exc) from exc
    with workdir as tmp:
        try:
            part = Path(tmp) / f"object.rtmsenc{PART_SUFFIX}"
            with part.open("xb") as out:
                part.chmod(0o600)
                stored.seek(0)
                shutil.copyfileobj(stored, out)
            report = recover(part, keyring, recovery_prologue)
            assert report.sealed.path is not None
            sealed = report.sealed.path.open("rb")
        except OSError as exc:
            raise not_staged(_WHAT, tmp, exc) from exc
        with sealed:
            yield sealed
