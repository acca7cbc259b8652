"""The HTTP ingress: Zoom webhooks, /healthz, /readyz and /metrics, as one small ASGI app.

Rule 1 (invariant 7): unauthenticated input does nothing. A webhook is verified on its raw body,
inside the replay window, *before* it is parsed; a forged, stale, oversized or malformed request is
answered 401 / 413 / 400, counted by reason, and leaves no trace: nothing is deduplicated,
queued or stored.

Rule 2: the answer never waits on the work, and a 200 is a promise. With a ``WebhookOutbox``
(the service's: the catalog), a verified stream event's dedup key AND its stream row (state,
URLs, ``event_ts``) are committed in one transaction before the 200; the bounded channel offer
that follows is only a wake-up, and the rejoin loop of any process is the durable path from the
catalog to an engagement. A failed commit is answered 503 with nothing written, so Zoom's retry
is never taken for a duplicate. Without an outbox (``WebhookDedup`` only), the event is
deduplicated and offered to the channel; if the channel is full the dedup entry is forgotten
again and the answer is 503. Zoom's 3 s budget is spent on verification, one transaction and the
channel offer.

Rule 3: retries collapse. Dedup keys are (event, stream or instance id, ``event_ts``): the same
delivery five times is handed on once; a failover ``rtms_started`` (new ``event_ts``) is not a
duplicate (rtms-protocol §8.3).

``endpoint.url_validation`` is answered with the signature checked when the headers are present
(rtms-protocol §7.3 leaves open whether Zoom signs it). Because an unsigned validation request
makes us compute ``HMAC(secret_token, plainToken)`` for a stranger, plainTokens are limited to a
base64url-like alphabet without ``:``: every ``x-zm-signature`` message starts with ``v0:``, so the
answer can never be replayed as a webhook signature.
"""

from __future__ import annotations

import collections
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from recorder.config import MIN_DEDUP_RETENTION_S, Config, Secret
from recorder.errors import RecorderError, WebhookError
from recorder.rtms.webhook import (
    LIFECYCLE_KINDS,
    WebhookEvent,
    WebhookHeaders,
    WebhookKind,
    dedup_key,
    parse_webhook,
    pick_headers,
    url_validation_response,
    verify_webhook_request,
)
from recorder.service import start_trace
from recorder.service.health import Liveness, Readiness
from recorder.service.metrics import METRICS_CONTENT_TYPE, IngressRejection, RecorderMetrics

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Kinds the service acts on; the rest are acknowledged and logged only.
HANDED_ON_KINDS: Final = frozenset(
    {WebhookKind.STARTED, WebhookKind.STOPPED, WebhookKind.INTERRUPTED, WebhookKind.CONCURRENCY}
)

#: Zoom's plainTokens are 22 base64url characters; ':' must never be allowed (module docs).
_PLAIN_TOKEN: Final = re.compile(r"[A-Za-z0-9_\-+/=]{1,128}")

#: Undoing a dedup entry runs shielded (it must happen even if the request is cancelled), so it
#: gets its own bound.
FORGET_TIMEOUT_S: Final = 2.0

#: In-memory dedup memory bound: ~100 k keys is a few tens of MB and days of heavy traffic.
DEFAULT_DEDUP_MAX_KEYS: Final = 100_000


class WebhookDedup(Protocol):
    """Remembers delivered webhooks for longer than Zoom's retry schedule."""

    async def first_seen(self, key: str, now_s: float) -> bool:
        """Record ``key``; True if it was not already recorded (within the retention window)."""
        ...

    async def forget(self, key: str) -> None:
        """Undo ``first_seen`` for a delivery that could not be handed on, so a retry counts."""
        ...


class LifecycleEvidence(Protocol):
    """Stores lifecycle webhooks (``rtms.start_failed``, ``rtms.concurrency_*``) as evidence."""

    async def record(self, event: WebhookEvent, raw_body: bytes, received_s: float) -> bool:
        """Store ``event`` whole; False for a retry already stored. Raises ``RecorderError``
        when it could not be stored."""
        ...


#: Bound on storing one lifecycle event before answering (Zoom waits 3 s at most).
LIFECYCLE_STORE_TIMEOUT_S: Final = 2.0


class AnnouncementSink(Protocol):
    """Stores what an announcing webhook (``meeting.started``...) makes a policy expect
    (``recorder.completeness.expectations``) before the answer."""

    async def record(self, event: WebhookEvent, raw_body: bytes, received_s: float) -> bool:
        """False when nothing new was stored (not expected, or a repeat). Raises
        ``WebhookError`` for a body it refuses, ``RecorderError`` when it could not store."""
        ...


class WebhookOutbox(Protocol):
    """Durably records a verified webhook before it is acknowledged (rule 2)."""

    async def accept(self, key: str, now_s: float, event: WebhookEvent) -> bool:
        """Record ``key`` and what ``event`` says, atomically; False for a duplicate.

        Raises ``RecorderError`` when nothing could be recorded (the caller answers 503).
        """
        ...


class MemoryWebhookDedup:
    """``WebhookDedup`` in process memory: one process, lost on restart (the catalog's is not).

    Keys expire ``retention_s`` after they were first seen; at most ``max_keys`` are kept (the
    oldest are evicted first, and each eviction is logged, since a retry of an evicted key would
    be handed on again; the stream lease still prevents a second connection).
    """

    def __init__(
        self, retention_s: float = MIN_DEDUP_RETENTION_S, *, max_keys: int = DEFAULT_DEDUP_MAX_KEYS
    ) -> None:
        self._retention_s = retention_s
        self._max_keys = max_keys
        self._seen: collections.OrderedDict[str, float] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now_s: float) -> None:
        while self._seen:
            key, seen_s = next(iter(self._seen.items()))
            if now_s - seen_s < self._retention_s:
                break
            del self._seen[key]

    async def first_seen(self, key: str, now_s: float) -> bool:
        self._expire(now_s)
        if key in self._seen:
            return False
        if len(self._seen) >= self._max_keys:
            self._seen.popitem(last=False)
            logger.warning("webhook dedup memory full: evicted the oldest key early")
        self._seen[key] = now_s
        return True

    async def forget(self, key: str) -> None:
        self._seen.pop(key, None)


@dataclass(frozen=True, slots=True)
class AcceptedWebhook:
    """A verified, parsed, first-seen webhook, as handed to the service."""

    event: WebhookEvent
    dedup_key: str
    #: The body exactly as signed: the evidence of who asked for this recording.
    raw_body: bytes
    #: Unix seconds at which the ingress accepted it.
    received_s: float


class _ClientGone(Exception):
    """The client disconnected before sending the whole body."""


@dataclass(frozen=True, slots=True)
class IngressSettings:
    secret_token: Secret
    webhook_path: str = "/webhook"
    max_body_bytes: int = 64 * 1024
    replay_window_s: float = 300

    @classmethod
    def from_config(cls, config: Config) -> IngressSettings:
        """The ingress part of ``config``. Raises ``ConfigError`` without ZOOM_SECRET_TOKEN."""
        config.secrets.require("zoom_secret_token")
        assert config.secrets.zoom_secret_token is not None
        return cls(
            secret_token=config.secrets.zoom_secret_token,
            webhook_path=config.service.webhook_path,
            max_body_bytes=config.service.max_webhook_body_bytes,
            replay_window_s=config.service.replay_window_s,
        )


def _json_response(status: int, body: object) -> tuple[int, bytes, bytes]:
    return status, json.dumps(body, separators=(",", ":")).encode(), b"application/json"


class IngressApp:
    """The ASGI application (HTTP and lifespan scopes only)."""

    def __init__(
        self,
        settings: IngressSettings,
        *,
        handoff: trio.MemorySendChannel[AcceptedWebhook],
        dedup: WebhookDedup,
        metrics: RecorderMetrics,
        liveness: Liveness,
        readiness: Readiness,
        clock: Callable[[], float] = time.time,
        lifecycle: LifecycleEvidence | None = None,
        outbox: WebhookOutbox | None = None,
        announcements: AnnouncementSink | None = None,
        metrics_page: Callable[[], bytes] | None = None,
    ) -> None:
        self._announcements = announcements
        #: What /metrics serves: this process's registry, or a worker tree's merged page.
        self._metrics_page = metrics_page or metrics.render
        self._settings = settings
        self._lifecycle = lifecycle
        self._handoff = handoff
        self._dedup = dedup
        self._outbox = outbox
        self._metrics = metrics
        self._liveness = liveness
        self._readiness = readiness
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path == self._settings.webhook_path:
            if method != "POST":
                await _respond(send, 405, b"", b"text/plain", allow=b"POST")
                return
            try:
                response = await self._webhook(scope, receive)
            except _ClientGone:
                return
        elif path in ("/healthz", "/readyz", "/metrics"):
            if method not in ("GET", "HEAD"):
                await _respond(send, 405, b"", b"text/plain", allow=b"GET, HEAD")
                return
            response = await self._observability(path)
        else:
            response = (404, b"not found\n", b"text/plain")
        status, body, content_type = response
        await _respond(send, status, b"" if method == "HEAD" else body, content_type)

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _observability(self, path: str) -> tuple[int, bytes, bytes]:
        if path == "/metrics":
            return 200, self._metrics_page(), METRICS_CONTENT_TYPE.encode()
        if path == "/healthz":
            age_s = round(self._liveness.age_s(), 3)
            if self._liveness.alive():
                return _json_response(200, {"alive": True, "loop_age_s": age_s})
            return _json_response(503, {"alive": False, "loop_age_s": age_s})
        ready, results = await self._readiness.run()
        body = {
            "ready": ready,
            "checks": {
                name: {
                    "ok": r.ok,
                    **({"error": r.detail} if not r.ok else {}),
                    **({"note": r.note} if r.note else {}),
                }
                for name, r in results.items()
            },
        }
        return _json_response(200 if ready else 503, body)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The request body, or None when it exceeds the cap (nothing more is read then)."""
        limit = self._settings.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                # Zoom gave up mid-body: nothing to answer, nothing to count; it will retry.
                raise _ClientGone
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _reject(self, exc: WebhookError) -> tuple[int, bytes, bytes]:
        self._metrics.webhook_rejected(exc.reason)
        # The reason and message name what was wrong, never a value from the request.
        logger.warning("webhook refused", extra={"reason": exc.reason, "detail": str(exc)})
        return _json_response(exc.http_status, {"error": exc.reason})

    async def _webhook(self, scope: Scope, receive: Receive) -> tuple[int, bytes, bytes]:
        raw_body = await self._read_body(scope, receive)
        if raw_body is None:
            reason = IngressRejection.BODY_TOO_LARGE
            self._metrics.webhook_rejected(reason)
            logger.warning("webhook refused", extra={"reason": reason})
            return _json_response(413, {"error": reason.value})
        headers = _webhook_headers(scope)
        now_s = self._clock()
        secret_token = self._settings.secret_token.reveal()
        window_s = self._settings.replay_window_s
        try:
            event = _parse_if_url_validation(raw_body)
            signed_body = raw_body
            if event is None or headers.signature is not None or headers.timestamp is not None:
                signed_body = verify_webhook_request(
                    secret_token, headers, raw_body, now_s=now_s, replay_window_s=window_s
                ).body
            if event is None:
                event = parse_webhook(signed_body)
        except WebhookError as exc:
            return self._reject(exc)
        self._metrics.webhook_received(event.kind)

        if event.kind is WebhookKind.URL_VALIDATION:
            return self._url_validation(event, signed=headers.signature is not None)
        if event.kind in LIFECYCLE_KINDS and self._lifecycle is not None:
            return await self._store_lifecycle(self._lifecycle, event, raw_body, now_s)
        if event.kind is WebhookKind.ANNOUNCED and self._announcements is not None:
            return await self._store_announcement(self._announcements, event, raw_body, now_s)
        if event.kind not in HANDED_ON_KINDS:
            logger.info("webhook acknowledged, not acted on", extra={"event": event.event})
            return 200, b"", b"text/plain"
        return await self._hand_on(event, raw_body, now_s)

    def _url_validation(self, event: WebhookEvent, *, signed: bool) -> tuple[int, bytes, bytes]:
        plain_token = event.plain_token or ""
        if not _PLAIN_TOKEN.fullmatch(plain_token):
            reason = IngressRejection.BAD_PLAIN_TOKEN
            self._metrics.webhook_rejected(reason)
            logger.warning("url validation refused", extra={"reason": reason})
            return _json_response(400, {"error": reason.value})
        logger.info("answering endpoint.url_validation", extra={"signed": signed})
        body = url_validation_response(self._settings.secret_token.reveal(), plain_token)
        return _json_response(200, body)

    async def _hand_on(
        self, event: WebhookEvent, raw_body: bytes, now_s: float
    ) -> tuple[int, bytes, bytes]:
        key = dedup_key(event)
        start_trace.mark("received", event.rtms_stream_id)
        context = {
            "event": event.event,
            "rtms_stream_id": event.rtms_stream_id,
            "instance_id": event.instance_id,
            "event_ts": event.event_ts,
        }
        if self._outbox is not None:
            return await self._hand_on_durably(self._outbox, event, raw_body, now_s, key, context)
        if not await self._dedup.first_seen(key, now_s):
            self._metrics.webhook_duplicate()
            logger.info("duplicate webhook dropped", extra=context)
            return 200, b"", b"text/plain"
        accepted = AcceptedWebhook(event=event, dedup_key=key, raw_body=raw_body, received_s=now_s)
        try:
            self._handoff.send_nowait(accepted)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            # Not handed on: forget it so that Zoom's retry is not mistaken for a duplicate.
            with trio.move_on_after(FORGET_TIMEOUT_S, shield=True) as forgetting:
                await self._dedup.forget(key)
            if forgetting.cancelled_caught:
                logger.error("dedup forget timed out: Zoom's retry may be taken for a duplicate")
            reason = IngressRejection.OVERLOADED
            self._metrics.webhook_rejected(reason)
            logger.error("webhook not accepted: service queue full or closed", extra=context)
            return _json_response(503, {"error": reason.value})
        logger.info("webhook accepted", extra=context)
        return 200, b"", b"text/plain"

    async def _store_lifecycle(
        self, lifecycle: LifecycleEvidence, event: WebhookEvent, raw_body: bytes, now_s: float
    ) -> tuple[int, bytes, bytes]:
        """Lifecycle events are evidence, not work: stored before the answer, so a 200 means
        stored (a 503 makes Zoom deliver it again)."""
        with trio.move_on_after(LIFECYCLE_STORE_TIMEOUT_S) as storing:
            try:
                if not await lifecycle.record(event, raw_body, now_s):
                    self._metrics.webhook_duplicate()
                return 200, b"", b"text/plain"
            except RecorderError as exc:
                logger.error("lifecycle webhook not stored event=%s: %s", event.event, exc)
        if storing.cancelled_caught:
            logger.error("lifecycle webhook not stored in time event=%s", event.event)
        reason = IngressRejection.EVIDENCE_NOT_STORED
        self._metrics.webhook_rejected(reason)
        return _json_response(503, {"error": reason.value})

    async def _store_announcement(
        self, sink: AnnouncementSink, event: WebhookEvent, raw_body: bytes, now_s: float
    ) -> tuple[int, bytes, bytes]:
        """An expectation is committed before the 200 (a 503 makes Zoom deliver it again)."""
        with trio.move_on_after(LIFECYCLE_STORE_TIMEOUT_S) as storing:
            try:
                await sink.record(event, raw_body, now_s)
                return 200, b"", b"text/plain"
            except WebhookError as exc:
                return self._reject(exc)
            except RecorderError as exc:
                logger.error("expectation not stored event=%s: %s", event.event, exc)
        if storing.cancelled_caught:
            logger.error("expectation not stored in time event=%s", event.event)
        reason = IngressRejection.CATALOG_UNAVAILABLE
        self._metrics.webhook_rejected(reason)
        return _json_response(503, {"error": reason.value})

    async def _hand_on_durably(
        self,
        outbox: WebhookOutbox,
        event: WebhookEvent,
        raw_body: bytes,
        now_s: float,
        key: str,
        context: Mapping[str, object],
    ) -> tuple[int, bytes, bytes]:
        try:
            first = await outbox.accept(key, now_s, event)
        except RecorderError as exc:
            # Nothing was committed: Zoom's retry will find neither the key nor the row.
            reason = IngressRejection.CATALOG_UNAVAILABLE
            self._metrics.webhook_rejected(reason)
            logger.error(
                "webhook not accepted: outbox write failed", extra={**context, "error": str(exc)}
            )
            return _json_response(503, {"error": reason.value})
        if not first:
            self._metrics.webhook_duplicate()
            logger.info("duplicate webhook dropped", extra=context)
            return 200, b"", b"text/plain"
        start_trace.mark("queued", event.rtms_stream_id)
        accepted = AcceptedWebhook(event=event, dedup_key=key, raw_body=raw_body, received_s=now_s)
        try:
            self._handoff.send_nowait(accepted)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            # The catalog holds it: the rejoin loop (here or in another process) acts on it.
            logger.warning("webhook recorded, wake-up not delivered: left to the rejoin loop")
        logger.info("webhook accepted", extra=context)
        return 200, b"", b"text/plain"


def _parse_if_url_validation(raw_body: bytes) -> WebhookEvent | None:
    """Parse only url-validation bodies before verification (they may come unsigned).

    Anything else is left unparsed until its signature has been checked (rule 1).
    """
    if b"endpoint.url_validation" not in raw_body:
        return None
    try:
        event = parse_webhook(raw_body)
    except WebhookError:
        return None
    return event if event.kind is WebhookKind.URL_VALIDATION else None


def _webhook_headers(scope: Scope) -> WebhookHeaders:
    return pick_headers(scope["headers"])


async def _respond(
    send: Send, status: int, body: bytes, content_type: bytes, *, allow: bytes | None = None
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    headers.append((b"cache-control", b"no-store"))
    if allow is not None:
        headers.append((b"allow", allow))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def serve_http(
    app: IngressApp,
    host: str,
    port: int,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    graceful_timeout_s: float = 5.0,
    bind: str | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` with hypercorn's trio worker until cancelled or ``shutdown_trigger`` returns.

    Reports the bound TCP port through ``task_status.started`` (use port 0 in tests). ``bind``
    (``fd://N``: a listening socket inherited from ``recorder serve --workers``) replaces
    ``host`` and ``port``.
    """
    config = HypercornConfig()
    config.bind = [bind or (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    config.graceful_timeout = graceful_timeout_s
    # Webhook bodies are capped by the app; this bounds what h11 buffers before the app runs.
    config.h11_max_incomplete_size = 16 * 1024

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(_serve, app, config, shutdown_trigger)
        bound_port = int(binds[0].rsplit(":", 1)[1])
        logger.info("http ingress listening", extra={"host": host, "port": bound_port})
        task_status.started(bound_port)


async def _serve(
    app: IngressApp,
    config: HypercornConfig,
    shutdown_trigger: Callable[[], Awaitable[None]] | None,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    # The app speaks plain ASGI mappings; hypercorn types each scope and event as a TypedDict.
    await serve(app, config, shutdown_trigger=shutdown_trigger, task_status=task_status)  # type: ignore[arg-type]
