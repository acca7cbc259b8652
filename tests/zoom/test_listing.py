"""``HttpZoomListing``: its tolerant parsers (hypothesis), its bounded paging, and the three
products listed over real HTTP from the simulator's REST API, several pages each."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.config import Secret, ZoomConfig
from recorder.errors import ZoomApiError
from recorder.products import Product
from recorder.simulator import AudioLayout, Scenario, SimulatorConfig, open_simulator
from recorder.simulator.rest import RestSettings, ZoomRest, open_zoom_rest
from recorder.zoom.client import ZoomApiClient, ZoomCredentials
from recorder.zoom.listing_http import (
    HttpZoomListing,
    PageGuard,
    parse_call_item,
    parse_engagement_item,
    parse_meeting_item,
    parse_page,
    parse_time_ms,
)

ACCOUNT = "acct-list"
SECRET = "s2s-list-secret-77aa"
CLIENT_ID = "s2s-list-client"
DAY_MS = 86_400_000
#: 2026-03-02T00:00:00Z: the listed range is this day.
SINCE_MS = int(dt.datetime(2026, 3, 2, tzinfo=dt.UTC).timestamp() * 1000)
UNTIL_MS = SINCE_MS + DAY_MS


# --- parsers -----------------------------------------------------------------------------------

json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)
keys = st.sampled_from(
    [
        "uuid",
        "id",
        "engagement_id",
        "call_id",
        "start_time",
        "end_time",
        "answer_time",
        "host_id",
        "user_id",
        "topic",
        "email",
        "queues",
        "agents",
        "consumers",
        "queue_id",
        "direction",
        "account_id",
        "caller_did_number",
    ]
)
times = st.datetimes(timezones=st.just(dt.UTC)).map(lambda d: d.isoformat()) | st.sampled_from(
    ["2026-03-02T10:00:00Z", "2026-03-02T10:00:00", "not a time", "", "9999-99-99T00:00:00Z"]
)
items = st.dictionaries(keys, json_value | times, max_size=10)


@settings(max_examples=100, deadline=None)
@given(item=items)
def test_the_item_parsers_never_fail_and_never_invent_an_id_or_a_start(
    item: dict[str, Any],
) -> None:
    for parsed in (
        parse_meeting_item(item, Product.MEETING, ACCOUNT),
        parse_engagement_item(item, ACCOUNT),
        parse_call_item(item, ACCOUNT),
    ):
        if parsed is None:
            continue
        assert parsed.instance_id
        assert parsed.target_id
        assert parsed.instance_id in {
            str(item.get(k)).strip() for k in ("uuid", "id", "engagement_id", "call_id")
        }
        start = parse_time_ms(item.get("start_time"))
        assert parsed.started_ms in {start, parse_time_ms(item.get("answer_time"))}
        assert parsed.account_id is not None
        for text in (parsed.user_id, parsed.queue_id, parsed.known.topic):
            assert text is None or len(text) <= 512


@settings(max_examples=100, deadline=None)
@given(body=json_value)
def test_a_page_of_any_shape_is_read_or_refused_with_a_zoom_api_error(body: object) -> None:
    if not isinstance(body, dict):
        with pytest.raises(ZoomApiError, match="GET /v2/metrics/meetings: the answer is not"):
            parse_page(body, ("meetings",), "GET /v2/metrics/meetings")
        return
    page = parse_page(body, ("meetings",), "GET /v2/metrics/meetings")
    assert all(isinstance(item, dict) for item in page.items)
    assert page.next_token is None or page.next_token.strip()


def test_a_listed_item_reads_zoom_shapes_and_keeps_the_items_own_account() -> None:
    engagement = {
        "engagement_id": "eng-9",
        "start_time": "2026-03-02T10:00:00Z",
        "end_time": "2026-03-02T10:05:00+00:00",
        "queues": [{"queue_id": "q-fx", "queue_name": "FX desk"}],
        "agents": [{"user_id": "agent-7", "display_name": "Dana"}],
        "direction": "inbound",
    }
    a = parse_engagement_item(engagement, ACCOUNT)
    assert a is not None
    assert (a.product, a.instance_id, a.queue_id, a.user_id, a.account_id) == (
        Product.CONTACT_CENTER,
        "eng-9",
        "q-fx",
        "agent-7",
        ACCOUNT,
    )
    assert (a.started_ms, a.ended_ms) == (SINCE_MS + 36_000_000, SINCE_MS + 36_300_000)
    assert (a.known.queue_name, a.known.agent_name) == ("FX desk", "Dana")
    meeting = {"uuid": "u/1==", "id": 850, "start_time": "2026-03-02T10:00:00", "account_id": "x"}
    m = parse_meeting_item(meeting, Product.WEBINAR, ACCOUNT)
    assert m is not None
    assert (m.product, m.instance_id, m.target_id, m.account_id) == (
        Product.WEBINAR,
        "u/1==",
        "850",
        "x",
    )
    assert parse_call_item({"call_id": "c-1"}, ACCOUNT) is None  # no start: skipped, not guessed
    assert parse_meeting_item({"start_time": "2026-03-02T10:00:00Z"}, Product.MEETING, None) is None


def test_paging_ends_on_a_repeated_token_and_after_max_pages() -> None:
    guard = PageGuard("GET /v2/x", max_pages=50)
    assert guard.follow("a")
    assert guard.follow("b")
    with pytest.raises(ZoomApiError, match="repeats after 3 page"):
        guard.follow("a")
    guard = PageGuard("GET /v2/x", max_pages=3)
    assert guard.follow("a")
    assert guard.follow("b")
    with pytest.raises(ZoomApiError, match="more than 3 pages"):
        guard.follow("c")
    assert not PageGuard("GET /v2/x", max_pages=1).follow(None)
    with pytest.raises(ZoomApiError, match="longer than"):
        parse_page({"next_page_token": "x" * 5000}, ("meetings",), "GET /v2/x")


# --- over HTTP ---------------------------------------------------------------------------------


def scenario(product: Product, instance_id: str) -> Scenario:
    layout = AudioLayout.CHANNELS if product is Product.CONTACT_CENTER else AudioLayout.MIXED
    return Scenario(product=product, instance_id=instance_id, layout=layout, duration_s=1.0)


def populate(rest: ZoomRest) -> dict[str, Product]:
    """Five meetings (one live), a webinar, five engagements, five calls on the listed day; one
    of each the day before (not listed); one meeting never started (not listed)."""
    listed: dict[str, Product] = {}
    for product, prefix, profile in (
        (Product.MEETING, "mtg", {"topic": "Desk", "host_id": "host-1"}),
        (
            Product.CONTACT_CENTER,
            "eng",
            {"queues": [{"queue_id": "q-fx"}], "agents": [{"user_id": "agent-1"}]},
        ),
        (Product.PHONE, "call", {"user_id": "trader-1", "caller_did_number": "+15550100"}),
    ):
        for n in range(5):
            instance_id = f"{prefix}-{n}"
            start = SINCE_MS + (n + 1) * 3_600_000
            ended = None if (product is Product.MEETING and n == 4) else start + 600_000
            rest_id = str(85000000000 + n) if product is Product.MEETING else None
            rest.add_live(
                scenario(product, instance_id),
                rest_id=rest_id,
                profile=profile,
                started_ms=start,
                ended_ms=ended,
            )
            listed[instance_id] = product
        rest.add_live(
            scenario(product, f"{prefix}-old"),
            profile=profile,
            started_ms=SINCE_MS - 3_600_000,
            ended_ms=SINCE_MS - 3_000_000,
        )
    rest.add_live(
        scenario(Product.WEBINAR, "web-0"),
        rest_id="86000000001",
        started_ms=SINCE_MS + 60_000,
        ended_ms=SINCE_MS + 120_000,
    )
    listed["web-0"] = Product.WEBINAR
    rest.add_live(scenario(Product.MEETING, "mtg-never"), rest_id="85099999999")
    return listed


@asynccontextmanager
async def listing_over_http(**rest_changes: Any) -> AsyncIterator[tuple[ZoomRest, ZoomApiClient]]:
    rest_settings = RestSettings(
        account_id=ACCOUNT, client_id=CLIENT_ID, client_secret=SECRET, **rest_changes
    )
    with trio.fail_after(20):
        async with (
            open_simulator(SimulatorConfig(webhook_handler=lambda h, b: 200)) as sim,
            open_zoom_rest(sim, rest_settings) as rest,
        ):
            config = ZoomConfig(
                api_base_url=rest.base_url,
                oauth_base_url=rest.base_url,
                allow_insecure_loopback=True,
                timeout_s=5.0,
                max_retries=0,
            )
            credentials = ZoomCredentials(ACCOUNT, Secret(CLIENT_ID), Secret(SECRET))
            async with ZoomApiClient(config, credentials) as client:
                yield rest, client


async def test_three_products_are_listed_page_by_page_within_the_range() -> None:
    async with listing_over_http(list_page_size=2) as (rest, client):
        listed = populate(rest)
        listing = HttpZoomListing(client, ACCOUNT, page_size=2)
        found = await listing.started_between(SINCE_MS, UNTIL_MS)
        assert {a.instance_id: a.product for a in found} == listed
        assert listing.skipped == 0
        by_id = {a.instance_id: a for a in found}
        assert by_id["mtg-2"].target_id == "85000000002"
        assert (by_id["mtg-2"].user_id, by_id["mtg-2"].known.topic) == ("host-1", "Desk")
        assert by_id["mtg-4"].ended_ms is None  # live
        assert (by_id["eng-3"].queue_id, by_id["eng-3"].user_id) == ("q-fx", "agent-1")
        assert by_id["call-1"].known.caller_number == "+15550100"
        assert {a.account_id for a in found} == {ACCOUNT}
        gets = [path for method, path, status in rest.stats.requests if method == "GET"]
        # 4 past meetings + 1 live: 2 + 1 pages; engagements 3 pages; calls 3 (old ones are
        # on the day before, outside ``from``); webinars past 1, live 1.
        assert gets.count("/v2/metrics/meetings") == 3
        assert gets.count("/v2/contact_center/engagements") == 3
        assert gets.count("/v2/phone/call_history") == 3
        assert gets.count("/v2/metrics/webinars") == 2
        # Forty days are asked in two windows (Zoom lists at most a month at once); the
        # day-before items are in range now, and nothing is listed twice.
        before = len(rest.stats.requests)
        wider = await listing.started_between(SINCE_MS - 40 * DAY_MS, UNTIL_MS)
        assert sorted(a.instance_id for a in wider) == sorted(
            [*listed, "mtg-old", "eng-old", "call-old"]
        )
        windows = {
            (path, q.split("from=")[1][:10])
            for _, path, q in rest.stats.queries[before:]
            if "from=" in q
        }
        assert len([w for w in windows if w[0] == "/v2/phone/call_history"]) == 2
        with pytest.raises(ZoomApiError, match="non-empty range"):
            await listing.started_between(UNTIL_MS, SINCE_MS)
        # A narrower range leaves out what started before it, though the dashboard answers days.
        later = await listing.started_between(SINCE_MS + 3 * 3_600_000, UNTIL_MS)
        assert {a.instance_id for a in later} == {
            f"{p}-{n}" for p in ("mtg", "eng", "call") for n in (2, 3, 4)
        }


async def test_a_looping_next_page_token_ends_the_listing_with_an_error() -> None:
    async with listing_over_http(list_page_size=1, loop_page_tokens=True) as (rest, client):
        populate(rest)
        listing = HttpZoomListing(client, ACCOUNT, products=(Product.CONTACT_CENTER,))
        with pytest.raises(ZoomApiError, match="next_page_token repeats"):
            await listing.started_between(SINCE_MS, UNTIL_MS)
        assert len(rest.stats.requests) < 10


async def test_zoom_refusing_a_listing_surfaces_its_code() -> None:
    async with listing_over_http() as (rest, client):
        rest.inject(400, code=4711, message="Invalid access token, does not contain scopes")
        listing = HttpZoomListing(client, ACCOUNT, products=(Product.PHONE,))
        with pytest.raises(ZoomApiError) as caught:
            await listing.started_between(SINCE_MS, UNTIL_MS)
        assert (caught.value.code, caught.value.status) == (4711, 400)
        assert "does not contain scopes" in str(caught.value)
