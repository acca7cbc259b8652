"""Moving a finished bundle into place: one rename that never replaces anything.

Rule: an export never overwrites. Checking that ``--out`` is absent and then calling plain
``rename(2)`` leaves a window in which a directory created at ``--out`` is silently replaced
(rename replaces an empty directory). ``renameat2(RENAME_NOREPLACE)`` closes it: the kernel
refuses atomically. The parent directory is synced after the rename so the bundle's name
survives a power loss.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from pathlib import Path

from recorder.durable import fsync_directory
from recorder.errors import StorageError

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def rename_noreplace(source: Path, target: Path) -> None:
    """``rename(2)`` that fails with ``FileExistsError`` instead of replacing ``target``."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        if not renameat2(
            _AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE
        ):
            return
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            raise FileExistsError(code, os.strerror(code), str(target))
        if code not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(code, os.strerror(code), str(target))
    # No renameat2 (old glibc) or a file system without RENAME_NOREPLACE: check, then rename
    # (plain rename still refuses a non-empty target directory).
    if target.exists():  # pragma: no cover - only on such systems
        raise FileExistsError(errno.EEXIST, "exists", str(target))
    source.rename(target)  # pragma: no cover


def publish(staging: Path, out_dir: Path) -> None:
    """``staging`` renamed to ``out_dir`` (never over anything there), the rename made durable."""
    try:
        rename_noreplace(staging, out_dir)
    except FileExistsError as exc:
        raise StorageError(
            f"{out_dir} appeared while exporting: an export never overwrites"
        ) from exc
    except OSError as exc:
        raise StorageError(f"cannot move the export into {out_dir}: {exc.strerror}") from exc
    fsync_directory(out_dir.parent)
