"""Blind-index tokens and the search key: normalisation an officer can rely on (case, width,
punctuation), MACs that reveal nothing of the key or the word, a key file that is private."""

from __future__ import annotations

import os
import stat
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.crypto.blind_index import (
    MAX_TOKEN_CHARS,
    SearchKey,
    TextCollector,
    distinct_tokens,
    key_path,
    load_search_key,
    tokens,
)
from recorder.errors import ConfigError, StorageError
from tests.conftest import fill_filesystem

KEY = SearchKey(os.urandom(32))


def test_case_width_and_punctuation_do_not_matter() -> None:
    assert tokens("Hello, I'd like to SELL & buy <now>!") == [
        "hello",
        "id",
        "like",
        "to",
        "sell",
        "buy",
        "now",
    ]
    assert tokens("Card-number: 4111\u00a01111") == ["card", "number", "4111", "1111"]
    assert tokens("\uff23\uff21\uff32\uff24 \ufb01le Stra\u00dfe don\u2019t") == [
        "card",
        "file",
        "strasse",
        "dont",
    ]
    assert tokens("x" * 200) == ["x" * MAX_TOKEN_CHARS]
    assert tokens(" ,.;!? \n\t") == []


@given(st.text(max_size=80))
def test_tokens_are_normal_form_words_and_stable(text: str) -> None:
    found = tokens(text)
    for token in found:
        assert token
        assert len(token) <= MAX_TOKEN_CHARS
        assert unicodedata.normalize("NFKC", token) == token
        assert all(unicodedata.category(ch)[0] in "LNM" for ch in token)
    # A query built from the transcript's own tokens finds them (idempotent normalisation).
    assert tokens(" ".join(found)) == found
    assert tokens(text.upper()) == tokens(text.upper().lower()) or not text.isascii()


@given(st.text(max_size=60), st.text(max_size=60))
def test_a_query_of_words_from_a_transcript_matches_it(said: str, other: str) -> None:
    transcript = f"{other} {said}"
    if tokens(said):
        assert set(KEY.query(said)) <= set(KEY.macs(tokens(transcript)))


def test_macs_are_keyed_truncated_and_never_show_the_key() -> None:
    other = SearchKey(os.urandom(32))
    assert KEY.mac("card") == KEY.mac("card")
    assert KEY.mac("card") != other.mac("card")
    assert KEY.mac("card") != KEY.mac("cards")
    assert len(KEY.mac("card")) == 32
    assert KEY.key_id != other.key_id
    assert "card" not in KEY.mac("card")
    assert repr(KEY) == f"<SearchKey {KEY.key_id}>"
    with pytest.raises(ConfigError, match="32 bytes"):
        SearchKey(b"short")


def test_a_key_the_disk_refuses_is_named_and_made_once_there_is_room(
    tiny_filesystem: Path,
) -> None:
    keys = tiny_filesystem / "keys"
    filler = fill_filesystem(tiny_filesystem)
    with pytest.raises(
        StorageError,
        match=f"^{key_path(keys)}: cannot create the search-index key: No space left on device$",
    ):
        load_search_key(keys, create=True)
    assert os.listdir(keys) == []
    filler.unlink()
    made = load_search_key(keys, create=True)
    assert load_search_key(keys, create=False).key_id == made.key_id


def test_the_key_file_is_made_once_private_and_refused_when_not(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    with pytest.raises(ConfigError, match="no search-index key"):
        load_search_key(keys, create=False)
    made = load_search_key(keys, create=True)
    path = key_path(keys)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_search_key(keys, create=True).key_id == made.key_id  # never replaced
    assert load_search_key(keys, create=False).key_id == made.key_id
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_search_key(keys, create=False)
    path.chmod(0o600)
    path.write_bytes(bytes(31))
    with pytest.raises(ConfigError, match="32 bytes, found 31"):
        load_search_key(keys, create=False)
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="cannot read"):
        load_search_key(keys, create=False)


def test_a_segment_keeps_bounded_text_and_a_bounded_set_of_distinct_words() -> None:
    collector = TextCollector(max_chars=30)
    collector.add("one two two three")
    collector.add("four five one six seven")  # past 30 characters: not kept
    collector.add("one four")
    texts = collector.take()
    assert texts == ("one two two three", "one four")
    assert collector.dropped == 1
    assert collector.take() == ()
    assert distinct_tokens(texts) == {"one", "two", "three", "four"}
    assert distinct_tokens(texts, limit=2) == {"one", "two"}
