"""``recorder simulate --zoom-api-port``: the scenarios wait as live instances until RTMS is
started through the simulated Zoom REST API, then run, over real HTTP both ways."""

from __future__ import annotations

from pathlib import Path

import trio

from recorder.config import Secret, ZoomConfig
from recorder.products import Product
from recorder.rtms.webhook import parse_webhook
from recorder.simulator.cli import run_simulate
from recorder.zoom.client import ZoomApiClient, ZoomCredentials
from recorder.zoom.control import ZoomRtmsController
from recorder.zoom.directory import RtmsAction
from tests.simulator.httpserver import http_server


async def test_scenarios_wait_for_a_rest_start_then_run(tmp_path: Path) -> None:
    scenario = tmp_path / "call.toml"
    scenario.write_text(
        'name = "pci"\nproduct = "contact_center"\ninstance_id = "eng-77"\nduration_s = 2\n'
    )
    received: list[tuple[dict[str, str], bytes]] = []
    lines: list[str] = []
    api_ready = trio.Event()

    def on_line(line: str) -> None:
        lines.append(line)
        if line.startswith("live "):
            api_ready.set()

    codes: list[int] = []
    finished = trio.Event()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(http_server, received)

            async def simulate() -> None:
                codes.append(
                    await run_simulate(
                        [scenario],
                        webhook_url=f"http://127.0.0.1:{port}/webhook",
                        secret_token="tok",
                        profile="doc-2026",
                        speed=4.0,
                        print_fn=on_line,
                        client_id="cid",
                        client_secret="csecret",
                        zoom_api_port=0,
                        zoom_account_id="acct-9",
                    )
                )
                finished.set()

            nursery.start_soon(simulate)
            await api_ready.wait()
            assert received == []  # nothing starts by itself
            [base_url] = [line.split()[2] for line in lines if line.startswith("zoom api: ")]
            settings = ZoomConfig(
                api_base_url=base_url, oauth_base_url=base_url, allow_insecure_loopback=True
            )
            credentials = ZoomCredentials("acct-9", Secret("cid"), Secret("csecret"))
            client = ZoomApiClient(settings, credentials)
            async with client:
                controller = ZoomRtmsController(client, rtms_client_id=Secret("cid"))
                await controller.change(Product.CONTACT_CENTER, "eng-77", RtmsAction.START)
            await finished.wait()  # the call ran its 2 s (at speed 4) and ended
            nursery.cancel_scope.cancel()
    assert (
        "live pci: contact_center engagement_id=eng-77; "
        "start it with: recorder rtms start contact_center eng-77"
    ) in lines
    events = [parse_webhook(body).event for _, body in received]
    assert events[0] == "contact_center.voice_rtms_started"
    assert events[-1] == "contact_center.voice_rtms_stopped"
    assert codes == [0]
    assert "csecret" not in "\n".join(lines)
