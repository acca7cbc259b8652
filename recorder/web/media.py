"""The seam between the console and the decrypting media source (``recorder.officer.media``).

The console audits and gates every play before it calls a ``MediaProvider``; the provider
decrypts in memory only (invariant 1). ``default_provider`` wires the officer media module
when this build has it; without it the player says so instead of pretending to play.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol

from recorder.catalog.base import JsonValue

if TYPE_CHECKING:
    from recorder.service.components import Components


class TrackBytes(Protocol):
    """One track's continuous WAV, readable at any byte range."""

    @property
    def length(self) -> int: ...

    @property
    def content_type(self) -> str: ...

    def iter_range(self, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``start`` .. ``end`` (exclusive), decrypted chunk by chunk."""
        ...


class MediaProvider(Protocol):
    async def open_track(self, c: Components, recording_id: str, track: str) -> TrackBytes: ...

    async def peaks(self, c: Components, recording_id: str, track: str) -> JsonValue: ...

    def parse_range(self, header: str | None, length: int) -> list[tuple[int, int]] | None:
        """``None`` for no Range header; raises ``RecorderError`` (416) when unsatisfiable."""
        ...


def default_provider() -> MediaProvider | None:
    try:
        from recorder.web import media_adapter  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None
    provider: MediaProvider = media_adapter.provider()
    return provider
