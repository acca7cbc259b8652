"""The simulator's Zoom REST API: Server-to-Server OAuth, RTMS control and the directory.

Served over real HTTP (hypercorn on trio, loopback) next to the simulator's WebSocket server,
for ``recorder.zoom``'s client and for demos::

    async with open_simulator(config) as sim, open_zoom_rest(sim, RestSettings()) as rest:
        rest.add_live(Scenario(product=Product.CONTACT_CENTER, ...), profile={...})
        # POST {rest.base_url}/oauth/token, PUT {rest.base_url}/v2/contact_center/{id}/...

Rules:

1. ``POST /oauth/token?grant_type=account_credentials&account_id=...`` with HTTP Basic auth
   answers ``{"access_token", "token_type": "bearer", "expires_in", "scope", "api_url"}``;
   wrong credentials, account or grant answer 400 with Zoom's ``{"reason", "error"}``.
2. Every ``/v2`` request needs a live bearer token: none, unknown or expired answer 401
   ``{"code": 124, "message": ...}``. ``expire_tokens()`` ends every token at once.
3. ``rtms_app/status`` (meetings and webinars PATCH ``/v2/live_meetings/{id}``, Contact Center
   PUT ``/v2/contact_center/{id}``, Phone PATCH ``/v2/phone/calls/{id}``) answers 204 and drives
   the simulated stream: ``start`` starts an engagement of a live instance (its signed
   ``*.rtms_started`` webhook follows), ``pause`` / ``resume`` change its pause state (session
   and stream state updates on signaling), ``stop`` ends it with stop reason 25
   MANUAL_API_TRIGGERED. Refusals carry Zoom's codes: 3001/1001 unknown instance (404), 2308
   not allowed (the instance refuses this app), 2310 not started / already started / already
   in that state, 300 a malformed body or an action the product lacks (Phone: start, stop).
4. ``GET /v2/meetings/{id}``, ``GET /v2/contact_center/engagements/{id}`` and
   ``GET /v2/phone/call_history?call_ids={id}`` answer the profile the test registered.
6. The list APIs answer the instances added with a ``started_ms`` (or on which RTMS was started),
   ``list_page_size`` at a time with an opaque ``next_page_token`` (an unknown one: 400, code
   300): ``GET /v2/metrics/meetings`` and ``/v2/metrics/webinars`` (``type=past|live``, ``from``
   / ``to`` UTC dates, inclusive), ``GET /v2/contact_center/engagements`` (``from`` / ``to`` UTC
   date-times), ``GET /v2/phone/call_history`` without ``call_ids`` (``from`` / ``to`` UTC
   dates). A missing or malformed ``type``, ``from`` or ``to`` is 400, code 300.
5. ``inject(status, ...)`` queues failures (429 with ``Retry-After``, 5xx) that the next
   requests answer instead, for the token endpoint or the API separately.

Nothing here logs a token, a secret or a body.
"""

from __future__ import annotations

import base64
import binascii
import collections
import datetime as dt
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Final
from urllib.parse import parse_qs, unquote

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from recorder.products import Product
from recorder.rtms.messages import StopReason
from recorder.simulator.engagement import Engagement
from recorder.simulator.scenario import Scenario
from recorder.simulator.simulator import Simulator

logger = logging.getLogger(__name__)

_MAX_BODY: Final = 64 * 1024
_CONTROL_PRODUCTS: Final = {
    "live_meetings": (Product.MEETING, Product.WEBINAR),
    "contact_center": (Product.CONTACT_CENTER,),
    "phone": (Product.PHONE,),
}
_PHONE_ACTIONS: Final = frozenset({"start", "stop"})
_ACTIONS: Final = frozenset({"start", "stop", "pause", "resume"})


@dataclass(frozen=True, slots=True)
class RestSettings:
    account_id: str = "sim_account"
    #: The Server-to-Server OAuth app's credentials.
    client_id: str = "sim_client_id"
    client_secret: str = "sim_client_secret"  # noqa: S105 (a simulator default, not a secret)
    #: The RTMS app whose client id ``settings.client_id`` must name (None: any).
    rtms_client_id: str | None = None
    token_ttl_s: float = 3600.0
    host: str = "127.0.0.1"
    port: int = 0
    #: Items per page of the list APIs (rule 6); small in tests so that clients page.
    list_page_size: int = 30
    #: A buggy Zoom: every page of a listing names the same ``next_page_token`` again.
    loop_page_tokens: bool = False


@dataclass
class LiveInstance:
    """A meeting, engagement or call that is live at "Zoom" (RTMS may start on it)."""

    scenario: Scenario
    #: The id in REST paths: a meeting's number, else the instance id.
    rest_id: str
    #: What the directory GET answers (Zoom's JSON shape for the product).
    profile: Mapping[str, Any]
    #: False: this app may not start RTMS here (2308).
    allowed: bool = True
    engagement: Engagement | None = None
    #: Set when RTMS was started on it through the API (``engagement`` is then set).
    started: trio.Event = field(default_factory=trio.Event)
    #: When it started and ended at "Zoom" (Unix ms): what the list APIs answer. Unset, the
    #: start of the stream RTMS ran on it counts; never started, it is not listed.
    started_ms: int | None = None
    ended_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Injected:
    status: int
    retry_after: str | None = None
    code: int | None = None
    message: str = ""


@dataclass
class RestStats:
    tokens_issued: int = 0
    #: Every token handed out (tests check that none leaks anywhere).
    issued: list[str] = field(default_factory=list)
    #: (method, path without query, status) of every answered request, in order.
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    #: (method, path without query, query) of every request, in order (no token is in a query).
    queries: list[tuple[str, str, str]] = field(default_factory=list)
    #: (product, id, action) of every accepted RTMS status change.
    changes: list[tuple[str, str, str]] = field(default_factory=list)


Answer = tuple[int, dict[str, str], bytes]


def _json(status: int, body: object, headers: Mapping[str, str] | None = None) -> Answer:
    data = json.dumps(body, separators=(",", ":")).encode()
    return status, {"content-type": "application/json", **(headers or {})}, data


def _zoom_error(status: int, code: int, message: str) -> Answer:
    return _json(status, {"code": code, "message": message})


def _path_id(raw: str) -> str:
    """Decode one path segment; Zoom's double-encoded UUIDs (``%252F``) decode twice."""
    once = unquote(raw)
    if once.startswith("%2F") or "%2F%2F" in once.upper():
        return unquote(once)
    return once


class ZoomRest:
    """The REST state machine of one simulated Zoom account (HTTP-free; ``ZoomRestServer``
    serves it)."""

    def __init__(
        self,
        simulator: Simulator,
        settings: RestSettings,
        *,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.sim = simulator
        self.settings = settings
        self._clock = clock
        self._tokens: dict[str, float] = {}
        self._instances: dict[tuple[str, str], LiveInstance] = {}
        self._faults: dict[str, collections.deque[Injected]] = {
            "oauth": collections.deque(),
            "api": collections.deque(),
        }
        self.stats = RestStats()
        self.base_url = ""
        #: Rule 6's paging: token -> (listing, offset of the next page).
        self._pages: dict[str, tuple[str, int]] = {}

    # --- test controls -----------------------------------------------------------------------

    def add_live(
        self,
        scenario: Scenario,
        *,
        rest_id: str | None = None,
        profile: Mapping[str, Any] | None = None,
        allowed: bool = True,
        started_ms: int | None = None,
        ended_ms: int | None = None,
    ) -> LiveInstance:
        """Make an instance live; ``scenario`` (its instance id filled in) is what a start runs.

        With ``started_ms`` (and ``ended_ms`` once it is over) the list APIs name it."""
        resolved = scenario.resolved()
        instance = LiveInstance(
            scenario=resolved,
            rest_id=rest_id or resolved.instance_id,
            profile=dict(profile or {}),
            allowed=allowed,
            started_ms=started_ms,
            ended_ms=ended_ms,
        )
        self._instances[(_group(resolved.product), instance.rest_id)] = instance
        if instance.rest_id != resolved.instance_id:
            self._instances[(_group(resolved.product), resolved.instance_id)] = instance
        return instance

    def inject(
        self,
        status: int,
        *,
        retry_after: str | None = None,
        code: int | None = None,
        message: str = "",
        times: int = 1,
        where: str = "api",
    ) -> None:
        """The next ``times`` requests to ``where`` (``api`` or ``oauth``) answer ``status``."""
        for _ in range(times):
            self._faults[where].append(Injected(status, retry_after, code, message))

    def expire_tokens(self) -> None:
        """Every token issued so far is expired from now on (the next API call gets 401)."""
        self._tokens.clear()

    # --- dispatch ----------------------------------------------------------------------------

    async def handle(
        self, method: str, raw_path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> Answer:
        if raw_path == "/oauth/token":
            answer = self._token(method, query, headers)
        elif raw_path.startswith("/v2/"):
            answer = await self._api(method, raw_path, query, headers, body)
        else:
            answer = _json(404, {"code": 404, "message": "Not found"})
        self.stats.requests.append((method, raw_path, answer[0]))
        self.stats.queries.append((method, raw_path, query))
        return answer

    def _injected(self, where: str) -> Answer | None:
        if not self._faults[where]:
            return None
        fault = self._faults[where].popleft()
        extra = {"retry-after": fault.retry_after} if fault.retry_after is not None else {}
        code = fault.code if fault.code is not None else fault.status
        message = fault.message or (
            "You have reached the maximum per-second rate limit for this API. Try again later."
            if fault.status == 429
            else "Internal server error"
        )
        if where == "oauth":
            return _json(fault.status, {"reason": message, "error": "server_error"}, extra)
        return _json(fault.status, {"code": code, "message": message}, extra)

    # --- rule 1: OAuth -----------------------------------------------------------------------

    def _token(self, method: str, query: str, headers: Mapping[str, str]) -> Answer:
        if method != "POST":
            return _json(405, {"reason": "Method not allowed", "error": "invalid_request"})
        injected = self._injected("oauth")
        if injected is not None:
            return injected
        params = parse_qs(query)
        if params.get("grant_type") != ["account_credentials"]:
            return _json(
                400, {"reason": "Unsupported grant type", "error": "unsupported_grant_type"}
            )
        if not _basic_auth_matches(
            headers.get("authorization", ""), self.settings.client_id, self.settings.client_secret
        ):
            return _json(
                400, {"reason": "Invalid client_id or client_secret", "error": "invalid_client"}
            )
        if params.get("account_id") != [self.settings.account_id]:
            return _json(400, {"reason": "Invalid account_id", "error": "invalid_request"})
        token = secrets.token_urlsafe(32)
        self._tokens[token] = self._clock() + self.settings.token_ttl_s
        self.stats.tokens_issued += 1
        self.stats.issued.append(token)
        ttl = self.settings.token_ttl_s
        return _json(
            200,
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": int(ttl) if ttl == int(ttl) else ttl,
                "scope": "meeting:update:participant_rtms_app_status "
                "contact_center:update:engagement_rtms_app_status phone:write:rtms_session",
                "api_url": self.base_url,
            },
        )

    def _authorized(self, headers: Mapping[str, str]) -> Answer | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        expires = self._tokens.get(token) if scheme.lower() == "bearer" else None
        if expires is None:
            return _zoom_error(401, 124, "Invalid access token.")
        if self._clock() >= expires:
            del self._tokens[token]
            return _zoom_error(401, 124, "Access token is expired.")
        return None

    # --- rules 2 to 4: the API ---------------------------------------------------------------

    async def _api(
        self, method: str, raw_path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> Answer:
        refused = self._authorized(headers)
        if refused is not None:
            return refused
        injected = self._injected("api")
        if injected is not None:
            return injected
        parts = raw_path.split("/")[2:]  # after "", "v2"
        if len(parts) == 4 and parts[2:] == ["rtms_app", "status"]:
            return await self._control(method, parts[0], parts[1], body)
        if (
            len(parts) == 5
            and parts[:2] == ["phone", "calls"]
            and parts[3:]
            == [
                "rtms_app",
                "status",
            ]
        ):
            return await self._control(method, "phone", parts[2], body)
        if method == "GET":
            return self._directory(parts, query)
        return _json(404, {"code": 404, "message": "Not found"})

    async def _control(self, method: str, family: str, raw_id: str, body: bytes) -> Answer:
        expected = {"live_meetings": "PATCH", "contact_center": "PUT", "phone": "PATCH"}
        if family not in expected:
            return _json(404, {"code": 404, "message": "Not found"})
        if method != expected[family]:
            return _zoom_error(405, 405, f"Method {method} not allowed here")
        target = _path_id(raw_id)
        try:
            request = json.loads(body) if body else None
        except ValueError:
            request = None
        if not isinstance(request, dict) or not isinstance(request.get("action"), str):
            return _zoom_error(400, 300, "Invalid request body: action is required")
        action = request["action"]
        allowed_actions = _PHONE_ACTIONS if family == "phone" else _ACTIONS
        if action not in allowed_actions:
            return _zoom_error(400, 300, f"Invalid field: action {action!r}")
        settings = request.get("settings")
        client_id = settings.get("client_id") if isinstance(settings, dict) else None
        wanted_client = self.settings.rtms_client_id
        if not isinstance(client_id, str) or (
            wanted_client is not None and client_id != wanted_client
        ):
            return _zoom_error(400, 300, "Invalid field: settings.client_id")
        instance = self._instances.get((family, target))
        running = self._running(family, target, instance)
        if instance is None and running is None:
            if family == "live_meetings":
                return _zoom_error(404, 3001, f"Meeting {target} is not found or has expired.")
            noun = "Engagement" if family == "contact_center" else "Call"
            return _zoom_error(404, 1001, f"{noun} does not exist: {target}.")
        if instance is not None and not instance.allowed:
            return _zoom_error(400, 2308, "Not allowed to start RTMS app")
        failed = "Failed to perform RTMS app operation"
        if action == "start":
            if running is not None:
                return _zoom_error(400, 2310, f"{failed}: RTMS app is already started")
            assert instance is not None
            scenario = instance.scenario
            if instance.engagement is not None:
                # RTMS started again after a stop: a new stream, as at Zoom.
                scenario = replace(scenario, rtms_stream_id="", t0_ms=0)
            instance.engagement = await self.sim.start(scenario)
            instance.started.set()
        elif running is None:
            return _zoom_error(400, 2310, f"{failed}: RTMS app is not started")
        elif action == "pause":
            if running.paused:
                return _zoom_error(400, 2310, f"{failed}: RTMS app is already paused")
            await running.pause()
        elif action == "resume":
            if not running.paused:
                return _zoom_error(400, 2310, f"{failed}: RTMS app is not paused")
            await running.resume()
        else:
            await running.stop(StopReason.MANUAL_API_TRIGGERED)
        self.stats.changes.append((family, target, action))
        return 204, {}, b""

    def _running(
        self, family: str, target: str, instance: LiveInstance | None
    ) -> Engagement | None:
        if instance is not None and instance.engagement is not None:
            eng = instance.engagement
            return None if eng.stopping else eng
        ids = {target} if instance is None else {target, instance.scenario.instance_id}
        for eng in reversed(self.sim.engagements):
            if (
                _group(eng.scenario.product) == family
                and eng.scenario.instance_id in ids
                and not eng.stopping
            ):
                return eng
        return None

    # --- rule 6: the list APIs -----------------------------------------------------------------

    def _listed(self) -> list[tuple[LiveInstance, int]]:
        """Every instance the list APIs know, once, with its start (Unix ms)."""
        seen: dict[int, tuple[LiveInstance, int]] = {}
        for instance in self._instances.values():
            start = instance.started_ms
            if start is None and instance.engagement is not None:
                start = instance.engagement.scenario.t0_ms
            if start is not None:
                seen.setdefault(id(instance), (instance, start))
        return sorted(seen.values(), key=lambda pair: (pair[1], pair[0].scenario.instance_id))

    def _listing(self, parts: list[str], query: str) -> Answer | None:
        params = {k: v[0] for k, v in parse_qs(query).items()}
        if len(parts) == 2 and parts[0] == "metrics" and parts[1] in ("meetings", "webinars"):
            product = Product.MEETING if parts[1] == "meetings" else Product.WEBINAR
            kind = params.get("type")
            if kind not in ("past", "live"):
                return _zoom_error(400, 300, "Invalid field: type")
            fmt, key = _DATE, parts[1]
        elif parts == ["contact_center", "engagements"]:
            product, kind, fmt, key = Product.CONTACT_CENTER, None, _DATETIME, "engagements"
        elif parts == ["phone", "call_history"] and "call_ids" not in params:
            product, kind, fmt, key = Product.PHONE, None, _DATE, "call_history"
        else:
            return None
        since = _utc_bound(params.get("from"), fmt, end=False)
        until = _utc_bound(params.get("to"), fmt, end=True)
        if since is None or until is None:
            return _zoom_error(400, 300, "Invalid field: from and to are required")
        items: list[dict[str, Any]] = []
        for instance, start in self._listed():
            if instance.scenario.product is not product or not since <= start <= until:
                continue
            if kind is not None and (kind == "past") != (instance.ended_ms is not None):
                continue
            item = _list_item(instance, start)
            items.append(item)
        listing = f"{'/'.join(parts)}?{kind}&{since}&{until}"
        offset = 0
        token = params.get("next_page_token")
        if token:
            known = self._pages.get(token)
            if known is None or known[0] != listing:
                return _zoom_error(400, 300, "Invalid field: next_page_token")
            offset = known[1]
        size = max(1, self.settings.list_page_size)
        page = items[offset : offset + size]
        next_token = ""
        if offset + size < len(items):
            if not (self.settings.loop_page_tokens and token):
                token = secrets.token_urlsafe(12)
                self._pages[token] = (listing, offset + size)
            next_token = token or ""
        return _json(
            200,
            {
                "from": params["from"],
                "to": params["to"],
                "page_size": size,
                "total_records": len(items),
                "next_page_token": next_token,
                key: page,
            },
        )

    def _directory(self, parts: list[str], query: str) -> Answer:
        if len(parts) == 2 and parts[0] == "meetings":
            target = _path_id(parts[1])
            instance = self._instances.get(("live_meetings", target))
            if instance is None:
                return _zoom_error(404, 3001, f"Meeting {target} is not found or has expired.")
            return _json(200, {"uuid": instance.scenario.instance_id, **instance.profile})
        if len(parts) == 3 and parts[:2] == ["contact_center", "engagements"]:
            target = _path_id(parts[2])
            instance = self._instances.get(("contact_center", target))
            if instance is None:
                return _zoom_error(404, 1001, f"Engagement does not exist: {target}.")
            return _json(200, {"engagement_id": target, **instance.profile})
        listed = self._listing(parts, query)
        if listed is not None:
            return listed
        if parts == ["phone", "call_history"]:
            wanted = parse_qs(query).get("call_ids", [""])[0].split(",")
            entries = [
                {"call_id": i.scenario.instance_id, **i.profile}
                for key, i in self._instances.items()
                if key[0] == "phone" and key[1] == i.scenario.instance_id and key[1] in wanted
            ]
            return _json(200, {"call_history": entries, "page_size": 30, "next_page_token": ""})
        return _json(404, {"code": 404, "message": "Not found"})


def _list_item(instance: LiveInstance, start: int) -> dict[str, Any]:
    """One item of a list API answer, in the product's shape (the profile adds to it)."""
    end = {} if instance.ended_ms is None else {"end_time": _iso(instance.ended_ms)}
    scenario = instance.scenario
    if scenario.product in (Product.MEETING, Product.WEBINAR):
        number: object = int(instance.rest_id) if instance.rest_id.isdigit() else instance.rest_id
        head: dict[str, Any] = {"uuid": scenario.instance_id, "id": number}
    elif scenario.product is Product.CONTACT_CENTER:
        head = {"engagement_id": scenario.instance_id}
    else:
        head = {"call_id": scenario.instance_id}
    return {**head, "start_time": _iso(start), **end, **instance.profile}


_DATE: Final = "%Y-%m-%d"
_DATETIME: Final = "%Y-%m-%dT%H:%M:%SZ"


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime(_DATETIME)


def _utc_bound(text: str | None, fmt: str, *, end: bool) -> int | None:
    """A ``from`` / ``to`` query value in Unix ms (a ``to`` date includes its whole day)."""
    if text is None:
        return None
    try:
        when = dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    if end and fmt == _DATE:
        when += dt.timedelta(days=1)
    return int(when.timestamp() * 1000) - (1 if end and fmt == _DATE else 0)


def _group(product: Product) -> str:
    for family, products in _CONTROL_PRODUCTS.items():
        if product in products:
            return family
    return product.value


def _basic_auth_matches(header: str, client_id: str, client_secret: str) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    given_id, _, given_secret = decoded.partition(":")
    return secrets.compare_digest(given_id.encode(), client_id.encode()) and secrets.compare_digest(
        given_secret.encode(), client_secret.encode()
    )


# --- HTTP --------------------------------------------------------------------------------------


class _AsgiApp:
    def __init__(self, rest: ZoomRest) -> None:
        self._rest = rest

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > _MAX_BODY:
                status, headers, data = _json(413, {"code": 413, "message": "Body too large"})
                break
            if not message.get("more_body", False):
                headers_in = {
                    k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
                }
                raw_path = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
                status, headers, data = await self._rest.handle(
                    scope["method"],
                    raw_path.split("?", 1)[0],
                    scope.get("query_string", b"").decode("latin-1"),
                    headers_in,
                    bytes(body),
                )
                break
        out = [(k.encode(), v.encode()) for k, v in headers.items()]
        out.append((b"content-length", str(len(data)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": data})


@asynccontextmanager
async def open_zoom_rest(
    simulator: Simulator,
    settings: RestSettings | None = None,
    *,
    clock: Callable[[], float] = trio.current_time,
) -> AsyncIterator[ZoomRest]:
    """Serve a ``ZoomRest`` for ``simulator`` on loopback for the duration of the block."""
    settings = settings or RestSettings()
    rest = ZoomRest(simulator, settings, clock=clock)
    config = HypercornConfig()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    config.graceful_timeout = 1.0
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            # The app speaks plain ASGI mappings; hypercorn types each scope as a TypedDict.
            lambda task_status: serve(_AsgiApp(rest), config, task_status=task_status)  # type: ignore[arg-type]
        )
        rest.base_url = binds[0]
        try:
            yield rest
        finally:
            nursery.cancel_scope.cancel()
