"""The blind index's part of the ``Catalog`` seam (no imports, so ``base`` can inherit it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class TextIndexCatalog(Protocol):
    def add_transcript_tokens(
        self, recording_id: str, key_id: str, macs: Sequence[str], now_ms: int
    ) -> None:
        """Index one records segment's token MACs (idempotent)."""
        ...

    def text_index_keys(self) -> dict[str, int]:
        """Search-key id -> recordings indexed under it."""
        ...
