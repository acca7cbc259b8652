"""The seam between the console and the decrypting media source.

The console audits and gates every play before it calls a ``MediaProvider``, and hands it the
``play`` audit event; the provider decrypts in memory only (invariant 1) and refuses to decrypt
without that event. The real provider is ``recorder.officer.media.ConsoleMedia``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Protocol

from recorder.catalog.base import AuditEvent

if TYPE_CHECKING:
    from recorder.service.components import Components


class TrackBytes(Protocol):
    """One track's continuous WAV, readable at any byte range."""

    @property
    def length(self) -> int: ...

    @property
    def content_type(self) -> str: ...

    def iter_range(self, start: int, stop: int) -> AsyncIterator[bytes]:
        """Bytes ``start`` .. ``stop`` (exclusive), decrypted block by block."""
        ...


class MediaProvider(Protocol):
    async def open_track(
        self, c: Components, recording_id: str, track: str, audit: AuditEvent
    ) -> TrackBytes: ...

    async def peaks(
        self, c: Components, recording_id: str, track: str, audit: AuditEvent
    ) -> dict[str, object]: ...

    def parse_range(self, header: str | None, length: int) -> Sequence[tuple[int, int]] | None:
        """``None`` for no Range header; raises ``RecorderError`` (416) when unsatisfiable."""
        ...

    async def aclose(self) -> None: ...


def default_provider() -> MediaProvider:
    from recorder.officer.media import ConsoleMedia

    return ConsoleMedia()
