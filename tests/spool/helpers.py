"""Sealed files, jobs and a small recording callback for the spool tests."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from recorder.spool.keys import SegmentKey, object_key
from recorder.spool.spool import UploadJob
from recorder.store.base import LockMode, PutResult


def sealed_file(directory: Path, index: int, size: int = 4096) -> tuple[Path, UploadJob]:
    """A stand-in for a sealed segment (opaque bytes to the spool) and its upload job."""
    directory.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    path = directory / f"segment-{index}.seg"
    path.write_bytes(data)
    key = object_key(
        SegmentKey(
            "zcc", date(2026, 11, 21), "LjjdDBo5SkGneP8qY4Sv/uQ==", "03db7045", "mixed", index
        )
    )
    job = UploadJob(
        object_key=key,
        sha256=hashlib.sha256(data).hexdigest(),
        size=size,
        retain_until=datetime.now(UTC) + timedelta(days=7),
        lock_mode=LockMode.GOVERNANCE,
        metadata={"segment-index": str(index)},
    )
    return path, job


@dataclass
class Uploaded:
    """``on_uploaded`` callback that records its calls."""

    results: list[tuple[UploadJob, PutResult]] = field(default_factory=list)

    async def __call__(self, job: UploadJob, result: PutResult) -> None:
        self.results.append((job, result))

    @property
    def keys(self) -> list[str]:
        return [job.object_key for job, _ in self.results]
