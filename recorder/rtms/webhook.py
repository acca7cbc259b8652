"""Zoom webhooks for RTMS: sign, verify, answer URL validation, parse. Pure functions, no I/O.

Rule 1: the signature is checked on the **raw body bytes exactly as received**, before anything
acts on them (rtms-protocol §7.4). Only where that fails is the compact re-serialisation of the
parsed body tried (``json.dumps(body, separators=(",", ":"), ensure_ascii=False)``, what Zoom's
own worker signs, §16); ``verify_webhook_request`` then returns those bytes, so what is acted on
is exactly what was signed. Header names are matched case-insensitively.

Rule 2: a verified webhook is still only *data*: ``parse_webhook`` turns it into a typed, frozen
``WebhookEvent`` or raises ``WebhookPayloadError`` naming what is wrong. It accepts the official
flat payload and the nested ``payload.object`` form seen in some Zoom material (§8.2), trying
``payload.object.X`` first, then ``payload.X``.

Rule 3: retries are byte-identical (same ``event_ts``); failover is a new ``rtms_started`` with a
new ``event_ts``. ``dedup_key`` therefore keys on (event, stream or instance id, ``event_ts``) and
never on the stream id alone (§8.3).

Rule 4: names Zoom spells two ways are normalised here, once: ``phone.call_rtms_started`` is
``phone.rtms_started`` (rtms-protocol §16). Lifecycle events (``rtms.start_failed``,
``rtms.concurrency_*``) have no documented payload: their parse never refuses a field it does not
understand, because the body itself is the evidence (kept whole by the caller).

Every rejection carries a fixed ``reason`` string (a metrics label): see ``SignatureRejection`` and
``PayloadRejection``.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from recorder.errors import WebhookPayloadError, WebhookSignatureError
from recorder.products import INSTANCE_ID_KEYS as INSTANCE_ID_KEYS
from recorder.products import Product as Product

#: Header names as Zoom sends them (HTTP header names are case-insensitive).
SIGNATURE_HEADER: Final = "x-zm-signature"
TIMESTAMP_HEADER: Final = "x-zm-request-timestamp"

#: Zoom's docs set no number; Zoom's samples reject ``abs(now - ts) > 300`` seconds (§7.4).
DEFAULT_REPLAY_WINDOW_S: Final = 300

URL_VALIDATION_EVENT: Final = "endpoint.url_validation"

#: ``x-zm-signature`` is ``v0=`` + 64 lowercase hex digits.
_SIGNATURE_PREFIX: Final = "v0="


class WebhookKind(enum.StrEnum):
    """What a webhook asks the recorder to do."""

    STARTED = "started"
    STOPPED = "stopped"
    #: The signaling socket broke: re-do signaling and media with the stored server_urls.
    INTERRUPTED = "interrupted"
    URL_VALIDATION = "url_validation"
    #: ``rtms.concurrency_near_limit`` / ``*.concurrency_limited``: operational, no stream action.
    CONCURRENCY = "concurrency"
    #: ``rtms.start_failed``: a stream that was expected and did not start (evidence, §16).
    START_FAILED = "start_failed"
    #: ``meeting.started`` and friends (``ANNOUNCING_EVENTS``): something a completeness policy
    #: may expect to be recorded (``recorder.completeness``); never a stream by itself.
    ANNOUNCED = "announced"
    #: Anything else: acknowledged and logged, never acted upon.
    OTHER = "other"


class SignatureRejection(enum.StrEnum):
    """Why ``verify_webhook`` refused a request (the ``reason`` of ``WebhookSignatureError``)."""

    MISSING_SIGNATURE = "missing_signature"
    MISSING_TIMESTAMP = "missing_timestamp"
    MALFORMED_TIMESTAMP = "malformed_timestamp"
    MALFORMED_SIGNATURE = "malformed_signature"
    BAD_SIGNATURE = "bad_signature"
    STALE_TIMESTAMP = "stale_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"


class PayloadRejection(enum.StrEnum):
    """Why ``parse_webhook`` refused a body (the ``reason`` of ``WebhookPayloadError``)."""

    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"


#: Lifecycle events: stored whole as evidence, never acted on as a stream (rtms-protocol §16).
LIFECYCLE_KINDS: Final = frozenset({WebhookKind.START_FAILED, WebhookKind.CONCURRENCY})

#: Id fields a lifecycle event may name its stream or instance by (§16), in the order they are
#: matched: the stream first, then the instance ids of every product.
LIFECYCLE_ID_KEYS: Final = (
    "rtms_stream_id",
    "meeting_uuid",
    "webinar_uuid",
    "engagement_id",
    "call_id",
    "session_id",
)

#: Where a lifecycle event's reason may be (§16), first present wins.
_FAILURE_REASON_KEYS: Final = ("reason", "error_message", "message")

#: Instance id key per product (§7.1): the value that signs the RTMS handshake.
_PRODUCTS_BY_PREFIX: Final[Mapping[str, Product]] = MappingProxyType({p.value: p for p in Product})

#: When the product's own key is absent, the SDK takes the first present of these (§7.1).
_INSTANCE_ID_FALLBACK_ORDER: Final = (
    "meeting_uuid",
    "webinar_uuid",
    "session_id",
    "engagement_id",
    "call_id",
)

#: RTMS_STOP_REASON names (§6.10), including legacy names; the mock sends names, not numbers.
_STOP_REASON_NUMBERS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "UNDEFINED": 0,
        "HOST_TRIGGERED": 1,
        "USER_TRIGGERED": 2,
        "USER_LEFT": 3,
        "USER_EJECTED": 4,
        "HOST_DISABLED_APP": 5,
        "APP_DISABLED_BY_HOST": 5,
        "MEETING_ENDED": 6,
        "STREAM_CANCELED": 7,
        "STREAM_CANCELLED": 7,
        "STREAM_REVOKED": 8,
        "ALL_APPS_DISABLED": 9,
        "INTERNAL_EXCEPTION": 10,
        "CONNECTION_TIMEOUT": 11,
        "INSTANCE_CONNECTION_INTERRUPTED": 12,
        "MEETING_CONNECTION_INTERRUPTED": 12,
        "SIGNAL_CONNECTION_INTERRUPTED": 13,
        "DATA_CONNECTION_INTERRUPTED": 14,
        "SIGNAL_CONNECTION_CLOSED_ABNORMALLY": 15,
        "DATA_CONNECTION_CLOSED_ABNORMALLY": 16,
        "EXIT_SIGNAL": 17,
        "AUTHENTICATION_FAILURE": 18,
        "AWAIT_RECONNECTION_TIMEOUT": 19,
        "RECEIVER_REQUEST_CLOSE": 20,
        "CUSTOMER_DISCONNECTED": 21,
        "AGENT_DISCONNECTED": 22,
        "ADMIN_DISABLED_APP": 23,
        "KEEP_ALIVE_TIMEOUT": 24,
        "MANUAL_API_TRIGGERED": 25,
        "STREAMING_NOT_SUPPORTED": 26,
    }
)


class VerifiedWebhook(NamedTuple):
    """A request whose signature verified: act on ``body``, which is what was signed."""

    timestamp_s: int
    #: The raw body, or its compact re-serialisation when only that verified.
    body: bytes
    #: True when only the compact re-serialisation verified (§16's fallback).
    reserialised: bool


class WebhookHeaders(NamedTuple):
    """The two header values ``verify_webhook`` needs, when the caller has already picked them."""

    signature: str | None
    timestamp: str | None


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One verified, parsed Zoom webhook."""

    #: The event name, e.g. ``contact_center.voice_rtms_started``; Zoom Phone's
    #: ``phone.call_rtms_*`` aliases are normalised to ``phone.rtms_*``.
    event: str
    #: ``event_ts`` in Unix milliseconds; identical on Zoom's retries. None only for events that
    #: are not about a stream (kind ``other`` / ``concurrency``) and carried none.
    event_ts: int | None
    kind: WebhookKind
    #: None for events that belong to no product (url validation, ``rtms.*``, unknown prefixes).
    product: Product | None
    #: ``meeting_uuid`` / ``webinar_uuid`` / ``session_id`` / ``engagement_id`` / ``call_id``.
    instance_id: str | None
    #: Which payload key ``instance_id`` came from.
    instance_id_key: str | None
    rtms_stream_id: str | None
    #: ``server_urls`` split on commas; empty when the event has none (``rtms_interrupted``).
    server_urls: tuple[str, ...] = ()
    #: RTMS_STOP_REASON as an integer; names are mapped, unknown names give None.
    stop_reason: int | None = None
    operator_id: str | None = None
    account_id: str | None = None
    #: Video SDK only.
    session_key: str | None = None
    #: ``endpoint.url_validation`` only.
    plain_token: str | None = None
    #: Lifecycle events only: ``reason``, ``error_message`` or ``message``, first present.
    failure_reason: str | None = None
    #: The decoded ``payload`` object as received (read-only), kept for the records.
    payload: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )


# --- Signatures ------------------------------------------------------------------------------


def _hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign_webhook(secret_token: str, timestamp_s: int, raw_body: bytes) -> str:
    """The ``x-zm-signature`` value for ``raw_body`` sent at ``timestamp_s`` (Unix seconds)."""
    message = b"v0:" + str(timestamp_s).encode("ascii") + b":" + raw_body
    return _SIGNATURE_PREFIX + _hmac_hex(secret_token, message)


def signed_headers(secret_token: str, timestamp_s: int, raw_body: bytes) -> dict[str, str]:
    """The headers Zoom sends with a webhook: what a simulator puts on its POST."""
    return {
        "content-type": "application/json",
        TIMESTAMP_HEADER: str(timestamp_s),
        SIGNATURE_HEADER: sign_webhook(secret_token, timestamp_s, raw_body),
    }


def pick_headers(
    headers: Mapping[str, str] | Iterable[tuple[bytes, bytes]] | WebhookHeaders,
) -> WebhookHeaders:
    """The two signature headers from a mapping or ASGI ``(name, value)`` byte pairs, in any
    case (HTTP header names are case-insensitive)."""
    if isinstance(headers, WebhookHeaders):
        return headers
    pairs: Iterable[tuple[str | bytes, str | bytes]] = (
        headers.items() if isinstance(headers, Mapping) else headers
    )
    signature: str | None = None
    timestamp: str | None = None
    for raw_name, raw_value in pairs:
        name = raw_name.decode("latin-1") if isinstance(raw_name, bytes) else raw_name
        value = raw_value.decode("latin-1") if isinstance(raw_value, bytes) else raw_value
        lowered = name.lower()
        if lowered == SIGNATURE_HEADER:
            signature = value
        elif lowered == TIMESTAMP_HEADER:
            timestamp = value
    return WebhookHeaders(signature=signature, timestamp=timestamp)


def verify_webhook(
    secret_token: str,
    headers: Mapping[str, str] | WebhookHeaders,
    raw_body: bytes,
    *,
    now_s: float,
    replay_window_s: float = DEFAULT_REPLAY_WINDOW_S,
) -> int:
    """``verify_webhook_request``, returning only the verified request timestamp."""
    return verify_webhook_request(
        secret_token, headers, raw_body, now_s=now_s, replay_window_s=replay_window_s
    ).timestamp_s


def _compact(raw_body: bytes) -> bytes | None:
    """The body as Zoom's own worker re-serialises it before signing (§16), or None."""
    try:
        body = json.loads(raw_body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(body, dict):
        return None
    try:
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    except (ValueError, RecursionError):
        return None
    compact = text.encode("utf-8", errors="surrogatepass")
    return None if compact == raw_body else compact


def verify_webhook_request(
    secret_token: str,
    headers: Mapping[str, str] | Iterable[tuple[bytes, bytes]] | WebhookHeaders,
    raw_body: bytes,
    *,
    now_s: float,
    replay_window_s: float = DEFAULT_REPLAY_WINDOW_S,
) -> VerifiedWebhook:
    """Check ``x-zm-signature`` and the request timestamp's freshness; say what was signed.

    Args:
        secret_token: the app's webhook Secret Token (not the client secret).
        headers: the request headers (any case; a mapping or ASGI byte pairs), or the two
            values as ``WebhookHeaders``.
        raw_body: the request body exactly as received.
        now_s: the current Unix time in seconds.
        replay_window_s: how far the request timestamp may be from ``now_s`` either way.

    Returns:
        The verified request timestamp (Unix seconds) and the body to act on: the raw bytes,
        or, when only they fail, their compact re-serialisation that verified instead.

    Raises:
        WebhookSignatureError: with ``reason`` one of ``SignatureRejection``. The MAC is checked
            before freshness, so ``stale_timestamp`` means an authentic but replayed request.
    """
    signature, timestamp = pick_headers(headers)
    if not signature:
        raise WebhookSignatureError(
            f"missing {SIGNATURE_HEADER} header", reason=SignatureRejection.MISSING_SIGNATURE
        )
    if not timestamp:
        raise WebhookSignatureError(
            f"missing {TIMESTAMP_HEADER} header", reason=SignatureRejection.MISSING_TIMESTAMP
        )
    stripped = timestamp.strip()
    # ASCII digits only: int() would also take "+12", "1_000" and non-ASCII digits.
    if not (stripped.isascii() and stripped.isdigit()) or len(stripped) > 12:
        raise WebhookSignatureError(
            f"{TIMESTAMP_HEADER} is not Unix seconds", reason=SignatureRejection.MALFORMED_TIMESTAMP
        )
    if not signature.startswith(_SIGNATURE_PREFIX):
        raise WebhookSignatureError(
            f"{SIGNATURE_HEADER} does not start with {_SIGNATURE_PREFIX!r}",
            reason=SignatureRejection.MALFORMED_SIGNATURE,
        )
    timestamp_s = int(stripped)
    # The MAC covers the header value as sent, so sign the unstripped text.
    presented = signature.encode("utf-8", errors="surrogatepass")
    signed_body, reserialised = raw_body, False
    if not _signature_matches(secret_token, timestamp, raw_body, presented):
        compact = _compact(raw_body)
        if compact is None or not _signature_matches(secret_token, timestamp, compact, presented):
            raise WebhookSignatureError(
                f"{SIGNATURE_HEADER} does not match the body",
                reason=SignatureRejection.BAD_SIGNATURE,
            )
        signed_body, reserialised = compact, True
    age_s = now_s - timestamp_s
    if age_s > replay_window_s:
        raise WebhookSignatureError(
            f"request timestamp is {age_s:.0f} s old (window {replay_window_s:g} s)",
            reason=SignatureRejection.STALE_TIMESTAMP,
        )
    if -age_s > replay_window_s:
        raise WebhookSignatureError(
            f"request timestamp is {-age_s:.0f} s in the future (window {replay_window_s:g} s)",
            reason=SignatureRejection.FUTURE_TIMESTAMP,
        )
    return VerifiedWebhook(timestamp_s, signed_body, reserialised)


def _signature_matches(secret_token: str, timestamp: str, body: bytes, presented: bytes) -> bool:
    message = b"v0:" + timestamp.encode("utf-8", errors="surrogatepass") + b":" + body
    expected = (_SIGNATURE_PREFIX + _hmac_hex(secret_token, message)).encode("ascii")
    return hmac.compare_digest(expected, presented)


def url_validation_response(secret_token: str, plain_token: str) -> dict[str, str]:
    """The JSON body answering ``endpoint.url_validation`` (§7.3)."""
    return {
        "plainToken": plain_token,
        "encryptedToken": _hmac_hex(secret_token, plain_token.encode("utf-8")),
    }


# --- Parsing ---------------------------------------------------------------------------------


def _reject(message: str, reason: PayloadRejection) -> WebhookPayloadError:
    return WebhookPayloadError(message, reason=reason)


def normalised_event_name(event: str) -> str:
    """``phone.call_rtms_started`` is ``phone.rtms_started``; other names are unchanged."""
    prefix = Product.PHONE.webhook_prefix
    if event.startswith(prefix + "call_rtms_"):
        return prefix + event.removeprefix(prefix + "call_")
    return event


#: Events that announce a meeting, webinar, Contact Center engagement or phone call that a
#: completeness policy may expect recorded (Zoom's own event names; Phone: the call is up once
#: the callee answered, or, outbound, once the caller is connected).
ANNOUNCING_EVENTS: Final[Mapping[str, Product]] = MappingProxyType(
    {
        "meeting.started": Product.MEETING,
        "webinar.started": Product.WEBINAR,
        "contact_center.engagement_started": Product.CONTACT_CENTER,
        "phone.callee_answered": Product.PHONE,
        "phone.caller_connected": Product.PHONE,
        # Their ends: the expected end of an instance (and evidence it happened at all).
        "meeting.ended": Product.MEETING,
        "webinar.ended": Product.WEBINAR,
        "contact_center.engagement_ended": Product.CONTACT_CENTER,
        "phone.callee_ended": Product.PHONE,
        "phone.caller_ended": Product.PHONE,
    }
)


def _classify(event: str) -> tuple[WebhookKind, Product | None]:
    if event == URL_VALIDATION_EVENT:
        return WebhookKind.URL_VALIDATION, None
    if event in ANNOUNCING_EVENTS:
        return WebhookKind.ANNOUNCED, ANNOUNCING_EVENTS[event]
    prefix, _, action = event.partition(".")
    product = _PRODUCTS_BY_PREFIX.get(prefix)
    if "concurrency" in action:
        return WebhookKind.CONCURRENCY, product
    if action.endswith("start_failed"):
        return WebhookKind.START_FAILED, product
    if product is None:
        return WebhookKind.OTHER, None
    # Contact Center names its events voice_rtms_*; the others rtms_*.
    stem = action.removeprefix("voice_") if product is Product.CONTACT_CENTER else action
    kinds = {
        "rtms_started": WebhookKind.STARTED,
        "rtms_stopped": WebhookKind.STOPPED,
        "rtms_interrupted": WebhookKind.INTERRUPTED,
    }
    return kinds.get(stem, WebhookKind.OTHER), product


class _Fields:
    """Reads a payload field from ``payload.object`` first, then from ``payload`` itself."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        nested = payload.get("object")
        self._layers: tuple[Mapping[str, Any], ...] = (
            (nested, payload) if isinstance(nested, dict) else (payload,)
        )

    def raw(self, key: str) -> Any:
        for layer in self._layers:
            if key in layer and layer[key] is not None:
                return layer[key]
        return None

    def text(self, key: str, *, required: bool = False) -> str | None:
        value = self.raw(key)
        if value is None:
            if required:
                raise _reject(f"payload.{key} is missing", PayloadRejection.MISSING_FIELD)
            return None
        # Some ids (operator ids, user ids) can arrive as numbers; keep their decimal text.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise _reject(
                f"payload.{key} must be a string, not {type(value).__name__}",
                PayloadRejection.WRONG_TYPE,
            )
        if required and not value:
            raise _reject(f"payload.{key} is empty", PayloadRejection.MISSING_FIELD)
        return value


def _event_ts(body: Mapping[str, Any], *, required: bool) -> int | None:
    value = body.get("event_ts")
    if value is None:
        if required:
            raise _reject("event_ts is missing", PayloadRejection.MISSING_FIELD)
        return None
    if isinstance(value, bool):
        raise _reject("event_ts must be an integer, not bool", PayloadRejection.WRONG_TYPE)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise _reject(
        f"event_ts must be an integer (ms), not {type(value).__name__}",
        PayloadRejection.WRONG_TYPE,
    )


def _server_urls(fields: _Fields, *, required: bool) -> tuple[str, ...]:
    value = fields.raw("server_urls")
    if value is None:
        urls: tuple[str, ...] = ()
    elif isinstance(value, str):
        urls = tuple(part.strip() for part in value.split(",") if part.strip())
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        urls = tuple(item.strip() for item in value if item.strip())
    else:
        raise _reject(
            f"payload.server_urls must be a string, not {type(value).__name__}",
            PayloadRejection.WRONG_TYPE,
        )
    if required and not urls:
        raise _reject("payload.server_urls is missing or empty", PayloadRejection.MISSING_FIELD)
    return urls


def _stop_reason(fields: _Fields) -> int | None:
    value = fields.raw("stop_reason")
    if value is None:
        return None
    if isinstance(value, bool):
        raise _reject(
            "payload.stop_reason must be an integer or a name", PayloadRejection.WRONG_TYPE
        )
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            return int(text)
        # Unknown names stay in ``payload``; a stop is still a stop.
        return _STOP_REASON_NUMBERS.get(text.upper().removeprefix("STOP_BC_"))
    raise _reject(
        f"payload.stop_reason must be an integer or a name, not {type(value).__name__}",
        PayloadRejection.WRONG_TYPE,
    )


def _instance_id(fields: _Fields, product: Product | None) -> tuple[str | None, str | None]:
    keys: tuple[str, ...] = _INSTANCE_ID_FALLBACK_ORDER
    if product is not None:
        own = INSTANCE_ID_KEYS[product]
        keys = (own, *(key for key in keys if key != own))
    for key in keys:
        value = fields.text(key)
        if value:
            return value, key
    # rtms.concurrency_limited carries its id inside ``id_field``.
    id_field = fields.raw("id_field")
    if isinstance(id_field, dict):
        return _instance_id(_Fields(id_field), product)
    return None, None


def _decode_body(raw_body: bytes) -> dict[str, Any]:
    try:
        text = raw_body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _reject("body is not UTF-8", PayloadRejection.NOT_UTF8) from exc
    try:
        body = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise _reject("body is not JSON", PayloadRejection.NOT_JSON) from exc
    if not isinstance(body, dict):
        raise _reject(
            f"body must be a JSON object, not {type(body).__name__}", PayloadRejection.NOT_AN_OBJECT
        )
    return body


def parse_webhook(raw_body: bytes) -> WebhookEvent:
    """Parse a (verified) webhook body into a ``WebhookEvent``.

    Raises:
        WebhookPayloadError: the body is not a JSON object, or a field the event needs is
            missing or has the wrong type. ``reason`` is one of ``PayloadRejection`` and the
            message names the field.
    """
    body = _decode_body(raw_body)
    event = body.get("event")
    if not isinstance(event, str) or not event:
        raise _reject("event is missing or not a string", PayloadRejection.MISSING_FIELD)
    event = normalised_event_name(event)
    payload = body.get("payload", {})
    if not isinstance(payload, dict):
        raise _reject("payload must be a JSON object", PayloadRejection.WRONG_TYPE)
    kind, product = _classify(event)
    about_a_stream = kind in (WebhookKind.STARTED, WebhookKind.STOPPED, WebhookKind.INTERRUPTED)
    # Lifecycle events read their own event_ts, leniently (``_lifecycle_event``).
    event_ts = None if kind in LIFECYCLE_KINDS else _event_ts(body, required=about_a_stream)
    fields = _Fields(payload)
    frozen_payload = MappingProxyType(payload)

    if kind is WebhookKind.URL_VALIDATION:
        plain_token = fields.text("plainToken", required=True)
        return WebhookEvent(
            event=event,
            event_ts=event_ts,
            kind=kind,
            product=None,
            instance_id=None,
            instance_id_key=None,
            rtms_stream_id=None,
            plain_token=plain_token,
            payload=frozen_payload,
        )

    if kind in LIFECYCLE_KINDS:
        return _lifecycle_event(event, body, kind, product, fields, frozen_payload)

    instance_id, instance_id_key = _instance_id(fields, product)
    if about_a_stream and instance_id is None:
        assert product is not None
        raise _reject(
            f"payload.{INSTANCE_ID_KEYS[product]} is missing", PayloadRejection.MISSING_FIELD
        )
    return WebhookEvent(
        event=event,
        event_ts=event_ts,
        kind=kind,
        product=product,
        instance_id=instance_id,
        instance_id_key=instance_id_key,
        rtms_stream_id=fields.text("rtms_stream_id", required=about_a_stream),
        server_urls=_server_urls(fields, required=kind is WebhookKind.STARTED),
        stop_reason=_stop_reason(fields),
        operator_id=fields.text("operator_id"),
        account_id=fields.text("account_id"),
        session_key=fields.text("session_key"),
        payload=frozen_payload,
    )


def _lifecycle_event(
    event: str,
    body: Mapping[str, Any],
    kind: WebhookKind,
    product: Product | None,
    fields: _Fields,
    payload: Mapping[str, Any],
) -> WebhookEvent:
    """A lifecycle event never fails to parse over a field: the whole body is the evidence."""
    ids = lifecycle_ids(payload)
    instance_key: str | None = next((key for key in LIFECYCLE_ID_KEYS[1:] if key in ids), None)
    if product is not None and INSTANCE_ID_KEYS[product] in ids:
        instance_key = INSTANCE_ID_KEYS[product]
    try:
        event_ts = _event_ts(body, required=False)
    except WebhookPayloadError:
        event_ts = None
    return WebhookEvent(
        event=event,
        event_ts=event_ts,
        kind=kind,
        product=product,
        instance_id=None if instance_key is None else ids[instance_key],
        instance_id_key=instance_key,
        rtms_stream_id=ids.get("rtms_stream_id"),
        operator_id=_lenient_text(fields.raw("operator_id")),
        account_id=_lenient_text(fields.raw("account_id")),
        failure_reason=next(
            (
                text
                for text in (_lenient_text(fields.raw(key)) for key in _FAILURE_REASON_KEYS)
                if text
            ),
            None,
        ),
        payload=payload,
    )


def _lenient_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def lifecycle_ids(payload: Mapping[str, Any]) -> dict[str, str]:
    """The id fields of ``LIFECYCLE_ID_KEYS`` present in ``payload`` (``payload.object``,
    ``payload`` and ``payload.id_field`` are all looked in, §8.1 and §8.2); non-text values are
    left out (they stay in the stored body)."""
    layers: list[Mapping[str, Any]] = []
    for layer in (payload.get("object"), payload):
        if isinstance(layer, Mapping):
            layers.append(layer)
            nested = layer.get("id_field")
            if isinstance(nested, Mapping):
                layers.append(nested)
    ids: dict[str, str] = {}
    for key in LIFECYCLE_ID_KEYS:
        for layer in layers:
            text = _lenient_text(layer.get(key))
            if text:
                ids[key] = text
                break
    return ids


def dedup_key(event: WebhookEvent) -> str:
    """The key under which retries and repeats of one delivery collapse (§8.3).

    (event, stream id or instance id, ``event_ts``): a retry is byte-identical, so it has the same
    key; a failover ``rtms_started`` has a new ``event_ts``, so it does not. Events without any
    id fall back to a digest of their payload, so two different ones never collapse.
    """
    subject = event.rtms_stream_id or event.instance_id
    if subject is None:
        canonical = json.dumps(dict(event.payload), sort_keys=True, separators=(",", ":"))
        subject = "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    # JSON keeps the three parts unambiguous whatever characters the ids contain.
    return json.dumps([event.event, subject, event.event_ts], separators=(",", ":"))
