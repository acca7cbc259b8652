"""``PartSizer``: fits multipart part sizes to S3's limits (s3transfer's ChunksizeAdjuster).

S3 rules: every part but the last is at least 5 MiB, at most 5 GiB, and an upload has at most
10,000 parts. The sizer starts from the configured part size and doubles it until the object fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from recorder.errors import StorageError

S3_MIN_PART_BYTES: Final = 5 * 2**20  # 5 MiB
S3_MAX_PART_BYTES: Final = 5 * 2**30  # 5 GiB
S3_MAX_PARTS: Final = 10_000
S3_MAX_OBJECT_BYTES: Final = 5 * 2**40  # 5 TiB


@dataclass(frozen=True, slots=True)
class PartSizer:
    preferred_part_bytes: int = 8 * 2**20  # 8 MiB
    min_part_bytes: int = S3_MIN_PART_BYTES
    max_part_bytes: int = S3_MAX_PART_BYTES
    max_parts: int = S3_MAX_PARTS

    def part_size(self, total_bytes: int) -> int:
        if total_bytes > S3_MAX_OBJECT_BYTES:
            raise StorageError(f"object of {total_bytes} bytes exceeds S3's 5 TiB limit")
        size = min(max(self.preferred_part_bytes, self.min_part_bytes), self.max_part_bytes)
        while -(-total_bytes // size) > self.max_parts:
            size = min(size * 2, self.max_part_bytes)
            if size == self.max_part_bytes:
                break
        return size

    def parts(self, total_bytes: int) -> list[tuple[int, int]]:
        """(offset, length) of every part, in order; at least one part."""
        size = self.part_size(total_bytes)
        spans = [
            (offset, min(size, total_bytes - offset)) for offset in range(0, total_bytes, size)
        ]
        return spans or [(0, 0)]
