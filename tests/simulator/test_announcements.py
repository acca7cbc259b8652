"""The simulator's announcing webhooks read back as the recorder's completeness reads them."""

from __future__ import annotations

import json

import pytest

from recorder.completeness.announcements import parse_announcement
from recorder.products import Product
from recorder.rtms.webhook import WebhookKind, parse_webhook
from recorder.simulator.announcements import Announced, announcement
from recorder.simulator.scenario import Scenario

AT_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(
    "product", [Product.MEETING, Product.WEBINAR, Product.CONTACT_CENTER, Product.PHONE]
)
@pytest.mark.parametrize("ended", [False, True])
def test_each_product_round_trips(product: Product, ended: bool) -> None:
    scenario = Scenario(product=product, instance_id="inst/1+=")
    who = Announced(account_id="acct", user_id="agent-9", queue_id="q-1")
    event, payload = announcement(scenario, AT_MS, who, ended=ended)
    raw = json.dumps({"event": event, "event_ts": AT_MS, "payload": payload}).encode()
    parsed = parse_webhook(raw)
    assert parsed.kind is WebhookKind.ANNOUNCED
    assert parsed.product is product
    a = parse_announcement(parsed, 0)
    assert (a.instance_id, a.account_id, a.user_id) == ("inst/1+=", "acct", "agent-9")
    assert a.started_ms == AT_MS
    assert a.ended_ms == (AT_MS if ended else None)
    assert a.queue_id == ("q-1" if product is Product.CONTACT_CENTER else None)
    if product in (Product.MEETING, Product.WEBINAR):
        assert a.target_id == who.number
        assert a.known.topic == who.topic
    if product is Product.PHONE:
        assert (a.known.caller_number, a.known.callee_number) == (
            who.caller_number,
            who.callee_number,
        )


def test_sessions_and_unresolved_scenarios_are_refused() -> None:
    with pytest.raises(ValueError, match="no session"):
        announcement(Scenario(product=Product.SESSION, instance_id="s"), AT_MS)
    with pytest.raises(ValueError, match="resolved"):
        announcement(Scenario(product=Product.MEETING), AT_MS)
