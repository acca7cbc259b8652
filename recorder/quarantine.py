"""Quarantine: set a file aside, unchanged, with the reason beside it. Never delete evidence.

Used for ``.part`` files recovery cannot seal (and the originals of those it re-sealed), sealed
files startup cannot requeue, and spool job files that cannot be read. The file keeps its name
(a serial number is added on a clash) and gets a ``<name>.reason.json``: what was wrong, the
error class and when.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Final

from recorder.durable import create_synced, fsync_directory
from recorder.errors import StorageError

logger = logging.getLogger(__name__)

#: The quarantine directory's name, under the directory the file was in.
QUARANTINE_DIR: Final = "quarantine"
REASON_SUFFIX: Final = ".reason.json"


def quarantine_file(
    path: Path, quarantine_dir: Path, *, reason: str, error: BaseException | None = None
) -> Path:
    """Move ``path`` into ``quarantine_dir`` unchanged, beside a ``.reason.json``. Never deletes.

    Raises ``StorageError`` when the move fails (the file is then where it was).
    """
    try:
        quarantine_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = quarantine_dir / path.name
        serial = 1
        while target.exists() or target.with_name(target.name + REASON_SUFFIX).exists():
            target = quarantine_dir / f"{path.name}.{serial}"
            serial += 1
        note = {
            "original_path": str(path),
            "reason": reason,
            "error": type(error).__name__ if error is not None else None,
            "quarantined_at_ms": int(time.time() * 1000),
        }
        reason_path = target.with_name(target.name + REASON_SUFFIX)
        create_synced(reason_path, json.dumps(note, indent=2, sort_keys=True).encode() + b"\n")
        try:
            os.rename(path, target)
        except OSError:
            reason_path.unlink(missing_ok=True)
            raise
        fsync_directory(quarantine_dir)
        fsync_directory(path.parent)
    except OSError as exc:
        raise StorageError(f"cannot quarantine {path}: {exc.strerror or exc}") from exc
    logger.warning("file quarantined path=%s kept_at=%s reason=%s", path, target, reason)
    return target
