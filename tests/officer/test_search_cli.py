"""``recorder search`` as an officer types it: human times in zones, a table, ``--json`` with the
documented schema, paging by cursor, and a clear refusal for what the catalog cannot search."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from recorder.catalog import open_async_catalog
from recorder.catalog.base import (
    ParticipantInfo,
    Product,
    RecordingStart,
    RecordingStatus,
    StreamEvent,
    StreamState,
)
from recorder.config import load_config
from recorder.crypto.blind_index import SearchKey, load_search_key
from recorder.officer.when import TimeInputError, parse_when, show_duration, show_time, zone

# 2026-03-02 09:00 in London is 09:00 UTC (GMT); 2026-03-30 09:00 is 08:00 UTC (BST).
MARCH_2 = int(dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC).timestamp() * 1000)
MARCH_30 = int(dt.datetime(2026, 3, 30, 8, 0, tzinfo=dt.UTC).timestamp() * 1000)
APRIL_1 = int(dt.datetime(2026, 4, 1, 12, 0, tzinfo=dt.UTC).timestamp() * 1000)


def test_human_times_in_zones() -> None:
    london = zone("Europe/London")
    assert parse_when("2026-03-30 09:00", london) == MARCH_30
    assert parse_when("2026-03-30T10:00+02:00", london) == MARCH_30
    assert parse_when("2026-03-30T08:00Z", dt.UTC) == MARCH_30
    # A date alone: the start of that day, or as an end the end of it, in the zone given.
    end_of_march = parse_when("2026-03-31", london, end=True)
    assert end_of_march == int(dt.datetime(2026, 3, 31, 23, 0, tzinfo=dt.UTC).timestamp() * 1000)
    now = dt.datetime(2026, 3, 30, 12, 0, tzinfo=dt.UTC)
    assert parse_when("3d", dt.UTC, now=now) == int((now - dt.timedelta(days=3)).timestamp() * 1000)
    assert parse_when("yesterday", dt.UTC, now=now) == int(
        dt.datetime(2026, 3, 29, tzinfo=dt.UTC).timestamp() * 1000
    )
    assert show_time(MARCH_30, london) == "2026-03-30 09:00:00 BST"
    assert show_duration(3_723_000) == "1:02:03"
    with pytest.raises(TimeInputError, match="cannot read 'last tuesday'"):
        parse_when("last tuesday", dt.UTC)
    with pytest.raises(TimeInputError, match="unknown time zone 'Mars/Olympus'"):
        zone("Mars/Olympus")


@pytest.mark.parametrize(
    ("text", "end"),
    [("99999999d", False), ("9999999999999h", False), ("9999-12-31", True)],
)
def test_a_time_outside_the_calendar_is_named_not_a_traceback(text: str, end: bool) -> None:
    """Seen by a hostile-input sweep: ``search --since 99999999d`` and ``--until 9999-12-31``
    ended in ``OverflowError``."""
    with pytest.raises(TimeInputError, match=f"{text!r} is outside the dates"):
        parse_when(text, zone("Pacific/Kiritimati"), end=end)


_TIMEISH = st.one_of(
    st.text(max_size=40),
    st.builds(lambda n, unit: f"{n}{unit}", st.integers(0, 10**30), st.sampled_from("dhmw")),
    st.builds(
        lambda y, m, d: f"{y:04d}-{m:02d}-{d:02d}",
        st.integers(0, 99999),
        st.integers(0, 13),
        st.integers(0, 32),
    ),
)


@given(text=_TIMEISH, end=st.booleans())
def test_anything_typed_as_a_time_is_a_time_or_a_named_input_error(text: str, end: bool) -> None:
    try:
        value = parse_when(text, zone("Pacific/Kiritimati"), end=end)
    except TimeInputError:
        return
    assert isinstance(value, int)


async def seed(tmp_path: Path) -> dict[str, str]:
    config = load_config(None, {"XDG_STATE_HOME": str(tmp_path)})
    path = config.catalog.sqlite_path
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = {}
    async with await open_async_catalog(f"sqlite:///{path}", now_ms=MARCH_2) as catalog:
        for n, started in enumerate((MARCH_2, MARCH_30, APRIL_1)):
            stream = f"s{n}"
            await catalog.upsert_stream(
                StreamEvent(stream, Product.PHONE, f"call-{n}", StreamState.STARTED, started),
                now_ms=started,
            )
            row = await catalog.upsert_recording(
                RecordingStart(stream, Product.PHONE, f"call-{n}", started), now_ms=started
            )
            await catalog.add_participants(
                row.recording_id, [ParticipantInfo("c-1", "Jane Client", role="caller")]
            )
            await catalog.end_recording(
                row.recording_id,
                ended_ms=started + 95_000,
                reason="hangup",
                status=RecordingStatus.COMPLETE,
            )
            ids[stream] = row.recording_id
    return ids


def make_search_key(tmp_path: Path) -> SearchKey:
    """The key a recording host makes (and an officer host is given a copy of)."""
    config = load_config(None, {"XDG_STATE_HOME": str(tmp_path)})
    return load_search_key(config.keys.key_dir, create=True)


async def cli(tmp_path: Path, *args: str) -> tuple[int, str]:
    done = await trio.run_process(
        [sys.executable, "-m", "recorder", "search", *args],
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path)},
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr).decode()


async def test_search_by_caller_in_march_london_time_as_table_and_json(tmp_path: Path) -> None:
    ids = await seed(tmp_path)
    with trio.fail_after(60):
        march = ("--caller", "jane client", "--since", "2026-03-01", "--until", "2026-03-31")
        # No recording host made a search-index key here: said by name, not an empty result;
        # a search for a person is audited under that key, so it is refused too (fail closed).
        for refused in (("--text", "sell everything"), march):
            code, text = await cli(tmp_path, *refused)
            assert code == 3
            assert "search-index.key: no search-index key" in text
        code, text = await cli(tmp_path, "--product", "phone")  # no person: no key needed
        assert code == 0, text
        make_search_key(tmp_path)
        code, text = await cli(tmp_path, *march, "--tz", "Europe/London")
        assert code == 0, text
        assert "2026-03-30 09:00:00 BST" in text
        assert "0:01:35" in text
        assert ids["s0"] in text
        assert ids["s1"] in text
        assert ids["s2"] not in text
        code, text = await cli(tmp_path, *march, "--json", "--limit", "1")
        assert code == 0, text
        body = json.loads(text)
        assert body["schema"] == "rtms-recorder.search/1"
        [first] = body["recordings"]
        assert first["recording_id"] == ids["s1"]
        assert (first["duration_ms"], first["started"]) == (95_000, "2026-03-30 08:00:00 UTC")
        code, text = await cli(tmp_path, *march, "--json", "--after", body["next_cursor"])
        second = json.loads(text)
        assert [r["recording_id"] for r in second["recordings"]] == [ids["s0"]]
        assert second["next_cursor"] is None
        code, text = await cli(tmp_path, "--email", "a@example.com")
        assert code == 2
        assert "participant email is not searchable" in text
        code, text = await cli(tmp_path, "--since", "last tuesday")
        assert code == 2
        assert "cannot read 'last tuesday'" in text
