"""An async client for Zoom's REST API (httpx on trio), with Server-to-Server OAuth.

The rules of when to refresh a token and when to retry are pure and live in
``recorder.zoom.policy``; this module is the thin shell that does the I/O:

* ``POST {oauth}/oauth/token?grant_type=account_credentials&account_id=...`` with HTTP Basic
  auth (client id and secret) gives a bearer token, cached until shortly before it expires, and
  dropped on the API's first 401 (one refresh and one retry per request).
* 429 waits ``Retry-After`` (capped), 5xx and network errors back off exponentially, a bounded
  number of times; every request has a timeout; redirects are never followed (a redirect would
  carry the bearer token to another host).
* Errors are ``ZoomApiError`` carrying Zoom's ``code`` and ``message`` (2308, 2310, 3001...) and
  the HTTP status. Client secret and tokens appear in no message, log line or ``repr``: they are
  ``Secret``\\ s until the moment a request is built, travel only in headers, and any text that
  comes back from Zoom is scrubbed of them before it is shown.
* Base URLs are ``https://`` only; ``http://`` is accepted for loopback hosts when
  ``allow_insecure_loopback`` is set (tests, the simulator). TLS is always verified.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote, urlsplit

import httpx
import trio

from recorder.config import Config, Secret, ZoomConfig
from recorder.errors import ConfigError, ZoomApiError
from recorder.zoom.policy import (
    Outcome,
    RetryPolicy,
    Token,
    classify,
    parse_retry_after,
)

logger = logging.getLogger(__name__)

#: Zoom's error messages are short; a hostile or broken peer's are cut to this.
_MAX_MESSAGE_CHARS: Final = 300
#: Largest response body read into memory (directory answers are a few KiB).
_MAX_BODY_BYTES: Final = 1024 * 1024
_LOOPBACK: Final = frozenset({"127.0.0.1", "::1", "localhost"})

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class ZoomCredentials:
    """Server-to-Server OAuth credentials. ``repr`` shows the account only."""

    account_id: str
    client_id: Secret
    client_secret: Secret

    def __repr__(self) -> str:
        return f"ZoomCredentials(account_id={self.account_id!r}, client_id=****, secret=****)"

    @classmethod
    def from_config(
        cls, config: Config, environ: Mapping[str, str] | None = None
    ) -> ZoomCredentials:
        """Client id and secret from the secrets (credentials or environment), the account
        from ``[zoom] account_id`` or ``ZOOM_ACCOUNT_ID``.

        Raises:
            ConfigError: naming what is missing.
        """
        env = os.environ if environ is None else environ
        config.secrets.require("zoom_client_id", "zoom_client_secret")
        account = config.zoom.account_id or env.get("ZOOM_ACCOUNT_ID") or None
        if not account:
            raise ConfigError(
                "the Zoom API needs an account id: set [zoom] account_id or ZOOM_ACCOUNT_ID"
            )
        assert config.secrets.zoom_client_id is not None
        assert config.secrets.zoom_client_secret is not None
        return cls(account, config.secrets.zoom_client_id, config.secrets.zoom_client_secret)


@dataclass(frozen=True, slots=True)
class ZoomResponse:
    status: int
    #: Decoded JSON, or None for an empty body (204).
    body: Any


def encode_path_id(value: str) -> str:
    """One path segment for an id. Zoom wants meeting UUIDs that start with ``/`` or contain
    ``//`` encoded twice; every other id once."""
    if not value:
        raise ZoomApiError("an empty id cannot name a Zoom object")
    once = quote(value, safe="")
    if value.startswith("/") or "//" in value:
        return quote(once, safe="")
    return once


def check_base_url(url: str, *, allow_insecure_loopback: bool) -> str:
    """``https://`` anywhere; ``http://`` to loopback only when allowed. Raises ConfigError."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url.rstrip("/")
    if parts.scheme == "http" and parts.hostname in _LOOPBACK and allow_insecure_loopback:
        return url.rstrip("/")
    raise ConfigError(
        f"Zoom base URL {url!r} refused: https:// only (http:// to loopback needs "
        "[zoom] allow_insecure_loopback)"
    )


class ZoomApiClient:
    """One account's REST client. Use as ``async with ZoomApiClient(...) as zoom:``."""

    def __init__(
        self,
        settings: ZoomConfig,
        credentials: ZoomCredentials,
        *,
        sleep: Sleep | None = None,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._api = check_base_url(
            settings.api_base_url, allow_insecure_loopback=settings.allow_insecure_loopback
        )
        self._oauth = check_base_url(
            settings.oauth_base_url, allow_insecure_loopback=settings.allow_insecure_loopback
        )
        self._settings = settings
        self._credentials = credentials
        self._policy = RetryPolicy(
            max_retries=settings.max_retries,
            backoff_initial_s=settings.backoff_initial_s,
            backoff_max_s=settings.backoff_max_s,
            retry_after_max_s=settings.retry_after_max_s,
        )
        self._sleep: Sleep = sleep or trio.sleep
        self._clock: Clock = clock or trio.current_time
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.timeout_s),
            follow_redirects=False,
            verify=True,
            transport=transport,
        )
        self._token: Token | None = None
        self._token_lock = trio.Lock()
        #: Counters for tests and status: tokens fetched, retries made.
        self.tokens_fetched = 0
        self.retries = 0

    def __repr__(self) -> str:
        return f"<ZoomApiClient api={self._api} account={self._credentials.account_id!r}>"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> ZoomApiClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await self.aclose()

    # --- the one request path ----------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> ZoomResponse:
        """``method`` ``{api}/v2{path}`` with a bearer token; retried per ``policy``.

        ``path`` must already hold encoded ids (``encode_path_id``).

        Raises:
            ZoomApiError: Zoom refused (4xx: its code and message), or failed and the retries
                ran out (5xx, 429, network). ``status`` is None when no answer ever came.
        """
        url = f"{self._api}/v2{path}"
        where = f"{method} /v2{path}"
        retries = 0
        refreshed = False
        while True:
            token = await self._current_token()
            headers = {"Authorization": f"Bearer {token.value}"}
            status, body, retry_after = await self._send(
                method, url, headers=headers, json_body=json_body, params=params, where=where
            )
            outcome = classify(status)
            if outcome is Outcome.SUCCESS:
                assert status is not None
                return ZoomResponse(status, body)
            if outcome is Outcome.UNAUTHORIZED and not refreshed:
                # Rule 4: the token was revoked or expired early: one refresh, one retry.
                refreshed = True
                self._drop_token(token)
                logger.info("zoom api %s: 401, refreshing the token once", where)
                continue
            delay = self._policy.delay(outcome, retries, retry_after)
            if delay is None:
                raise self._error(where, status, body, retry_after)
            retries += 1
            self.retries += 1
            logger.info(
                "zoom api %s: %s, retry %d in %.2f s",
                where,
                status if status is not None else "no answer",
                retries,
                delay,
            )
            await self._sleep(delay)

    async def _send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        json_body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
        where: str,
        auth: tuple[str, str] | None = None,
    ) -> tuple[int | None, Any, float | None]:
        """One attempt: (status or None, decoded body, Retry-After seconds)."""
        content = bytearray()
        too_large = False
        try:
            async with self._http.stream(
                method,
                url,
                headers=dict(headers),
                json=dict(json_body) if json_body is not None else None,
                params=dict(params) if params is not None else None,
                auth=auth,
            ) as response:
                # Read at most _MAX_BODY_BYTES: a broken or hostile peer cannot fill memory.
                async for chunk in response.aiter_bytes():
                    content += chunk
                    if len(content) > _MAX_BODY_BYTES:
                        too_large = True
                        break
        except httpx.TransportError as exc:
            # The exception text may hold the URL (ids only); the type is enough and safe.
            logger.info("zoom api %s: %s", where, type(exc).__name__)
            return None, {"message": f"network error: {type(exc).__name__}"}, None
        except httpx.HTTPError as exc:
            raise ZoomApiError(f"Zoom API {where}: {type(exc).__name__}") from None
        body: Any = None
        if too_large:
            body = {"message": f"response larger than {_MAX_BODY_BYTES} bytes"}
            if 200 <= response.status_code < 300:
                raise ZoomApiError(
                    f"Zoom API {where}: response larger than {_MAX_BODY_BYTES} bytes",
                    status=response.status_code,
                )
        elif content:
            try:
                body = json.loads(bytes(content))
            except ValueError:
                body = {"message": "response is not JSON"}
        return response.status_code, body, parse_retry_after(response.headers.get("retry-after"))

    # --- tokens ------------------------------------------------------------------------------

    async def _current_token(self) -> Token:
        async with self._token_lock:
            token = self._token
            margin = self._settings.token_refresh_margin_s
            if token is None or not token.usable(self._clock(), margin):
                token = await self._fetch_token()
                self._token = token
            return token

    def _drop_token(self, token: Token) -> None:
        if self._token is token:
            self._token = None

    def invalidate_token(self) -> None:
        """Forget the cached token (the next request fetches a new one)."""
        self._token = None

    async def _fetch_token(self) -> Token:
        where = "POST /oauth/token"
        url = f"{self._oauth}/oauth/token"
        params = {"grant_type": "account_credentials", "account_id": self._credentials.account_id}
        auth = (
            self._credentials.client_id.reveal(),
            self._credentials.client_secret.reveal(),
        )
        retries = 0
        while True:
            started = self._clock()
            status, body, retry_after = await self._send(
                "POST", url, headers={}, json_body=None, params=params, where=where, auth=auth
            )
            outcome = classify(status)
            if outcome is Outcome.SUCCESS:
                token = self._parse_token(body, started)
                self.tokens_fetched += 1
                logger.info("zoom oauth: token obtained, expires in %.0f s", token.expires_in)
                return token
            delay = self._policy.delay(outcome, retries, retry_after)
            if delay is None:
                raise self._error(where, status, body, retry_after, oauth=True)
            retries += 1
            self.retries += 1
            await self._sleep(delay)

    def _parse_token(self, body: Any, started: float) -> Token:
        if not isinstance(body, dict):
            raise ZoomApiError("Zoom OAuth: the token answer is not a JSON object", status=200)
        value = body.get("access_token")
        expires_in = body.get("expires_in")
        if not isinstance(value, str) or not value or len(value) > 8192:
            raise ZoomApiError("Zoom OAuth: the token answer has no access_token", status=200)
        if (
            isinstance(expires_in, bool)
            or not isinstance(expires_in, int | float)
            or not 0 < expires_in <= 86400 * 7
        ):
            raise ZoomApiError(
                "Zoom OAuth: the token answer has no valid expires_in (seconds)", status=200
            )
        if str(body.get("token_type", "bearer")).lower() != "bearer":
            raise ZoomApiError("Zoom OAuth: the token is not a bearer token", status=200)
        return Token(value=value, obtained_at=started, expires_in=float(expires_in))

    # --- errors ------------------------------------------------------------------------------

    def _error(
        self,
        where: str,
        status: int | None,
        body: Any,
        retry_after: float | None,
        *,
        oauth: bool = False,
    ) -> ZoomApiError:
        code: int | None = None
        message = ""
        if isinstance(body, dict):
            raw_code = body.get("code")
            if isinstance(raw_code, int) and not isinstance(raw_code, bool):
                code = raw_code
            elif isinstance(raw_code, str) and raw_code.isdigit() and len(raw_code) < 10:
                code = int(raw_code)
            parts = [body.get("message"), body.get("error"), body.get("reason")]
            message = ": ".join(str(p) for p in parts if isinstance(p, str | int) and p != "")
        message = self._scrub(message)[:_MAX_MESSAGE_CHARS] or "no message"
        if status is None:
            summary = f"Zoom API {where}: no answer after {self._policy.max_retries} retries"
        elif (
            status == 429
            and retry_after is not None
            and retry_after > self._policy.retry_after_max_s
        ):
            summary = (
                f"Zoom API {where}: HTTP 429, Retry-After {retry_after:g} s is longer than "
                f"[zoom] retry_after_max_s"
            )
        else:
            summary = f"Zoom {'OAuth' if oauth else 'API'} {where}: HTTP {status}"
        if code is not None:
            summary += f", code {code}"
        return ZoomApiError(f"{summary}: {message}", status=status, code=code)

    def _scrub(self, text: str) -> str:
        """Zoom's text, with anything that is a secret of ours replaced."""
        secrets = [self._credentials.client_secret.reveal(), self._credentials.client_id.reveal()]
        if self._token is not None:
            secrets.append(self._token.value)
        for secret in secrets:
            if secret:
                text = text.replace(secret, "****")
        return text
