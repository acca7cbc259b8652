"""Durable file-system changes: the one place the recorder fsyncs a directory or writes a file
whole-or-not-at-all. Keys, key records, the spool, the local store, quarantine, recovery and
the export bundle all go through here.

Rules:

1. A new, renamed or removed name is durable only once its *directory* is fsynced: fsyncing the
   file makes its bytes durable, not the entry pointing at them (ext4 and XFS can lose the
   entry on a power cut).
2. A failed directory fsync is an error, never ignored: a caller that cannot make a rename
   durable must not report it done. The ``OSError`` keeps its ``errno`` (callers map ENOSPC
   and EDQUOT to ``DiskFull``) and its message names the directory.
3. A replaced file is written to a temp file in the same directory, fsynced, renamed (or
   linked, to never replace) into place, then the directory is fsynced (borg's SaveFile). The
   temp file is created with the final mode, so its bytes are never readable by more users than
   the final file's, and it is removed on any failure.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import io
import os
import secrets
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final

from recorder.errors import BundleWriteFailed, ConfigError, StorageError

if TYPE_CHECKING:
    from types import TracebackType

    from _typeshed import ReadableBuffer

#: Mode of a file written by ``write_durably`` unless the caller says otherwise.
PRIVATE_FILE_MODE = 0o600


def fsync_directory(path: Path) -> None:
    """fsync the directory ``path`` itself, so that names made or removed in it survive (rule 2).

    Raises ``OSError`` (same ``errno``) whose message names ``path``.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise _naming(exc, "cannot open directory", path) from exc
    try:
        os.fsync(fd)
    except OSError as exc:
        raise _naming(exc, "cannot fsync directory", path) from exc
    finally:
        os.close(fd)


_SYNC_FILE_RANGE_WRITE: Final = 2


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    function = getattr(libc, "sync_file_range", None)
    if function is not None:
        function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
        function.restype = ctypes.c_int
    return typing.cast("Callable[[int, int, int, int], int] | None", function)


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing ``length`` bytes at ``offset`` to the disk now, without
    waiting for them (Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)``; nothing elsewhere).

    Why: a large file written and then fsynced waits at the end for all of it; started as it is
    written, the disk works while the writer computes, and the fsync finds little left. It is
    only a hint: the ``fsync`` that must follow is what reports a write error (the kernel keeps
    it for that fsync), so an error here is not raised. (``posix_fadvise(DONTNEED)`` also starts
    write-back but drains every CPU's page lists on each call, which cost more than it saved.)
    """
    function = _sync_file_range()
    if function is not None and length > 0:
        function(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def make_durable_dir(path: Path) -> None:
    """mkdir 0700 (with parents); when it is new, fsync its parent so the entry survives a
    power loss. A file in a directory whose own entry was lost is a lost file."""
    if path.is_dir():
        return
    make_durable_dir(path.parent)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        return
    fsync_directory(path.parent)


def write_durably(
    path: Path,
    data: bytes,
    *,
    mode: int = PRIVATE_FILE_MODE,
    replace: bool = True,
    temp_path: Path | None = None,
) -> None:
    """Write ``data`` to ``path`` whole or not at all, durably (rule 3), with exactly ``mode``.

    ``replace=False`` never replaces an existing ``path`` (``FileExistsError``): two processes
    creating the same file at once keep one, whole (``link`` is atomic and refuses a target).
    ``temp_path`` names the temp file when the directory's readers must recognise it (the
    local store skips its ``%tmp-`` names); by default it is a hidden ``.<name>.<random>.tmp``.
    """
    temp = temp_path or path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            # fchmod: the umask may have narrowed ``mode`` (a 0444 record would become 0400).
            os.fchmod(fd, mode)
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(temp, path)
        else:
            os.link(temp, path)
    finally:
        # After a replace the temp name is gone; after a link or a failure it is ours to remove.
        temp.unlink(missing_ok=True)
    fsync_directory(path.parent)


def write_new_file(path: Path, data: bytes, *, mode: int) -> None:
    """A new file a user asked for at ``path`` (a key pair, a public key to hand out): whole
    or not at all, durably, never over an existing file (``ConfigError`` if one is there). A
    refusal of the disk is a ``StorageError`` naming ``path``, and nothing is left behind."""
    try:
        write_durably(path, data, mode=mode, replace=False)
    except FileExistsError as exc:
        raise ConfigError(f"refusing to overwrite {path}") from exc
    except OSError as exc:
        raise StorageError(f"{path}: cannot write: {exc.strerror or exc}") from exc


def create_synced(path: Path, data: bytes, *, mode: int = PRIVATE_FILE_MODE) -> None:
    """Create ``path`` (never over an existing file: ``FileExistsError``) holding ``data``,
    its bytes fsynced. The caller fsyncs the directory once it has made all its entries."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` may write less than asked (signals, some file systems); loop until done."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _naming(exc: OSError, what: str, path: Path) -> OSError:
    # OSError(errno, ...) picks the matching subclass (FileNotFoundError, ...); strerror carries
    # the path too, for callers that report only ``exc.strerror``.
    return OSError(exc.errno, f"{what} {path}: {exc.strerror}")


class BundleFile(io.FileIO):
    """A file of an export bundle (records, transcripts, video) created 0600, never over an
    existing file, whose failed writes raise ``BundleWriteFailed`` naming it. Raised here, not
    by the caller: its writes happen inside the code that reads an object, which would name the
    object. ``open_bundle_file`` gives it a buffer, for small writes."""

    def __init__(self, path: Path) -> None:
        super().__init__(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
        self.path = path

    def write(self, data: ReadableBuffer) -> int:
        try:
            return super().write(data)
        except OSError as exc:
            raise BundleWriteFailed.of(self.path, exc) from exc


@contextlib.contextmanager
def writing_bundle_file(target: Path) -> Iterator[None]:
    """Inside, the disk refusing ``target`` (a full disk, a file size limit) is the bundle's
    problem, never the evidence's: ``BundleWriteFailed`` naming it. For writers that are not a
    ``BundleFile`` (PyAV's muxer, ``zipfile``). An ``OSError`` naming another file (an input
    being read: PyAV and ``open`` name theirs) passes through as it is."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None and exc.filename != str(target):
            raise
        raise BundleWriteFailed.of(target, exc) from exc


#: ``open_bundle_file``'s buffer: a write of the file for this many bytes written to it.
BUNDLE_FILE_BUFFER_BYTES: Final = 64 << 10


class _BundleWriter(io.BufferedWriter):
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            # Left unflushed: the failed bundle is removed whole, and a flush refused by a full
            # disk here would replace the error on its way out (the first file refused, or the
            # evidence's own) with this file's.
            self.raw.close()
        super().__exit__(exc_type, exc, tb)


def open_bundle_file(path: Path) -> io.BufferedWriter:
    """A new ``BundleFile`` behind a write buffer (records, transcripts, video segments); a
    ``with`` block that raises leaves what is still buffered unwritten."""
    return _BundleWriter(BundleFile(path), buffer_size=BUNDLE_FILE_BUFFER_BYTES)
