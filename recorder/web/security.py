"""Tokens, CSRF and the response headers every answer carries.

Rules:

1. Session ids and CSRF tokens are 256-bit ``secrets.token_urlsafe`` values; the catalog keeps
   only the SHA-256 of a session id. CSRF tokens are compared in constant time.
2. Every response gets a strict Content-Security-Policy (scripts only from this origin: no
   inline script, no eval), ``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``, no
   sniffing, no referrer, and ``Cache-Control: no-store`` (pages hold evidence metadata; audio
   is evidence). Styles allow ``'unsafe-inline'`` only because the waveform library writes its
   own ``<style>`` into a shadow root; no page template contains inline style or script.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE_NAME: Final = "rtmsrec_session"
CSRF_FIELD: Final = "csrf"
CSRF_HEADER: Final = "x-csrf-token"

CSP: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)

HEADERS: Final = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).hexdigest()


def csrf_ok(expected: str, given: str | None) -> bool:
    if not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))


class SecurityHeaders:
    """ASGI middleware: the headers above on every HTTP response (HSTS when served over TLS)."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self._app = app
        self._hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                headers = list(message.get("headers", []))
                headers += [(n, v) for n, v in HEADERS if n not in names]
                if self._hsts:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, send_with_headers)


#: Largest request body the console reads (its forms are a few fields; nothing is uploaded).
MAX_BODY_BYTES: Final = 64 * 1024


class BodyLimit:
    """ASGI middleware: a request body over ``MAX_BODY_BYTES`` is refused with 413, whether it
    says so in ``Content-Length`` or streams past it, before any route parses it."""

    def __init__(self, app: ASGIApp, *, limit: int = MAX_BODY_BYTES) -> None:
        self._app = app
        self._limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and (not value.isdigit() or int(value) > self._limit):
                await _too_large(send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self._limit:
                    raise _BodyTooLarge
            return message

        try:
            await self._app(scope, limited, send)
        except _BodyTooLarge:
            await _too_large(send)


class _BodyTooLarge(Exception):
    """Raised inside a request whose streamed body passed the limit (answered 413 above)."""


async def _too_large(send: Send) -> None:
    body = b"request body too large"
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})
