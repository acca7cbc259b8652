"""Fixtures shared by the whole suite: real servers, started per session, on loopback only."""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# boto3 must never find a developer's real credentials or config while the suite runs.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
)

POSTGRES_DSN = os.environ.get(
    "RECORDER_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server mode on 127.0.0.1 (real HTTP): S3 with Object Lock, and KMS."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _postgres_reachable() -> str | None:
    import psycopg

    try:
        with psycopg.connect(POSTGRES_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL not reachable at {POSTGRES_DSN}: {exc}"
    return None


@pytest.fixture(scope="session")
def postgres_server() -> str:
    problem = _postgres_reachable()
    if problem is not None:
        if os.environ.get("RECORDER_REQUIRE_POSTGRES") == "1":
            pytest.fail(problem + " (RECORDER_REQUIRE_POSTGRES=1: these tests are mandatory here)")
        pytest.skip(problem)
    return POSTGRES_DSN


@pytest.fixture
def postgres_dsn(postgres_server: str) -> Iterator[str]:
    """A DSN whose search_path is a fresh schema, dropped after the test."""
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{postgres_server}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@contextmanager
def mounted_tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """A separate tmpfs of ``size`` (mount's notation: ``256k``, ``4m``) at ``mount_point``:
    a real ENOSPC, and a move across filesystems (EXDEV).

    Needs root to mount (the dev machines and CI run as root); skips with the reason otherwise.
    """
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        # Lazily if a file is still open there, so that one test's leak (the video tests
        # check for PyAV's, closed by ``remux.close_descriptors_left_on``) fails only itself.
        if subprocess.run(["umount", str(mount_point)], check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


def fill_filesystem(mount: Path, *, leave: int = 0) -> Path:
    """Fills the file system at ``mount`` with one file, ``filler``, so that about ``leave``
    bytes stay free (a tmpfs counts whole pages); delete it for the room again."""
    stat = os.statvfs(mount)
    filler = mount / "filler"
    filler.write_bytes(bytes(max(0, stat.f_bavail * stat.f_frsize - leave)))
    return filler


_CACHESTAT = 451  # the syscall's number on x86-64 and arm64 (Linux 6.5)


class _CachestatRange(ctypes.Structure):
    _fields_ = (("offset", ctypes.c_uint64), ("length", ctypes.c_uint64))


class _Cachestat(ctypes.Structure):
    _fields_ = tuple(
        (name, ctypes.c_uint64)
        for name in ("cache", "dirty", "writeback", "evicted", "recently_evicted")
    )


def dirty_pages(fd: int) -> int:
    """Pages of the open file ``fd`` that are in the page cache and not yet sent to the disk
    (``cachestat(2)``); skips the test on a kernel without it, or where files are never written
    back (a tmpfs)."""
    libc = ctypes.CDLL(None, use_errno=True)
    whole, stat = _CachestatRange(0, 0), _Cachestat()
    if libc.syscall(_CACHESTAT, fd, ctypes.byref(whole), ctypes.byref(stat), 0) != 0:
        code = ctypes.get_errno()
        if code in (errno.ENOSYS, errno.EPERM):
            pytest.skip(f"cachestat(2) unavailable here ({os.strerror(code)}): Linux >= 6.5")
        raise OSError(code, os.strerror(code))
    return int(stat.dirty)


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A separate 256 KiB tmpfs (``mounted_tmpfs``)."""
    with mounted_tmpfs(tmp_path / "tiny", "256k") as mount_point:
        yield mount_point
