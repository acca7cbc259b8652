"""The Zoom webhook emitter: signed POSTs, Zoom's retry behaviour on a compressed schedule.

Rule 1: a body is serialised **once** (compact JSON) and every retry and scripted duplicate
sends exactly those bytes, like Zoom (rtms-protocol §8.3). Each attempt is signed afresh with
the time it is sent (``x-zm-request-timestamp`` in seconds), so a receiver's replay window holds.

Rule 2: "no 2xx within ``timeout_s``" (3 s at Zoom) schedules the next retry; Zoom's +5/+20/+60
minutes are compressed into ``retry_delays_s``.

Sinks are a Protocol: ``HttpWebhookSink`` (httpx) for real HTTP, ``CallableWebhookSink`` for tests
that want no HTTP at all. Nothing here logs bodies or signatures.
"""

from __future__ import annotations

import inspect
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import httpx
import trio

from recorder.errors import WebhookError
from recorder.rtms.webhook import (
    URL_VALIDATION_EVENT,
    signed_headers,
    url_validation_response,
)

logger = logging.getLogger(__name__)

#: Zoom wants a 2xx within 3 seconds (rtms-protocol §8.3).
DEFAULT_TIMEOUT_S: Final = 3.0
#: Zoom retries at +5 min, +20 min, +60 min; compressed by default so tests and demos see it.
DEFAULT_RETRY_DELAYS_S: Final = (0.5, 2.0, 6.0)


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """One POST as it goes on the wire."""

    headers: Mapping[str, str]
    body: bytes


class WebhookSink(Protocol):
    async def post(self, request: WebhookRequest) -> tuple[int, bytes] | None:
        """Deliver; return (HTTP status, response body), or None when delivery failed."""
        ...


class HttpWebhookSink:
    """POSTs to a URL with ``httpx.AsyncClient`` (trio backend through anyio)."""

    def __init__(
        self, url: str, *, client: httpx.AsyncClient, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self._url = url
        self._client = client
        self._timeout_s = timeout_s

    async def post(self, request: WebhookRequest) -> tuple[int, bytes] | None:
        try:
            response = await self._client.post(
                self._url,
                content=request.body,
                headers=dict(request.headers),
                timeout=self._timeout_s,
            )
        except httpx.HTTPError as exc:
            logger.info("webhook delivery failed: %s", type(exc).__name__)
            return None
        return response.status_code, response.content


class CallableWebhookSink:
    """Delivers to a Python callable, for tests that want the webhooks without HTTP.

    The callable gets ``(headers, body)`` and returns a status, or ``(status, response body)``;
    it may be sync or async.
    """

    def __init__(self, handler: Callable[[Mapping[str, str], bytes], Any]) -> None:
        self._handler = handler

    async def post(self, request: WebhookRequest) -> tuple[int, bytes] | None:
        result = self._handler(dict(request.headers), request.body)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, tuple):
            return int(result[0]), bytes(result[1])
        return int(result), b""


@dataclass(frozen=True, slots=True)
class Delivery:
    event: str
    event_ts: int
    attempt: int
    http_status: int | None
    body: bytes


def compact_body(event: str, event_ts: int, payload: Mapping[str, Any]) -> bytes:
    """The body bytes as Zoom sends them: compact JSON, ``event``, ``event_ts``, ``payload``."""
    document = {"event": event, "event_ts": event_ts, "payload": dict(payload)}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass
class WebhookSender:
    """Signs and delivers webhooks for one simulator; reports every attempt to ``on_delivery``."""

    sink: WebhookSink | None
    secret_token: str
    retry_delays_s: Sequence[float] = DEFAULT_RETRY_DELAYS_S
    timeout_s: float = DEFAULT_TIMEOUT_S
    #: Unix seconds for ``x-zm-request-timestamp`` (the trio clock may be a MockClock).
    wall_clock: Callable[[], float] = time.time

    async def _attempt(self, body: bytes) -> tuple[int, bytes] | None:
        assert self.sink is not None
        headers = signed_headers(self.secret_token, int(self.wall_clock()), body)
        # Zoom treats no answer within the timeout as a failure, whatever the sink does.
        with trio.move_on_after(self.timeout_s):
            return await self.sink.post(WebhookRequest(headers=headers, body=body))
        return None

    async def deliver(
        self,
        event: str,
        event_ts: int,
        body: bytes,
        on_delivery: Callable[[Delivery], None],
        *,
        retry: bool = True,
        first_attempt: int = 1,
    ) -> bool:
        """Send ``body``; retry (identical bytes) until a 2xx or the schedule runs out."""
        if self.sink is None:
            return False
        delays = [0.0, *self.retry_delays_s] if retry else [0.0]
        for index, delay in enumerate(delays):
            if delay:
                await trio.sleep(delay)
            result = await self._attempt(body)
            status = None if result is None else result[0]
            on_delivery(Delivery(event, event_ts, first_attempt + index, status, body))
            if status is not None and 200 <= status < 300:
                return True
        return False

    def body_for(self, event: str, event_ts: int, payload: Mapping[str, Any]) -> bytes:
        return compact_body(event, event_ts, payload)

    async def validate_endpoint(self) -> None:
        """Send ``endpoint.url_validation`` and check the reply (rtms-protocol §7.3).

        Raises:
            WebhookError: the endpoint did not answer 200 with the right ``encryptedToken``.
        """
        if self.sink is None:
            raise WebhookError("no webhook sink configured", reason="no_sink")
        plain_token = secrets.token_urlsafe(16)
        event_ts = int(self.wall_clock() * 1000)
        body = compact_body(URL_VALIDATION_EVENT, event_ts, {"plainToken": plain_token})
        result = await self._attempt(body)
        if result is None or result[0] != 200:
            raise WebhookError("url validation: no 200 answer", reason="validation_status")
        try:
            answer = json.loads(result[1])
        except ValueError as exc:
            raise WebhookError(
                "url validation: answer is not JSON", reason="validation_body"
            ) from exc
        if answer != url_validation_response(self.secret_token, plain_token):
            raise WebhookError("url validation: wrong encryptedToken", reason="validation_token")
