"""``recorder.durable``: directory fsync, whole-or-nothing writes and bundle files, on real
directories."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from recorder.durable import (
    BundleFile,
    create_synced,
    fsync_directory,
    make_durable_dir,
    open_bundle_file,
    start_writeback,
    write_durably,
    write_new_file,
)
from recorder.errors import BundleWriteFailed, ConfigError, StorageError
from tests.conftest import dirty_pages, fill_filesystem


@pytest.fixture
def narrow_umask() -> Iterator[None]:
    """A umask that would strip group and other bits from anything created."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_fsync_directory_fsyncs_a_real_directory_and_closes_it(tmp_path: Path) -> None:
    (tmp_path / "entry").write_bytes(b"x")
    before = _open_fds()
    fsync_directory(tmp_path)
    assert _open_fds() == before


def test_a_refused_directory_fsync_is_an_error_naming_the_directory() -> None:
    # procfs opens as a directory but answers fsync with EINVAL, as some network and FUSE file
    # systems do: the open succeeds, so this failure can only come from the fsync itself.
    proc = Path("/proc/self")
    fd = os.open(proc, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
        pytest.skip("this kernel's procfs accepts fsync; no refusing file system to test on")
    except OSError:
        pass
    finally:
        os.close(fd)
    before = _open_fds()
    with pytest.raises(OSError, match="cannot fsync directory /proc/self") as caught:
        fsync_directory(proc)
    assert caught.value.errno == errno.EINVAL
    assert _open_fds() == before


def test_a_missing_directory_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    with pytest.raises(FileNotFoundError, match=f"cannot open directory {missing}"):
        fsync_directory(missing)


def test_a_file_is_not_a_directory(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    with pytest.raises(NotADirectoryError, match=str(plain)):
        fsync_directory(plain)


def test_write_durably_replaces_whole_with_exactly_the_mode(
    tmp_path: Path, narrow_umask: None
) -> None:
    target = tmp_path / "record"
    target.write_bytes(b"old")
    write_durably(target, b"new bytes", mode=0o444)
    assert target.read_bytes() == b"new bytes"
    # 0444 survives a 077 umask: the store's lock records must stay readable as written.
    assert stat.S_IMODE(target.stat().st_mode) == 0o444
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record"]


def test_write_durably_defaults_to_private(tmp_path: Path) -> None:
    target = tmp_path / "key"
    write_durably(target, b"k" * 32)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_write_durably_without_replace_keeps_what_is_there(tmp_path: Path) -> None:
    target = tmp_path / "kek"
    write_durably(target, b"first", replace=False)
    with pytest.raises(FileExistsError):
        write_durably(target, b"second", replace=False)
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kek"]


def test_a_failed_write_leaves_no_temp_file(tmp_path: Path) -> None:
    # A non-empty directory cannot be replaced by a file: the rename fails after the temp file
    # was written and fsynced, and the temp file must not stay behind.
    target = tmp_path / "busy"
    target.mkdir()
    (target / "inside").write_bytes(b"")
    with pytest.raises(OSError):
        write_durably(target, b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]


def test_write_durably_names_its_temp_file_as_the_caller_says(tmp_path: Path) -> None:
    target = tmp_path / "obj%meta"
    temp = tmp_path / "obj%meta%tmp-1"
    temp.write_bytes(b"someone else's write in progress")
    # The caller's temp name is created exclusively: never written through another's file.
    with pytest.raises(FileExistsError):
        write_durably(target, b"data", temp_path=temp)
    assert temp.read_bytes() == b"someone else's write in progress"
    assert not target.exists()


def test_create_synced_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    create_synced(path, b"{}")
    with pytest.raises(FileExistsError):
        create_synced(path, b"other")
    assert path.read_bytes() == b"{}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_make_durable_dir_makes_private_parents(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "c"
    make_durable_dir(deep)
    make_durable_dir(deep)  # already there: nothing to do, no error
    for directory in (tmp_path / "a", tmp_path / "a" / "b", deep):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_a_bundle_file_on_a_full_disk_names_itself_through_its_buffer(
    tiny_filesystem: Path,
) -> None:
    """A real ENOSPC: the refusal surfaces when the buffer flushes, inside whatever code was
    writing, still naming the bundle file; the file is private and never made over another."""
    path = tiny_filesystem / "events.json"

    def write_events() -> None:
        with open_bundle_file(path) as out:
            for _ in range(100):
                out.write(bytes(4096))

    with pytest.raises(BundleWriteFailed) as caught:
        write_events()
    assert str(caught.value) == f"{path}: cannot write: No space left on device"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        BundleFile(path)


def test_a_bundle_file_left_by_an_error_keeps_that_error_and_writes_no_more(
    tiny_filesystem: Path,
) -> None:
    """The block raised with bytes still buffered and no room for them: the error that left
    the block is the one reported (a flush refused at close would replace it), and the file
    holds only what was flushed before."""
    fill_filesystem(tiny_filesystem)
    path = tiny_filesystem / "chat.json"

    def fail_while_writing() -> None:
        with open_bundle_file(path) as out:
            out.write(b"[")
            raise LookupError("the evidence's own error")

    with pytest.raises(LookupError, match="the evidence's own error"):
        fail_while_writing()
    assert path.stat().st_size == 0


@pytest.mark.usefixtures("narrow_umask")
@pytest.mark.parametrize("mode", [0o644, 0o600])
def test_a_new_file_has_exactly_its_mode_and_is_never_written_over(
    tmp_path: Path, mode: int
) -> None:
    path = tmp_path / "officer.pub"
    write_new_file(path, b"key", mode=mode)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    with pytest.raises(ConfigError, match=f"refusing to overwrite {path}$"):
        write_new_file(path, b"other", mode=mode)
    assert path.read_bytes() == b"key"
    assert [p.name for p in tmp_path.iterdir()] == ["officer.pub"]


def test_a_new_file_the_disk_refuses_is_named_and_not_left_half(tiny_filesystem: Path) -> None:
    fill_filesystem(tiny_filesystem)
    path = tiny_filesystem / "officer.pub"
    with pytest.raises(StorageError) as caught:
        write_new_file(path, b"key", mode=0o644)
    assert str(caught.value) == f"{path}: cannot write: No space left on device"
    assert [p.name for p in tiny_filesystem.iterdir()] == ["filler"]


def test_start_writeback_sends_the_range_to_the_disk_without_an_fsync(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "large", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, bytes(range(256)) * 4096)
        if dirty_pages(fd) == 0:
            pytest.skip(f"{tmp_path} is not written back through the page cache (a tmpfs?)")
        start_writeback(fd, 0, 1 << 20)
        assert dirty_pages(fd) == 0
    finally:
        os.close(fd)
    assert (tmp_path / "large").read_bytes() == bytes(range(256)) * 4096


def test_start_writeback_is_only_a_hint_and_never_raises(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "small", os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    start_writeback(fd, 0, 4096)  # a closed descriptor: EBADF, ignored
    start_writeback(-1, 0, 0)
