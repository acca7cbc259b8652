"""Sign-in with OpenID Connect (authorization code flow with PKCE and a nonce).

Rules:

1. The issuer is ``https://`` (plain HTTP only for a loopback issuer: tests and local
   development); its discovery document must name the same issuer; TLS is verified.
2. State, nonce and the PKCE verifier live in the pre-login session row (server side); the
   callback compares the state in constant time and refuses a reused or unknown one.
3. The ID token's signature is checked against the issuer's JWKS, and ``iss``, ``aud``,
   ``exp``, ``iat`` and ``nonce`` are all required and checked. The account is found by the
   token's subject: only subjects provisioned with ``recorder web user add NAME --role R
   --oidc-subject SUB`` may sign in (an identity provider vouches for who, not for a role).
4. Tokens are never logged, stored or shown; only the subject is kept (as the account's link).
"""

from __future__ import annotations

import hmac
import logging
import warnings
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from recorder.catalog._web import WebSession
from recorder.catalog.base import JsonValue
from recorder.config import Secret, WebConfig
from recorder.errors import ConfigError
from recorder.web.console import console_of
from recorder.web.errors import Forbidden
from recorder.web.security import new_token, session_hash

with warnings.catch_warnings():
    # Authlib 1.9 announces a move of its httpx integration; the API used here is unchanged.
    # (Its deprecation module installs an "always" filter on import: imported first, then
    # overridden here, and both undone when this block ends.)
    import authlib.deprecate  # type: ignore[import-untyped]  # noqa: F401

    warnings.simplefilter("ignore")
    from authlib.integrations.httpx_client import (  # type: ignore[import-untyped]
        AsyncOAuth2Client,
    )

logger = logging.getLogger(__name__)

ALGORITHMS: Final = ["RS256", "ES256", "PS256", "EdDSA"]
#: How long the identity provider may take to send the officer back.
PENDING_MS: Final = 10 * 60 * 1000
HTTP_TIMEOUT_S: Final = 10.0
CALLBACK_PATH: Final = "/login/oidc/callback"
#: The pending sign-in's cookie (state, nonce and PKCE verifier stay server-side).
PENDING_COOKIE: Final = "rtmsrec_oidc"


def _issuer_allowed(issuer: str) -> bool:
    parts = urlsplit(issuer)
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


class OidcClient:
    """One configured identity provider: discovery, the authorization URL, code exchange."""

    def __init__(self, settings: WebConfig, secret: Secret) -> None:
        if settings.oidc_issuer is None or settings.oidc_client_id is None:
            raise ConfigError("[web] oidc_issuer and oidc_client_id are required for OIDC")
        if not _issuer_allowed(settings.oidc_issuer):
            raise ConfigError(f"[web] oidc_issuer {settings.oidc_issuer!r} must be https://")
        self.issuer = settings.oidc_issuer.rstrip("/")
        self.client_id = settings.oidc_client_id
        self._secret = secret
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None

    async def _get_json(self, url: str) -> dict[str, Any]:
        if not _issuer_allowed(url):
            raise ConfigError(f"OIDC: refusing a non-https URL {url[:100]!r}")
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as client:
            answer = await client.get(url)
        if answer.status_code != 200:
            raise ConfigError(f"OIDC: {url[:100]} answered {answer.status_code}")
        body = answer.json()
        if not isinstance(body, dict):
            raise ConfigError(f"OIDC: {url[:100]} did not answer a JSON object")
        return body

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            found = await self._get_json(f"{self.issuer}/.well-known/openid-configuration")
            if str(found.get("issuer", "")).rstrip("/") != self.issuer:
                raise ConfigError("OIDC: the discovery document names another issuer")
            for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(found.get(key), str):
                    raise ConfigError(f"OIDC: the discovery document has no {key}")
            self._metadata = found
        return self._metadata

    async def keys(self, *, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            meta = await self.metadata()
            self._keys = KeySet.import_key_set(await self._get_json(meta["jwks_uri"]))  # type: ignore[arg-type]
        return self._keys

    def _client(self, redirect_uri: str) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.client_id,
            client_secret=self._secret.reveal(),
            scope="openid profile email",
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=HTTP_TIMEOUT_S,
        )

    async def authorization_url(
        self, redirect_uri: str, *, state: str, nonce: str, verifier: str
    ) -> str:
        meta = await self.metadata()
        async with self._client(redirect_uri) as client:
            url, _ = client.create_authorization_url(
                meta["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier
            )
        return str(url)

    async def subject(self, redirect_uri: str, *, code: str, verifier: str, nonce: str) -> str:
        """Exchange the code; verify the ID token; return its subject."""
        meta = await self.metadata()
        async with self._client(redirect_uri) as client:
            token = await client.fetch_token(
                meta["token_endpoint"], code=code, code_verifier=verifier
            )
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise Forbidden("the identity provider sent no ID token")
        try:
            try:
                decoded = jwt.decode(id_token, await self.keys(), algorithms=ALGORITHMS)
            except JoseError:
                decoded = jwt.decode(id_token, await self.keys(refresh=True), algorithms=ALGORITHMS)
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.client_id},
                sub={"essential": True},
                exp={"essential": True},
                iat={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise Forbidden(f"the ID token was refused: {type(exc).__name__}") from exc
        return str(decoded.claims["sub"])


def _redirect_uri(request: Request) -> str:
    console = console_of(request)
    base = console.settings.public_url or str(request.base_url).rstrip("/")
    return f"{base}{CALLBACK_PATH}"


async def start(request: Request) -> Response:
    from recorder.web.auth import local_next

    console = console_of(request)
    assert console.oidc is not None
    pending_id, state, nonce, verifier = new_token(), new_token(), new_token(), new_token()
    now = console.now_ms()
    pending: dict[str, JsonValue] = {
        "state": state,
        "nonce": nonce,
        "verifier": verifier,
        "next": local_next(request.query_params.get("next")),
    }
    await console.accounts.create_session(
        session_hash=session_hash(pending_id),
        username=None,
        csrf_token=new_token(),
        now_ms=now,
        expires_ms=now + PENDING_MS,
        pending=pending,
    )
    url = await console.oidc.authorization_url(
        _redirect_uri(request), state=state, nonce=nonce, verifier=verifier
    )
    response = RedirectResponse(url, status_code=303)
    # SameSite=Lax, not Strict: the identity provider's redirect back is a cross-site
    # navigation, which a Strict cookie would not come with. It is only good for the callback.
    response.set_cookie(
        PENDING_COOKIE,
        pending_id,
        max_age=PENDING_MS // 1000,
        path=CALLBACK_PATH,
        secure=console.secure,
        httponly=True,
        samesite="lax",
    )
    return response


async def _pending(request: Request) -> WebSession | None:
    cookie = request.cookies.get(PENDING_COOKIE)
    if not cookie or len(cookie) > 128:
        return None
    console = console_of(request)
    return await console.accounts.session(session_hash(cookie), console.now_ms())


async def callback(request: Request) -> Response:
    from recorder.web.auth import new_session, set_cookie

    console = console_of(request)
    assert console.oidc is not None
    session = await _pending(request)
    pending = session.pending if session is not None else None
    if session is None or session.username is not None or not pending:
        raise Forbidden("no sign-in in progress in this browser: start again")
    given = request.query_params.get("state") or ""
    if not hmac.compare_digest(str(pending.get("state")).encode(), given.encode()):
        raise Forbidden("the sign-in answer does not belong to this browser's sign-in")
    # One use: whatever happens next, this pending sign-in is gone.
    await console.accounts.end_session(session.session_hash)
    if request.query_params.get("error"):
        raise Forbidden("the identity provider refused the sign-in")
    code = request.query_params.get("code")
    if not code:
        raise Forbidden("the identity provider sent no code")
    subject = await console.oidc.subject(
        _redirect_uri(request),
        code=code,
        verifier=str(pending["verifier"]),
        nonce=str(pending["nonce"]),
    )
    account = await console.accounts.by_subject(subject)
    if account is None or account.disabled:
        logger.warning("web console: OIDC subject without an active account tried to sign in")
        raise Forbidden(
            "your identity is not an account of this console: ask an administrator to add it "
            "(recorder web user add NAME --role ROLE --oidc-subject SUBJECT)"
        )
    session_id = await new_session(console, account.username, replaces=None)
    target = str(pending.get("next") or "/search")
    # A page of ours that moves on (meta refresh, no script): the next request is a same-site
    # navigation, so the Strict session cookie comes with it; a redirect from here would still
    # count as the identity provider's cross-site navigation and arrive without it.
    response = console.render(request, None, "signed_in.html", target=target)
    set_cookie(response, console, session_id, console.settings.session_minutes * 60)
    response.delete_cookie(
        PENDING_COOKIE, path=CALLBACK_PATH, secure=console.secure, httponly=True, samesite="lax"
    )
    return response


def routes() -> list[Route]:
    return [
        Route("/login/oidc", start, methods=["GET"]),
        Route(CALLBACK_PATH, callback, methods=["GET"]),
    ]
