"""A search's audit details: ids as typed, people as keyed MACs that survive how an officer typed
them (case, width, white space) and that a review matches exactly (``search_review.match``)."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.catalog.base import AuditEvent, Product, RecordingStatus
from recorder.catalog.search import RecordingQuery
from recorder.crypto.blind_index import SearchKey
from recorder.errors import ConfigError
from recorder.officer.search_audit import (
    PERSONAL_FIELDS,
    filter_mac,
    normalised,
    search_details,
)
from recorder.officer.search_review import Match, Wanted, match

KEY = SearchKey(os.urandom(32))
OTHER_KEY = SearchKey(os.urandom(32))

#: Letters whose upper and lower case fold to one form (unlike Turkish dotless i, say).
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZéÉüÜçÇñÑøØ0123456789@.-'"
words = st.lists(st.text(_LETTERS, min_size=1, max_size=12), min_size=1, max_size=4)
spaces = st.text(" \t\u3000\u00a0", min_size=1, max_size=3)


def fullwidth(text: str) -> str:
    """ASCII letters and digits as their fullwidth forms (what an IME may type)."""
    return "".join(chr(ord(ch) + 0xFEE0) if ch.isascii() and ch.isalnum() else ch for ch in text)


@st.composite
def typed(draw: st.DrawFn, parts: list[str]) -> str:
    """``parts`` as an officer might type them: any case, width, and spacing."""
    shown = []
    for part in parts:
        style = draw(st.sampled_from((str.upper, str.lower, str.swapcase, fullwidth, str)))
        shown.append(style(part))
    gaps = [draw(spaces) for _ in range(len(parts) + 1)]
    edge = draw(st.booleans())
    body = "".join(part + gap for part, gap in zip(shown, gaps[1:], strict=True)).rstrip()
    return (gaps[0] if edge else "") + body + (gaps[-1] if edge else "")


def event_of(audit_id: int, details: dict[str, object]) -> AuditEvent:
    return AuditEvent(
        audit_id, 0, "os:officer", "search", "recordings", "r", json.dumps(details), "h"
    )


@settings(max_examples=200, deadline=None, database=None)
@given(data=st.data(), parts=words, field=st.sampled_from(PERSONAL_FIELDS))
def test_a_name_typed_any_way_has_one_mac(
    data: st.DataObject, parts: list[str], field: str
) -> None:
    first, second = data.draw(typed(parts)), data.draw(typed(parts))
    assert filter_mac(KEY, field, first) == filter_mac(KEY, field, second)
    assert filter_mac(OTHER_KEY, field, first) != filter_mac(KEY, field, first)


def test_phone_numbers_reduce_as_the_search_reduces_them() -> None:
    same = ("+1 (555) 010-0199", "+1-555-010-0199", " +15550100199 ", "\uff0b\uff11 555 010 0199")
    assert len({filter_mac(KEY, "number", n) for n in same}) == 1
    # The search tells "+1555..." from "1555..." (a leading + is kept), so the MAC does too.
    assert filter_mac(KEY, "number", "15550100199") != filter_mac(KEY, "number", same[0])
    assert normalised("number", same[3]) == "+15550100199"


def test_a_filter_mac_never_equals_a_transcript_word_mac() -> None:
    # The same key, another label: the audit log cannot be joined to the transcript index.
    assert KEY.filter_mac("alice") != KEY.mac("alice")
    with pytest.raises(ConfigError, match="not a personal search filter"):
        filter_mac(KEY, "product", "phone")


def test_details_keep_ids_and_flags_as_typed_and_people_as_macs_only() -> None:
    planted = {
        "participant": "Alice Zq7",
        "agent": "Dana Zq7",
        "caller": "Carl Zq7",
        "queue": "Alice's Desk Zq7",
        "topic": "Merger talk Zq7",
        "host": "ceo.zq7@firm.example",
        "number": "+1 555 010 7777",
    }
    query = RecordingQuery(
        since_ms=1,
        until_ms=2,
        product=Product.PHONE,
        any_id="call-42",
        statuses=(RecordingStatus.COMPLETE,),
        has_gaps=True,
        policy="finra-4511",
        text_macs=("ab" * 16,),
        **planted,  # type: ignore[arg-type]
    )
    details = search_details(query, KEY, ["rec-1"])
    text = json.dumps(details).lower()
    for value in (*planted.values(), "5550107777"):
        assert value.lower() not in text
    filters = details["filters"]
    assert isinstance(filters, dict)
    assert filters["any_id"] == "call-42"
    assert filters["policy"] == "finra-4511"
    assert filters["has_gaps"] == "True"
    assert filters["since_ms"] == "1"
    assert set(filters).isdisjoint(PERSONAL_FIELDS)
    assert details["personal"] == [
        {"field": field, "mac": filter_mac(KEY, field, value)} for field, value in planted.items()
    ]
    assert details["mac_key"] == KEY.key_id
    assert details["results"] == ["rec-1"]
    # No key, a person named: refused, never the cleartext.
    with pytest.raises(ConfigError, match="no search-index key was loaded"):
        search_details(RecordingQuery(caller="Carl"), None, [])
    # No person named: no key needed, nothing MAC'd.
    plain = search_details(RecordingQuery(product=Product.PHONE), None, [])
    assert plain == {"filters": {"product": str(Product.PHONE)}, "results": []}


@settings(max_examples=150, deadline=None, database=None)
@given(
    data=st.data(),
    parts=words,
    others=st.lists(words, min_size=1, max_size=4),
    field=st.sampled_from(PERSONAL_FIELDS),
)
def test_a_review_finds_exactly_the_searches_for_the_value(
    data: st.DataObject, parts: list[str], others: list[list[str]], field: str
) -> None:
    """Searches for the value (typed any way), for other values, under the other filter kinds,
    under another key, and old cleartext rows: the review lists exactly the ones for it."""
    asked = data.draw(typed(parts))
    wanted = Wanted.of(KEY, asked, (field,))
    target = normalised(field, asked)
    events: list[AuditEvent] = []
    expected: list[tuple[int, bool]] = []
    # (value, whether it is the asked value typed another way): those must match by
    # construction; another value only where it happens to normalise the same.
    candidates = [(data.draw(typed(parts)), True) for _ in range(3)]
    candidates += [(data.draw(typed(other)), False) for other in others]
    for value, same in data.draw(st.permutations(candidates)):
        on = data.draw(st.sampled_from(PERSONAL_FIELDS))
        legacy = data.draw(st.booleans())
        if legacy:
            details: dict[str, object] = {"filters": {on: value}, "results": []}
        else:
            details = dict(search_details(RecordingQuery(**{on: value}), KEY, []))
        events.append(event_of(len(events) + 1, details))
        if on == field and (same or normalised(field, value) == target):
            expected.append((len(events), legacy))
    foreign = search_details(RecordingQuery(**{field: asked}), OTHER_KEY, [])
    events.append(event_of(len(events) + 1, dict(foreign)))
    found = [match(e, wanted) for e in events]
    hits = [(m.event.audit_id, m.legacy) for m in found if isinstance(m, Match)]
    assert hits == expected
    assert found[-1] == OTHER_KEY.key_id


def test_a_review_skips_what_it_cannot_read() -> None:
    wanted = Wanted.of(KEY, "Alice", PERSONAL_FIELDS)
    for details in ("not json", "[1]", '{"filters": 3}', '{"personal": [1, {"x": 2}]}'):
        event = AuditEvent(1, 0, "a", "search", "recordings", "r", details, "h")
        assert match(event, wanted) is None
