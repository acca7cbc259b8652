"""The simulator's list APIs (``recorder.simulator.rest`` rule 6) refuse what Zoom refuses: a
missing or malformed ``type``, ``from`` or ``to`` and an unknown or foreign
``next_page_token`` answer 400 with code 300; paging hands out every item once."""

from __future__ import annotations

import base64
import json

import trio

from recorder.products import Product
from recorder.simulator import AudioLayout, Scenario, SimulatorConfig, open_simulator
from recorder.simulator.rest import RestSettings, ZoomRest

DAY = "2026-03-02"
START_MS = 1_772_445_600_000  # 2026-03-02T10:00:00Z


async def bearer(rest: ZoomRest) -> dict[str, str]:
    basic = base64.b64encode(b"sim_client_id:sim_client_secret").decode()
    status, _, body = await rest.handle(
        "POST",
        "/oauth/token",
        "grant_type=account_credentials&account_id=sim_account",
        {"authorization": f"Basic {basic}"},
        b"",
    )
    assert status == 200
    return {"authorization": f"Bearer {json.loads(body)['access_token']}"}


async def test_list_endpoints_page_and_refuse_bad_queries() -> None:
    with trio.fail_after(10):
        async with open_simulator(SimulatorConfig(webhook_handler=lambda h, b: 200)) as sim:
            rest = ZoomRest(sim, RestSettings(list_page_size=2))
            for n in range(5):
                rest.add_live(
                    Scenario(
                        product=Product.PHONE,
                        instance_id=f"call-{n}",
                        layout=AudioLayout.MIXED,
                        duration_s=1.0,
                    ),
                    started_ms=START_MS + n,
                )
            auth = await bearer(rest)

            async def get(path: str, query: str) -> tuple[int, dict[str, object]]:
                status, _, body = await rest.handle("GET", path, query, auth, b"")
                return status, json.loads(body)

            seen: list[str] = []
            query = f"from={DAY}&to={DAY}"
            while True:
                status, page = await get("/v2/phone/call_history", query)
                assert status == 200
                entries = page["call_history"]
                assert isinstance(entries, list)
                seen += [e["call_id"] for e in entries]
                token = page["next_page_token"]
                if not token:
                    break
                query = f"from={DAY}&to={DAY}&next_page_token={token}"
            assert seen == [f"call-{n}" for n in range(5)]
            for path, bad in (
                ("/v2/phone/call_history", "from=2026-03-02"),
                ("/v2/phone/call_history", "from=yesterday&to=2026-03-02"),
                ("/v2/metrics/meetings", f"from={DAY}&to={DAY}"),
                ("/v2/metrics/meetings", f"type=pastOne&from={DAY}&to={DAY}"),
                ("/v2/contact_center/engagements", f"from={DAY}&to={DAY}"),
                ("/v2/phone/call_history", f"from={DAY}&to={DAY}&next_page_token=forged"),
            ):
                status, answer = await get(path, bad)
                assert (status, answer["code"]) == (400, 300), (path, bad)
            # A token of one listing does not page another.
            _, first = await get("/v2/phone/call_history", f"from={DAY}&to={DAY}")
            status, _ = await get(
                "/v2/phone/call_history",
                f"from=2026-03-01&to={DAY}&next_page_token={first['next_page_token']}",
            )
            assert status == 400
