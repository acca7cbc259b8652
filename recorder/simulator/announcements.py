"""Zoom's announcing webhooks for a simulated engagement: what a completeness policy listens to.

``meeting.started`` / ``webinar.started`` / ``contact_center.engagement_started`` /
``phone.callee_answered`` (and with ``ended=True`` their ends) for a ``Scenario``, in the shapes
``recorder.completeness.announcements`` reads (``payload.account_id``, the rest in
``payload.object``). Sent signed through the simulator's own webhook sender, so a recorder under
test sees exactly what Zoom would send before (or instead of) ``rtms_started``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from recorder.products import Product
from recorder.simulator.scenario import Scenario
from recorder.simulator.simulator import Simulator


@dataclass(frozen=True, slots=True)
class Announced:
    """Who and what the announcement names (what a policy matches on)."""

    account_id: str = "sim-account"
    #: Meeting host, Contact Center agent, or the callee (the firm's side) of a phone call.
    user_id: str = "sim-user"
    queue_id: str = "sim-queue"
    queue_name: str = "Simulated Queue"
    topic: str = "Simulated meeting"
    #: The meeting number Zoom's REST APIs take (meetings and webinars).
    number: str = "85000000001"
    caller_number: str = "+15550100001"
    callee_number: str = "+15550100002"


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def announcement(
    scenario: Scenario, at_ms: int, who: Announced = Announced(), *, ended: bool = False
) -> tuple[str, Mapping[str, Any]]:
    """The event name and payload announcing ``scenario`` (resolved: it needs its instance id)."""
    if not scenario.instance_id:
        raise ValueError("announce a resolved scenario (scenario.resolved()): no instance id")
    product = scenario.product
    if product in (Product.MEETING, Product.WEBINAR):
        obj: dict[str, Any] = {
            "uuid": scenario.instance_id,
            "id": who.number,
            "host_id": who.user_id,
            "topic": who.topic,
            "start_time": _iso(at_ms),
        }
        if ended:
            obj["end_time"] = _iso(at_ms)
        event = f"{product.value}.{'ended' if ended else 'started'}"
    elif product is Product.CONTACT_CENTER:
        obj = {
            "engagement_id": scenario.instance_id,
            "queue_id": who.queue_id,
            "queue_name": who.queue_name,
            "user_id": who.user_id,
            "direction": "inbound",
            "consumer_number": who.caller_number,
        }
        event = f"contact_center.engagement_{'ended' if ended else 'started'}"
    elif product is Product.PHONE:
        obj = {
            "call_id": scenario.instance_id,
            "caller": {"phone_number": who.caller_number},
            "callee": {"phone_number": who.callee_number, "user_id": who.user_id},
        }
        obj["call_end_time" if ended else "answer_start_time"] = _iso(at_ms)
        event = f"phone.callee_{'ended' if ended else 'answered'}"
    else:
        raise ValueError(f"Zoom announces no {product.value} (Video SDK sessions have no event)")
    return event, {"account_id": who.account_id, "object": obj}


async def announce(
    sim: Simulator, scenario: Scenario, who: Announced = Announced(), *, ended: bool = False
) -> int | None:
    """Send the announcement of ``scenario`` once, signed; the HTTP status (None: not delivered)."""
    at_ms = int(sim.config.wall_clock() * 1000)
    event, payload = announcement(scenario, at_ms, who, ended=ended)
    return await sim.send_webhook(event, payload, event_ts=at_ms)
