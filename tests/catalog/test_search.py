"""``search_recordings`` on SQLite and PostgreSQL: every filter an officer uses, paging, and the
indexes of migration 14 in use on the queries that must stay fast."""

from __future__ import annotations

import pytest

from recorder.catalog import AsyncCatalog
from recorder.catalog._search import search_sql
from recorder.catalog.base import (
    HoldScope,
    ParticipantInfo,
    Product,
    RecordingStart,
    RecordingStatus,
    StreamEvent,
    StreamState,
)
from recorder.catalog.schema import Engine
from recorder.catalog.search import RecordingQuery
from recorder.errors import CatalogError
from tests.catalog.support import T0, CatalogTarget, explain, fill_for_plans

HOUR = 3_600_000


async def recording(
    catalog: AsyncCatalog,
    n: int,
    *,
    product: Product = Product.CONTACT_CENTER,
    started_ms: int,
    ended_ms: int | None = None,
    status: RecordingStatus = RecordingStatus.COMPLETE,
) -> str:
    stream, instance = f"stream-{n}", f"instance-{n}"
    await catalog.upsert_stream(
        StreamEvent(stream, product, instance, StreamState.STARTED, started_ms, ("wss://a",)),
        now_ms=started_ms,
    )
    row = await catalog.upsert_recording(
        RecordingStart(stream, product, instance, started_ms, meeting_number=f"9{n}"),
        now_ms=started_ms,
    )
    if status is not RecordingStatus.ACTIVE:
        await catalog.end_recording(
            row.recording_id,
            ended_ms=ended_ms or started_ms + 600_000,
            reason="done",
            status=status,
        )
    return row.recording_id


async def world(catalog: AsyncCatalog) -> dict[str, str]:
    ids = {
        "march_call": await recording(catalog, 1, started_ms=T0 + 1 * HOUR),
        "march_meeting": await recording(
            catalog, 2, product=Product.MEETING, started_ms=T0 + 2 * HOUR
        ),
        "broken": await recording(
            catalog, 3, started_ms=T0 + 3 * HOUR, status=RecordingStatus.INCOMPLETE
        ),
        "later": await recording(catalog, 4, started_ms=T0 + 48 * HOUR),
    }
    await catalog.set_contact_center(
        ids["march_call"],
        queue_id="q-1",
        queue_name="Equities Desk",
        agent_id="ag-1",
        agent_name="Tom Trader",
    )
    await catalog.add_participants(
        ids["march_call"],
        [
            ParticipantInfo("ag-1", "Tom Trader", role="callee"),
            ParticipantInfo("cust-7", "Jane Client", role="caller"),
        ],
    )
    await catalog.add_participants(
        ids["march_meeting"],
        [ParticipantInfo("16778240", "Jane Client"), ParticipantInfo("16779264", "Bob")],
    )
    await catalog.add_gap(
        ids["broken"],
        "mixed",
        start_ms=T0 + 3 * HOUR + 1000,
        end_ms=T0 + 3 * HOUR + 3000,
        cause="media_interrupted",
    )
    await catalog.add_gap(
        ids["march_call"],
        "channel-1",
        start_ms=T0 + HOUR,
        end_ms=T0 + HOUR + 500,
        cause="packets_lost",
    )
    await catalog.place_hold(
        matter="M-1",
        scope=HoldScope.INSTANCE,
        scope_value="instance-4",
        placed_by="legal",
        reason="litigation",
        now_ms=T0,
    )
    await catalog.set_recording_policy(
        ids["march_call"], name="finra-4511", sha256="ab" * 32, retain_days=2192, now_ms=T0
    )
    return ids


async def found(catalog: AsyncCatalog, **filters: object) -> set[str]:
    page = await catalog.search_recordings(RecordingQuery(**filters))  # type: ignore[arg-type]
    return {hit.recording.recording_id for hit in page.hits}


async def test_every_filter_finds_what_it_names(catalog: AsyncCatalog) -> None:
    ids = await world(catalog)
    assert await found(catalog) == set(ids.values())
    assert await found(catalog, since_ms=T0, until_ms=T0 + 24 * HOUR) == {
        ids["march_call"],
        ids["march_meeting"],
        ids["broken"],
    }
    assert await found(catalog, product=Product.MEETING) == {ids["march_meeting"]}
    for any_id in ("instance-1", "stream-1", "91", "q-1", "ag-1", "cust-7", ids["march_call"]):
        assert await found(catalog, any_id=any_id) == {ids["march_call"]}, any_id
    assert await found(catalog, participant="jane client") == {
        ids["march_call"],
        ids["march_meeting"],
    }
    assert await found(catalog, agent="TOM TRADER") == {ids["march_call"]}
    assert await found(catalog, agent="ag-1") == {ids["march_call"]}
    assert await found(catalog, caller="Jane Client") == {ids["march_call"]}
    assert await found(catalog, caller="Tom Trader") == set()
    assert await found(catalog, queue="equities desk") == {ids["march_call"]}
    assert await found(catalog, statuses=(RecordingStatus.INCOMPLETE,)) == {ids["broken"]}
    assert await found(catalog, has_gaps=True) == {ids["broken"], ids["march_call"]}
    assert await found(catalog, gap_cause="media_interrupted") == {ids["broken"]}
    assert await found(catalog, on_hold=True) == {ids["later"]}
    assert await found(catalog, policy="finra-4511") == {ids["march_call"]}
    assert await found(catalog, policy="hipaa") == set()
    assert await found(catalog, agent="Tom Trader", since_ms=T0 + 2 * HOUR) == set()


async def test_hits_carry_gaps_hold_and_participants(catalog: AsyncCatalog) -> None:
    ids = await world(catalog)
    page = await catalog.search_recordings(RecordingQuery())
    by_id = {hit.recording.recording_id: hit for hit in page.hits}
    broken = by_id[ids["broken"]]
    assert (broken.gap_count, broken.gap_ms, broken.on_hold) == (1, 2000, False)
    assert by_id[ids["later"]].on_hold
    assert by_id[ids["march_call"]].participant_count == 2
    assert by_id[ids["march_call"]].duration_ms == 600_000


async def test_pages_are_newest_first_and_cover_everything_once(catalog: AsyncCatalog) -> None:
    for n in range(7):
        # Two recordings share each start time: the id breaks the tie.
        await recording(catalog, n, started_ms=T0 + (n // 2) * HOUR)
    seen: list[str] = []
    starts: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = await catalog.search_recordings(RecordingQuery(limit=3, after=cursor))
        pages += 1
        seen += [hit.recording.recording_id for hit in page.hits]
        starts += [hit.recording.started_ms for hit in page.hits]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 7
    assert starts == sorted(starts, reverse=True)
    with pytest.raises(CatalogError, match="not a search cursor"):
        await catalog.search_recordings(RecordingQuery(after="garbage"))
    with pytest.raises(CatalogError, match="limit"):
        await catalog.search_recordings(RecordingQuery(limit=0))


def test_name_and_time_searches_use_the_search_indexes(target: CatalogTarget) -> None:
    """The plans both engines choose for a grown catalog (see ``fill_for_plans``)."""
    fill_for_plans(target, 20_000)
    plan = explain(
        target, *search_sql(RecordingQuery(participant="person 7"), Engine(target.engine))
    )
    assert "participants_by_lower_name" in plan, plan
    plan = explain(target, *search_sql(RecordingQuery(), Engine(target.engine)))
    assert "recordings_by_started_id" in plan, plan
    # Newest first straight off the index: no sort of every recording for one page.
    sort = "USE TEMP B-TREE" if target.engine == "sqlite" else "Sort"
    assert sort not in plan, plan
