"""``RtmsController`` over Zoom's REST API: start, stop, pause and resume RTMS.

Endpoints (rtms-protocol §10 and §16):

* meetings and webinars: ``PATCH /v2/live_meetings/{meetingId}/rtms_app/status``
* Contact Center: ``PUT /v2/contact_center/{engagementId}/rtms_app/status``
* Zoom Phone: ``PATCH /v2/phone/calls/{callId}/rtms_app/status`` (start and stop only)

Body ``{"action": ..., "settings": {"client_id": <the RTMS app's client id>}}``; a meeting
start may name ``participant_user_id``. Video SDK sessions have no REST API (§10.3): asking is
refused here, before anything is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from recorder.config import Secret
from recorder.errors import ZoomApiError
from recorder.products import Product
from recorder.zoom.client import ZoomApiClient, encode_path_id
from recorder.zoom.directory import RtmsAction

#: The actions each product's REST API takes.
SUPPORTED_ACTIONS: Final[Mapping[Product, frozenset[RtmsAction]]] = {
    Product.MEETING: frozenset(RtmsAction),
    Product.WEBINAR: frozenset(RtmsAction),
    Product.CONTACT_CENTER: frozenset(RtmsAction),
    Product.PHONE: frozenset({RtmsAction.START, RtmsAction.STOP}),
    Product.SESSION: frozenset(),
}


def status_request(
    product: Product,
    target_id: str,
    action: RtmsAction,
    *,
    rtms_client_id: str,
    participant_user_id: str | None = None,
) -> tuple[str, str, dict[str, Any]]:
    """(HTTP method, path, JSON body) for one change; pure.

    Raises:
        ZoomApiError: the product has no REST API for ``action`` (no request is made).
    """
    if action not in SUPPORTED_ACTIONS[product]:
        allowed = ", ".join(sorted(a.value for a in SUPPORTED_ACTIONS[product])) or "none"
        raise ZoomApiError(
            f"Zoom has no REST API to {action.value} RTMS of a {product.value} "
            f"(supported: {allowed})"
        )
    segment = encode_path_id(target_id)
    settings: dict[str, Any] = {"client_id": rtms_client_id}
    if participant_user_id and product in (Product.MEETING, Product.WEBINAR):
        settings["participant_user_id"] = participant_user_id
    body = {"action": action.value, "settings": settings}
    if product is Product.CONTACT_CENTER:
        return "PUT", f"/contact_center/{segment}/rtms_app/status", body
    if product is Product.PHONE:
        return "PATCH", f"/phone/calls/{segment}/rtms_app/status", body
    return "PATCH", f"/live_meetings/{segment}/rtms_app/status", body


class ZoomRtmsController:
    """``recorder.zoom.directory.RtmsController`` on a ``ZoomApiClient``."""

    def __init__(self, client: ZoomApiClient, *, rtms_client_id: Secret) -> None:
        self._client = client
        self._rtms_client_id = rtms_client_id

    def __repr__(self) -> str:
        return f"<ZoomRtmsController {self._client!r}>"

    async def change(
        self,
        product: Product,
        target_id: str,
        action: RtmsAction,
        *,
        participant_user_id: str | None = None,
    ) -> None:
        method, path, body = status_request(
            product,
            target_id,
            action,
            rtms_client_id=self._rtms_client_id.reveal(),
            participant_user_id=participant_user_id,
        )
        await self._client.request(method, path, json_body=body)
