"""The Zoom REST client against the simulator's REST API over real HTTP (hypercorn, httpx).

Waits for 429 and backoff go through the client's ``sleep`` seam, which records what it was
asked to wait and returns at once; token lifetimes run on a manual clock shared by the client
and the simulator. Nothing here sleeps for real.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import trio

from recorder.config import Secret, ZoomConfig
from recorder.errors import ConfigError, ZoomApiError
from recorder.products import Product
from recorder.rtms.webhook import parse_webhook, verify_webhook_request
from recorder.simulator import AudioLayout, Scenario, SimulatorConfig, open_simulator
from recorder.simulator.rest import RestSettings, ZoomRest, open_zoom_rest
from recorder.zoom.client import ZoomApiClient, ZoomCredentials, encode_path_id
from recorder.zoom.control import ZoomRtmsController
from recorder.zoom.directory import RtmsAction
from recorder.zoom.directory_http import HttpZoomDirectory

SECRET = "s2s-secret-value-0f9a8b7c"
CLIENT_ID = "s2s-client-id-1234"
TOKEN_TTL_S = 3600.0


@dataclass
class ManualClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class RecordingSleep:
    """The client's sleep seam: records each wait, returns at once."""

    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await trio.lowlevel.checkpoint()


@dataclass
class Harness:
    rest: ZoomRest
    client: ZoomApiClient
    clock: ManualClock
    sleep: RecordingSleep
    webhooks: list[tuple[Mapping[str, str], bytes]]
    webhook_arrived: trio.Event


def settings_for(base_url: str, **changes: Any) -> ZoomConfig:
    return replace(
        ZoomConfig(
            api_base_url=base_url,
            oauth_base_url=base_url,
            allow_insecure_loopback=True,
            timeout_s=5.0,
            max_retries=3,
            backoff_initial_s=0.5,
            backoff_max_s=4.0,
            retry_after_max_s=30.0,
            token_refresh_margin_s=60.0,
        ),
        **changes,
    )


def credentials(secret: str = SECRET) -> ZoomCredentials:
    return ZoomCredentials("acct-1", Secret(CLIENT_ID), Secret(secret))


@asynccontextmanager
async def harness(**changes: Any) -> AsyncIterator[Harness]:
    clock = ManualClock()
    sleep = RecordingSleep()
    webhooks: list[tuple[Mapping[str, str], bytes]] = []
    arrived = trio.Event()

    def on_webhook(headers: Mapping[str, str], body: bytes) -> int:
        webhooks.append((headers, body))
        arrived.set()
        return 200

    rest_settings = RestSettings(
        account_id="acct-1",
        client_id=CLIENT_ID,
        client_secret=SECRET,
        rtms_client_id="rtms-app",
        token_ttl_s=TOKEN_TTL_S,
    )
    sim_config = SimulatorConfig(webhook_handler=on_webhook, secret_token="wh-token")
    with trio.fail_after(30):
        async with (
            open_simulator(sim_config) as sim,
            open_zoom_rest(sim, rest_settings, clock=clock) as rest,
        ):
            client = ZoomApiClient(
                settings_for(rest.base_url, **changes), credentials(), sleep=sleep, clock=clock
            )
            async with client:
                yield Harness(rest, client, clock, sleep, webhooks, arrived)


def zcc(instance_id: str = "eng-1", seconds: float = 30.0) -> Scenario:
    return Scenario(
        product=Product.CONTACT_CENTER,
        instance_id=instance_id,
        layout=AudioLayout.CHANNELS,
        duration_s=seconds,
    )


def controller(h: Harness) -> ZoomRtmsController:
    return ZoomRtmsController(h.client, rtms_client_id=Secret("rtms-app"))


# --- tokens ------------------------------------------------------------------------------------


async def test_a_token_is_fetched_once_and_refreshed_before_it_expires() -> None:
    async with harness() as h:
        h.rest.add_live(zcc(), profile={"direction": "inbound"})
        directory = HttpZoomDirectory(h.client)
        for _ in range(3):
            await directory.engagement("eng-1")
        assert (h.client.tokens_fetched, h.rest.stats.tokens_issued) == (1, 1)
        # 59 minutes later the token is within its refresh margin (60 s): a new one is fetched
        # before the request, so the API never sees an expired token.
        h.clock.now += TOKEN_TTL_S - 59
        await directory.engagement("eng-1")
        assert (h.client.tokens_fetched, h.rest.stats.tokens_issued) == (2, 2)
        assert [s for _, p, s in h.rest.stats.requests if p.startswith("/v2/")] == [200] * 4


async def test_a_401_refreshes_the_token_once_and_retries() -> None:
    async with harness() as h:
        h.rest.add_live(zcc())
        directory = HttpZoomDirectory(h.client)
        await directory.engagement("eng-1")
        h.rest.expire_tokens()  # revoked at Zoom's end: the cached token is not expired yet
        await directory.engagement("eng-1")
        assert h.client.tokens_fetched == 2
        statuses = [s for _, p, s in h.rest.stats.requests if p.startswith("/v2/")]
        assert statuses == [200, 401, 200]
        # A second 401 in a row is Zoom's answer, with its code.
        h.rest.inject(401, code=124, message="Invalid access token.", times=2)
        with pytest.raises(ZoomApiError) as caught:
            await directory.engagement("eng-1")
        assert (caught.value.status, caught.value.code) == (401, 124)
        assert h.client.tokens_fetched == 3
        assert h.sleep.waits == []


async def test_bad_client_credentials_are_refused_without_showing_the_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with harness() as h:
        wrong = ZoomApiClient(
            settings_for(h.rest.base_url), credentials("not-the-secret"), sleep=h.sleep
        )
        async with wrong:
            with pytest.raises(ZoomApiError) as caught:
                await HttpZoomDirectory(wrong).meeting("123")
        assert caught.value.status == 400
        assert "invalid_client" in str(caught.value)
        shown = str(caught.value) + repr(wrong) + repr(credentials("not-the-secret"))
        assert "not-the-secret" not in shown + caplog.text
        assert CLIENT_ID not in repr(credentials())
        assert h.sleep.waits == []  # a 400 is a verdict, not retried


# --- retries -----------------------------------------------------------------------------------


async def test_429_waits_retry_after_then_succeeds() -> None:
    async with harness() as h:
        h.rest.add_live(zcc())
        h.rest.inject(429, retry_after="3")
        h.rest.inject(429, retry_after="1")
        info = await HttpZoomDirectory(h.client).engagement("eng-1")
        assert info.engagement_id == "eng-1"
        assert h.sleep.waits == [3.0, 1.0]
        assert h.client.retries == 2


async def test_a_retry_after_beyond_the_cap_fails_at_once_with_429() -> None:
    async with harness(retry_after_max_s=30.0) as h:
        h.rest.inject(429, retry_after="120")
        with pytest.raises(ZoomApiError) as caught:
            await HttpZoomDirectory(h.client).meeting("1")
        assert caught.value.status == 429
        assert "Retry-After 120" in str(caught.value)
        assert h.sleep.waits == []


async def test_5xx_is_retried_with_backoff_and_gives_up_after_max_retries() -> None:
    async with harness() as h:
        h.rest.add_live(zcc())
        h.rest.inject(503, times=2)
        await HttpZoomDirectory(h.client).engagement("eng-1")
        assert h.sleep.waits == [0.5, 1.0]
        h.sleep.waits.clear()
        h.rest.inject(500, code=500, message="boom", times=10)
        with pytest.raises(ZoomApiError) as caught:
            await HttpZoomDirectory(h.client).engagement("eng-1")
        assert (caught.value.status, caught.value.code) == (500, 500)
        assert h.sleep.waits == [0.5, 1.0, 2.0]  # three retries, then Zoom's answer


async def test_the_token_endpoint_is_retried_on_5xx_too() -> None:
    async with harness() as h:
        h.rest.add_live(zcc())
        h.rest.inject(502, where="oauth")
        await HttpZoomDirectory(h.client).engagement("eng-1")
        assert h.sleep.waits == [0.5]
        assert h.client.tokens_fetched == 1


async def test_network_errors_are_retried_then_reported_without_a_status() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on ``port`` now: every connect is refused.
    sleep = RecordingSleep()
    client = ZoomApiClient(
        settings_for(f"http://127.0.0.1:{port}", max_retries=2), credentials(), sleep=sleep
    )
    with trio.fail_after(10):
        async with client:
            with pytest.raises(ZoomApiError) as caught:
                await HttpZoomDirectory(client).meeting("1")
    assert caught.value.status is None
    assert "ConnectError" in str(caught.value)
    assert sleep.waits == [0.5, 1.0]


# --- Zoom's refusals, with their codes ---------------------------------------------------------


async def test_each_zoom_refusal_is_surfaced_with_its_code() -> None:
    async with harness() as h:
        ctl = controller(h)
        h.rest.add_live(zcc("eng-1"))
        h.rest.add_live(zcc("eng-denied"), allowed=False)

        async def refused(product: Product, target: str, action: RtmsAction) -> ZoomApiError:
            with pytest.raises(ZoomApiError) as caught:
                await ctl.change(product, target, action)
            return caught.value

        unknown = await refused(Product.MEETING, "99999", RtmsAction.START)
        assert (unknown.status, unknown.code) == (404, 3001)
        assert "99999" in str(unknown)
        not_allowed = await refused(Product.CONTACT_CENTER, "eng-denied", RtmsAction.START)
        assert (not_allowed.status, not_allowed.code) == (400, 2308)
        assert "Not allowed to start RTMS app" in str(not_allowed)
        not_started = await refused(Product.CONTACT_CENTER, "eng-1", RtmsAction.PAUSE)
        assert (not_started.status, not_started.code) == (400, 2310)
        await ctl.change(Product.CONTACT_CENTER, "eng-1", RtmsAction.START)
        again = await refused(Product.CONTACT_CENTER, "eng-1", RtmsAction.START)
        assert (again.code, "already started" in str(again)) == (2310, True)
        # Phone has start and stop only; Video SDK sessions have no REST API at all: refused
        # before anything is sent.
        before = len(h.rest.stats.requests)
        phone = await refused(Product.PHONE, "call-1", RtmsAction.PAUSE)
        session = await refused(Product.SESSION, "s-1", RtmsAction.START)
        assert phone.status is None
        assert session.status is None
        assert len(h.rest.stats.requests) == before
        await ctl.change(Product.CONTACT_CENTER, "eng-1", RtmsAction.STOP)


async def test_a_malformed_request_is_refused_with_code_300() -> None:
    async with harness() as h:
        h.rest.add_live(zcc())
        for body in ({}, {"action": "explode", "settings": {"client_id": "rtms-app"}}):
            with pytest.raises(ZoomApiError) as caught:
                await h.client.request(
                    "PUT", "/contact_center/eng-1/rtms_app/status", json_body=body
                )
            assert (caught.value.status, caught.value.code) == (400, 300)
        with pytest.raises(ZoomApiError) as caught:
            await h.client.request(
                "PUT",
                "/contact_center/eng-1/rtms_app/status",
                json_body={"action": "start", "settings": {"client_id": "another-app"}},
            )
        assert caught.value.code == 300


# --- control drives the simulated stream -------------------------------------------------------


async def test_start_pause_resume_stop_drive_the_stream_and_start_sends_a_signed_webhook() -> None:
    async with harness() as h:
        ctl = controller(h)
        live = h.rest.add_live(zcc("eng-7"))
        await ctl.change(Product.CONTACT_CENTER, "eng-7", RtmsAction.START)
        eng = live.engagement
        assert eng is not None
        with trio.fail_after(5):
            await h.webhook_arrived.wait()
        headers, body = h.webhooks[0]
        verify_webhook_request("wh-token", headers, body, now_s=h.rest.sim.config.wall_clock())
        started = parse_webhook(body)
        assert (started.event, started.instance_id) == (
            "contact_center.voice_rtms_started",
            "eng-7",
        )
        await ctl.change(Product.CONTACT_CENTER, "eng-7", RtmsAction.PAUSE)
        assert eng.paused
        await ctl.change(Product.CONTACT_CENTER, "eng-7", RtmsAction.RESUME)
        assert not eng.paused
        await ctl.change(Product.CONTACT_CENTER, "eng-7", RtmsAction.STOP)
        assert eng.stopping
        assert eng.stats.stop_reason == 25
        assert h.rest.stats.changes == [
            ("contact_center", "eng-7", action) for action in ("start", "pause", "resume", "stop")
        ]


async def test_meeting_uuids_with_slashes_are_encoded_twice_and_reach_the_meeting() -> None:
    uuid = "/ab//cD+e=="
    assert encode_path_id(uuid) == "%252Fab%252F%252FcD%252Be%253D%253D"
    assert encode_path_id("Ab+c=") == "Ab%2Bc%3D"
    async with harness() as h:
        live = h.rest.add_live(
            Scenario(product=Product.MEETING, instance_id=uuid, duration_s=30.0),
            rest_id="81234567890",
            profile={"id": 81234567890, "topic": "Q3 review", "host_id": "h1", "host_email": "h@x"},
        )
        ctl = controller(h)
        await ctl.change(Product.MEETING, "81234567890", RtmsAction.START)
        await ctl.change(Product.MEETING, uuid, RtmsAction.PAUSE)
        assert live.engagement is not None
        assert live.engagement.paused
        info = await HttpZoomDirectory(h.client).meeting("81234567890")
        assert (info.meeting_id, info.topic, info.host_email) == ("81234567890", "Q3 review", "h@x")
        await ctl.change(Product.MEETING, uuid, RtmsAction.STOP)


async def test_the_directory_reads_engagements_and_phone_calls() -> None:
    async with harness() as h:
        h.rest.add_live(
            zcc("eng-9"),
            profile={
                "direction": "inbound",
                "queues": [{"queue_id": "q1", "queue_name": "Billing"}],
                "agents": [{"user_id": "a1", "display_name": "Ann Agent", "user_email": "a@x"}],
                "consumers": [{"consumer_number": "+15550100"}],
            },
        )
        h.rest.add_live(
            Scenario(product=Product.PHONE, instance_id="call-5", duration_s=30.0),
            profile={
                "direction": "outbound",
                "caller_did_number": "+15550111",
                "callee_did_number": "+15550122",
                "user_id": "u5",
            },
        )
        directory = HttpZoomDirectory(h.client)
        eng = await directory.engagement("eng-9")
        assert (eng.queue_name, eng.agent_name, eng.consumer_number, eng.direction) == (
            "Billing",
            "Ann Agent",
            "+15550100",
            "inbound",
        )
        call = await directory.phone_call("call-5")
        assert (call.caller_number, call.callee_number, call.user_id) == (
            "+15550111",
            "+15550122",
            "u5",
        )
        with pytest.raises(ZoomApiError) as caught:
            await directory.phone_call("call-unknown")
        assert caught.value.status == 404
        with pytest.raises(ZoomApiError) as caught:
            await directory.engagement("nope")
        assert (caught.value.status, caught.value.code) == (404, 1001)


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "insecure"),
    [
        ("http://api.zoom.us", True),
        ("http://127.0.0.1:9", False),
        ("ftp://127.0.0.1", True),
        ("https://", False),
    ],
)
def test_plain_http_is_refused_except_to_loopback_when_allowed(url: str, insecure: bool) -> None:
    with pytest.raises(ConfigError, match="refused"):
        ZoomApiClient(
            settings_for(url, allow_insecure_loopback=insecure),
            credentials(),
        )


async def test_an_oversized_or_garbled_answer_is_a_clear_error_not_a_memory_hog() -> None:
    async with harness(max_retries=0) as h:
        h.rest.add_live(
            Scenario(product=Product.MEETING, instance_id="big", duration_s=30.0),
            profile={"topic": "x" * 2_000_000},
        )
        with pytest.raises(ZoomApiError, match="larger than 1048576 bytes") as caught:
            await HttpZoomDirectory(h.client).meeting("big")
        assert caught.value.status == 200
        h.rest.inject(500, message="y" * 2_000_000)
        with pytest.raises(ZoomApiError) as caught:
            await HttpZoomDirectory(h.client).meeting("big")
        assert caught.value.status == 500
        assert len(str(caught.value)) < 400
