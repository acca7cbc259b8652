"""A keyed blind index of transcript words: search by text without a word on disk.

Rule: the catalog never holds a transcript word, only ``HMAC-SHA256(search_key, token)``
(truncated to 128 bits) per distinct token per recording. Someone with the catalog but not the
search key learns which recordings share a token, and how many recordings each token is in
(token equality and frequency), never the token itself; guessing a word needs the key. The
key is a separate 32-byte secret in its own 0600 file (``search-index.key`` in the keys
directory): it is not a KEK and cannot decrypt anything, so an encrypt-only recording host can
hold it. Every host of one catalog must hold the same file (a host indexing under another key
is counted and reported by ``recorder search --text``). The key is never logged. The same key
MACs the people and numbers an officer searches for in the audit log (``filter_mac``, under its
own label; ``recorder.officer.search_audit``).

Tokens: the text is NFKC-normalised and case-folded; apostrophes are dropped (``don't`` ->
``dont``); every other punctuation or symbol character and all white space separate tokens;
tokens longer than ``MAX_TOKEN_CHARS`` are cut there. The query goes through the same function,
so what an officer types matches however the transcript spelled case, width or punctuation.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from recorder.durable import write_durably
from recorder.errors import ConfigError, StorageError

KEY_FILE_NAME: Final = "search-index.key"
KEY_SIZE: Final = 32
#: Bytes of each MAC kept: 128 bits, so a false match is never seen in practice.
MAC_BYTES: Final = 16
MAX_TOKEN_CHARS: Final = 64
#: Distinct tokens kept per records segment (a bound on a hostile or endless transcript).
MAX_TOKENS_PER_SEGMENT: Final = 20_000
#: Transcript characters kept in memory per records segment for indexing (5 minutes of speech
#: is a few thousand; this bounds a hostile stream).
MAX_TEXT_CHARS_PER_SEGMENT: Final = 1_000_000
_LABEL: Final = b"rtms-recorder/transcript-token/v1\x00"
#: The same key MACs what an officer searched for, for the audit log
#: (``recorder.officer.search_audit``). The labels keep the two kinds apart: no search filter's
#: MAC can ever equal a transcript word's, so neither links to the other.
_FILTER_LABEL: Final = b"rtms-recorder/audit-search-filter/v1\x00"
_APOSTROPHES: Final = frozenset("'\u2019\u02bc\uff07")


def tokens(text: str) -> list[str]:
    """The normalised tokens of ``text``, in order (repeats kept)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    # Case folding can produce decomposed forms (e.g. "İ"), so normalise once more.
    folded = unicodedata.normalize("NFKC", folded)
    out: list[str] = []
    current: list[str] = []
    for ch in folded:
        if ch in _APOSTROPHES:
            continue
        category = unicodedata.category(ch)
        if category[0] in "LNM":
            current.append(ch)
            continue
        if current:
            out.append("".join(current)[:MAX_TOKEN_CHARS])
            current = []
    if current:
        out.append("".join(current)[:MAX_TOKEN_CHARS])
    return out


class SearchKey:
    """The blind index's MAC key. ``repr`` never shows it."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ConfigError(f"a search-index key is {KEY_SIZE} bytes, got {len(key)}")
        self._key = key
        #: Names the key without revealing it (stored with the index, shown to officers).
        self.key_id = hashlib.sha256(b"rtms-recorder/search-key-id\x00" + key).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"<SearchKey {self.key_id}>"

    def mac(self, token: str) -> str:
        digest = hmac.digest(self._key, _LABEL + token.encode("utf-8"), "sha256")
        return digest[:MAC_BYTES].hex()

    def filter_mac(self, normalised: str) -> str:
        """The audit log's MAC of one search filter value, already normalised by the caller."""
        digest = hmac.digest(self._key, _FILTER_LABEL + normalised.encode("utf-8"), "sha256")
        return digest[:MAC_BYTES].hex()

    def macs(self, tokens: Iterable[str]) -> list[str]:
        """The MACs of distinct ``tokens``, sorted (the order says nothing about the text)."""
        return sorted({self.mac(token) for token in tokens})

    def query(self, text: str) -> list[str]:
        """The MACs a search for ``text`` must find, all of them in one recording."""
        found = tokens(text)
        if not found:
            raise ConfigError(f"no word to search for in {text!r}")
        return self.macs(found)


def key_path(key_dir: Path) -> Path:
    return Path(key_dir) / KEY_FILE_NAME


def load_search_key(key_dir: Path, *, create: bool) -> SearchKey:
    """The key in ``key_dir``; made (0600, atomically, never over another) when ``create``.

    Refuses a file that is not 32 bytes or that others may read.
    """
    path = key_path(key_dir)
    if create and not path.exists():
        try:
            Path(key_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
            # Another process that made it first wins: its key is used.
            with contextlib.suppress(FileExistsError):
                write_durably(path, os.urandom(KEY_SIZE), replace=False)
        except OSError as exc:
            raise StorageError(
                f"{path}: cannot create the search-index key: {exc.strerror or exc}"
            ) from exc
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{path}: no search-index key (copy it from the recording hosts; without it "
            "transcript text cannot be searched, nor a person searched for: such searches are "
            "audited as MACs under this key)"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the search-index key: {exc.strerror}") from exc
    try:
        mode = os.fstat(fd).st_mode & 0o777
        if mode & 0o077:
            raise ConfigError(f"{path}: mode {mode:o} lets others read the search key: chmod 600")
        data = os.read(fd, KEY_SIZE + 1)
    finally:
        os.close(fd)
    if len(data) != KEY_SIZE:
        raise ConfigError(f"{path}: a search-index key is {KEY_SIZE} bytes, found {len(data)}")
    return SearchKey(data)


class TextCollector:
    """One records segment's transcript lines, kept in memory for indexing at seal time.

    ``add`` is all the capture loop pays (an append); the words are found later, in a worker
    thread (``distinct_tokens``). Bounded: past ``max_chars`` characters a segment's further
    lines are counted in ``dropped`` and not indexed.
    """

    def __init__(self, max_chars: int = MAX_TEXT_CHARS_PER_SEGMENT) -> None:
        self._max_chars = max_chars
        self._chars = 0
        self._texts: list[str] = []
        self.dropped = 0

    def add(self, text: str) -> None:
        if self._chars + len(text) > self._max_chars:
            self.dropped += 1
            return
        self._chars += len(text)
        self._texts.append(text)

    def take(self) -> tuple[str, ...]:
        taken = tuple(self._texts)
        self._texts, self._chars = [], 0
        return taken


def distinct_tokens(texts: Iterable[str], limit: int = MAX_TOKENS_PER_SEGMENT) -> set[str]:
    """The distinct tokens of ``texts``, at most ``limit`` of them (the first found)."""
    seen: set[str] = set()
    for text in texts:
        for token in tokens(text):
            if len(seen) >= limit:
                return seen
            seen.add(token)
    return seen
