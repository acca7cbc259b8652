"""The recording side of the transcript blind index: MACs of a sealed records segment's words.

Rule: the transcript lines of a records segment reach here in memory only
(``RecordsManifestEntry.transcript``); their words are found and turned into MACs under the
search key in a worker thread, and only the MACs go on, as an
evidence intent (journaled like every other catalog write while the catalog is away). A host
without a usable search key records exactly as before and says once, at error level, that its
transcripts are not being indexed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import trio

from recorder.crypto.blind_index import SearchKey, distinct_tokens, load_search_key
from recorder.errors import ConfigError
from recorder.service import evidence_recorder as intents

logger = logging.getLogger(__name__)


class TranscriptIndexer:
    """One per service; the key is loaded (and on a first run made) when first needed."""

    def __init__(self, key_dir: Path) -> None:
        self._key_dir = key_dir
        self._key: SearchKey | None = None
        self._failed = False

    def _load(self) -> SearchKey | None:
        if self._key is None and not self._failed:
            try:
                self._key = load_search_key(self._key_dir, create=True)
            except (ConfigError, OSError) as exc:
                self._failed = True
                logger.error("transcripts are not indexed for search: %s", exc)
        return self._key

    async def intent(self, recording_id: str, transcript: Sequence[str]) -> intents.Intent | None:
        """The MACs of the distinct words of ``transcript`` (found in a worker thread)."""
        if not transcript:
            return None
        key = await trio.to_thread.run_sync(self._load)
        if key is None:
            return None

        def macs() -> list[str]:
            return key.macs(distinct_tokens(transcript))

        found = await trio.to_thread.run_sync(macs)
        if not found:
            return None
        return transcript_tokens(recording_id, key.key_id, found)


def transcript_tokens(recording_id: str, key_id: str, macs: list[str]) -> intents.Intent:
    return intents.Intent(
        "add_transcript_tokens", {"recording_id": recording_id, "key_id": key_id, "macs": macs}
    )
