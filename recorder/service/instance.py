"""Who this process is, for leases: an owner id unique per running process (invariant 3).

Rules:

1. One state directory is one recorder instance. Its id is created once (random, persisted
   0600 in the state dir) and survives restarts, so a restarted process reclaims its own leases
   at once instead of waiting them out.
2. Only one live process may use a state directory: it holds an exclusive ``flock`` on
   ``instance.lock`` for its whole life (the kernel drops it when the process dies, even on
   SIGKILL). A second process on the same state dir is refused with a clear error, so two live
   processes can never share an owner id; two workers on one host (separate state dirs) get
   different ids even when their host name and uid are the same.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import socket
from pathlib import Path
from typing import Final

from recorder.durable import write_durably
from recorder.errors import ConfigError, StorageError

INSTANCE_ID_FILE: Final = "instance-id"
INSTANCE_LOCK_FILE: Final = "instance.lock"


class InstanceLock:
    """The exclusive hold on one state directory; ``release`` (or process death) frees it."""

    def __init__(self, fd: int, instance_id: str) -> None:
        self._fd: int | None = fd
        self.instance_id = instance_id

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_or_create_id(state_dir: Path) -> str:
    path = state_dir / INSTANCE_ID_FILE
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        text = ""
    if text:
        return text
    instance_id = secrets.token_hex(8)
    write_durably(path, instance_id.encode() + b"\n")
    return instance_id


def lock_instance(state_dir: Path) -> InstanceLock:
    """Take the state directory for this process; raises ``ConfigError`` if another has it,
    ``StorageError`` naming it if it cannot be made or written (a full disk at the first start).
    """
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(state_dir / INSTANCE_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise _unusable(state_dir, exc) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(
            f"state directory {state_dir} is in use by another recorder process (pid {holder}): "
            "give each worker process its own [storage] state_dir"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return InstanceLock(fd, _read_or_create_id(state_dir))
    except OSError as exc:
        os.close(fd)
        raise _unusable(state_dir, exc) from exc


def _unusable(state_dir: Path, exc: OSError) -> StorageError:
    return StorageError(f"state directory {state_dir} unusable: {exc.strerror or exc}")


def owner_id(instance_id: str, label: str | None = None) -> str:
    """``label/instance-id``: readable (the host, or ``RECORDER_OWNER``) and unique."""
    return f"{label or os.environ.get('RECORDER_OWNER') or socket.gethostname()}/{instance_id}"
