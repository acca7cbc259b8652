"""The transcript blind index in the catalog, on SQLite and PostgreSQL: MACs in, recordings
holding every queried MAC out (the rarest word's postings walked newest first, the others
probed), idempotent adds, and no word ever accepted where a MAC belongs."""

from __future__ import annotations

import pytest
import trio

from recorder.catalog import AsyncCatalog, _textindex
from recorder.catalog.base import Product
from recorder.catalog.search import RecordingQuery
from recorder.crypto.blind_index import SearchKey
from recorder.errors import CatalogError
from tests.catalog.support import T0
from tests.catalog.test_search import HOUR, recording

pytestmark = pytest.mark.timeout(60)
KEY = SearchKey(bytes(range(32)))


async def indexed(catalog: AsyncCatalog, n: int, *transcripts: str) -> str:
    rid = await recording(catalog, n, product=Product.CONTACT_CENTER, started_ms=T0 + n * HOUR)
    for text in transcripts:  # one records segment each
        await catalog.add_transcript_tokens(rid, KEY.key_id, KEY.query(text), T0 + n * HOUR)
    return rid


async def word_recordings(catalog: AsyncCatalog, word: str) -> tuple[int, int]:
    def read() -> tuple[int, int]:
        with catalog.sync._transaction("t", write=False) as tx:  # type: ignore[attr-defined]
            counts, indexed = _textindex.token_stats(tx, [KEY.mac(word)])
        return counts[KEY.mac(word)], indexed

    return await trio.to_thread.run_sync(read)


async def found(catalog: AsyncCatalog, text: str, **filters: object) -> list[str]:
    page = await catalog.search_recordings(
        RecordingQuery(text_macs=tuple(KEY.query(text)), **filters)  # type: ignore[arg-type]
    )
    return [hit.recording.recording_id for hit in page.hits]


async def test_every_word_must_be_in_one_recording_in_any_segment(catalog: AsyncCatalog) -> None:
    card = await indexed(catalog, 1, "please read me the card", "number ending 4111")
    other = await indexed(catalog, 2, "the card was declined")
    later = await indexed(catalog, 3, "Card number? NUMBER!")
    await recording(catalog, 4, started_ms=T0 + 4 * HOUR)  # never indexed
    assert await found(catalog, "card number") == [later, card]  # newest first
    assert await found(catalog, "CARD") == [later, other, card]
    assert await found(catalog, "declined card") == [other]
    assert await found(catalog, "card unicorn") == []
    assert await found(catalog, "card", since_ms=T0 + 2 * HOUR) == [later, other]
    page = await catalog.search_recordings(
        RecordingQuery(text_macs=tuple(KEY.query("card")), limit=2)
    )
    assert page.next_cursor is not None
    rest = await catalog.search_recordings(
        RecordingQuery(text_macs=tuple(KEY.query("card")), after=page.next_cursor)
    )
    assert [h.recording.recording_id for h in rest.hits] == [card]


async def test_adding_is_idempotent_and_counted_per_key(catalog: AsyncCatalog) -> None:
    rid = await indexed(catalog, 1, "hello there")
    macs = KEY.query("hello there")
    await catalog.add_transcript_tokens(rid, KEY.key_id, macs, T0)  # a replayed intent
    await catalog.add_transcript_tokens(rid, "other-key", [SearchKey(bytes(32)).mac("x")], T0)
    assert await found(catalog, "hello") == [rid]
    assert await catalog.text_index_keys() == {KEY.key_id: 1, "other-key": 1}
    # The planner's statistics count each (word, recording) once, however often it is sent.
    second = await indexed(catalog, 2, "hello again")
    assert await found(catalog, "hello") == [second, rid]
    assert await word_recordings(catalog, "hello") == (2, 2)
    assert await word_recordings(catalog, "there") == (1, 2)
    many = [SearchKey(bytes(32)).mac(str(i)) for i in range(_textindex._ROWS_PER_INSERT * 2 + 3)]
    await catalog.add_transcript_tokens(rid, KEY.key_id, many, T0)
    for mac in (many[0], many[-1]):
        page = await catalog.search_recordings(RecordingQuery(text_macs=(mac,)))
        assert [h.recording.recording_id for h in page.hits] == [rid]


async def test_a_word_where_a_mac_belongs_is_refused(catalog: AsyncCatalog) -> None:
    rid = await indexed(catalog, 1)
    for bad in ("card", "CARD" * 8, "0" * 31, "g" * 32, "0" * 33, "A" * 32):
        with pytest.raises(CatalogError, match="never a word"):
            await catalog.add_transcript_tokens(rid, KEY.key_id, [KEY.mac("ok"), bad], T0)
        with pytest.raises(CatalogError, match="never a word"):
            await catalog.search_recordings(RecordingQuery(text_macs=(bad,)))
    assert await catalog.text_index_keys() == {}


async def test_tokens_of_an_unknown_recording_are_refused(catalog: AsyncCatalog) -> None:
    with pytest.raises(CatalogError, match="no recording 'nope'"):
        await catalog.add_transcript_tokens("nope", KEY.key_id, [KEY.mac("a")], T0)


async def test_destroying_a_recordings_keys_removes_its_index_and_refuses_late_batches(
    catalog: AsyncCatalog,
) -> None:
    kept = await indexed(catalog, 1, "card number")
    gone = await indexed(catalog, 2, "card expiry")
    assert await word_recordings(catalog, "card") == (2, 2)
    await catalog.destroy_recording_keys(gone, reason="retention", now_ms=T0 + 9 * HOUR)
    assert await found(catalog, "card") == [kept]
    assert await found(catalog, "expiry") == []
    assert await word_recordings(catalog, "card") == (1, 1)
    assert await word_recordings(catalog, "expiry") == (0, 1)
    # A journaled batch of the destroyed recording that arrives late adds nothing.
    await catalog.add_transcript_tokens(gone, KEY.key_id, KEY.query("card expiry"), T0)
    assert await found(catalog, "expiry") == []
    assert await catalog.text_index_keys() == {KEY.key_id: 1}
