"""Sessions and sign-in: who is asking, and may they.

Rules:

1. A session is a catalog row found by the SHA-256 of a random cookie value; the cookie is
   ``HttpOnly``, ``SameSite=Strict``, ``Path=/`` and ``Secure`` (unless plain-HTTP loopback
   development), and lives no longer than the row (``[web] session_minutes``).
2. The login form has its own pre-login session (and CSRF token); signing in replaces it with
   a new session id, so an id planted before sign-in is worth nothing after it.
3. ``require`` is called by every route with the permission it needs; a missing session is 401
   (pages redirect to the login form), a wrong role 403. Every POST checks the session's CSRF
   token (form field ``csrf`` or header ``X-CSRF-Token``) in constant time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, urlsplit

import trio
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from recorder.catalog._web import WebSession
from recorder.web.console import Console, console_of
from recorder.web.errors import Forbidden, NotSignedIn, WebError
from recorder.web.passwords import verify_password
from recorder.web.roles import Permission, Role, allows
from recorder.web.security import COOKIE_NAME, CSRF_FIELD, CSRF_HEADER, csrf_ok, new_token
from recorder.web.security import session_hash as hash_of

logger = logging.getLogger(__name__)

#: A login form (pre-login session) is good for this long.
LOGIN_FORM_MS: Final = 15 * 60 * 1000
#: The login form's pre-login session (its CSRF token), apart from the signed-in cookie.
LOGIN_COOKIE: Final = "rtmsrec_login"
#: Form bodies larger than this are refused before parsing.
MAX_FORM_FIELDS: Final = 64


@dataclass(frozen=True, slots=True)
class Principal:
    username: str
    role: Role
    session_hash: str
    csrf: str
    #: ``local`` or ``oidc``.
    via: str = "local"

    @property
    def actor(self) -> str:
        """The audit log's actor: the signed-in identity, never anything typed into a form."""
        return f"web:{self.username}"


def local_next(target: str | None) -> str:
    """Where to go after sign-in: a path on this site only (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/search"
    if "\\" in target or any(ord(ch) < 32 or ord(ch) == 127 for ch in target):
        return "/search"
    try:
        parts = urlsplit(target)
    except ValueError:  # e.g. "/[" is no URL at all
        return "/search"
    if parts.scheme or parts.netloc:
        return "/search"
    return target


async def _session(request: Request, name: str = COOKIE_NAME) -> WebSession | None:
    cookie = request.cookies.get(name)
    if not cookie or len(cookie) > 128:
        return None
    console = console_of(request)
    return await console.accounts.session(hash_of(cookie), console.now_ms())


async def current(request: Request) -> Principal | None:
    session = await _session(request)
    if session is None or session.username is None:
        return None
    console = console_of(request)
    account = await console.accounts.get(session.username)
    if account is None or account.disabled:
        return None
    via = "oidc" if account.password_hash is None else "local"
    return Principal(
        account.username, Role(account.role), session.session_hash, session.csrf_token, via
    )


async def require(request: Request, permission: Permission) -> Principal:
    principal = await current(request)
    if principal is None:
        raise NotSignedIn("sign in first")
    if not allows(principal.role, permission):
        raise Forbidden(f"the {principal.role.value} role may not {permission.value}")
    return principal


async def read_form(request: Request) -> FormData:
    return await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)


def check_csrf(request: Request, expected: str, form: FormData | None) -> None:
    given = request.headers.get(CSRF_HEADER)
    if given is None and form is not None:
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not csrf_ok(expected, given):
        raise Forbidden("missing or wrong CSRF token: reload the page and try again")


async def require_post(request: Request, permission: Permission) -> tuple[Principal, FormData]:
    """A state-changing request: signed in, allowed, and carrying this session's CSRF token."""
    principal = await require(request, permission)
    form = await read_form(request)
    check_csrf(request, principal.csrf, form)
    return principal, form


def set_cookie(
    response: Response,
    console: Console,
    value: str,
    max_age_s: int,
    *,
    name: str = COOKIE_NAME,
    path: str = "/",
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age_s,
        path=path,
        secure=console.secure,
        httponly=True,
        samesite="strict",
    )


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


async def new_session(console: Console, username: str, *, replaces: str | None) -> str:
    """A new signed-in session for ``username`` (replacing the pre-login one); audited.
    Returns the cookie value (only its hash is stored)."""
    session_id = new_token()
    now = console.now_ms()
    await console.accounts.create_session(
        session_hash=hash_of(session_id),
        username=username,
        csrf_token=new_token(),
        now_ms=now,
        expires_ms=now + console.settings.session_minutes * 60_000,
        replaces=replaces,
    )
    await console.components.catalog.append_audit(
        actor=f"web:{username}",
        action="web.login",
        target=username,
        reason="signed in to the web console",
        now_ms=now,
    )
    return session_id


async def start_session(
    request: Request, console: Console, username: str, *, replaces: str | None
) -> Response:
    session_id = await new_session(console, username, replaces=replaces)
    response = RedirectResponse(local_next(request.query_params.get("next")), status_code=303)
    set_cookie(response, console, session_id, console.settings.session_minutes * 60)
    return response


# --- routes ---------------------------------------------------------------------------------


async def login_form(request: Request) -> Response:
    console = console_of(request)
    if await current(request) is not None:
        return RedirectResponse(local_next(request.query_params.get("next")), status_code=303)
    # The login form's own cookie: a signed-in session cookie the browser did not send (a
    # cross-site link, SameSite=Strict) is never overwritten by showing the form.
    session = await _session(request, LOGIN_COOKIE)
    response_cookie = None
    if session is None or session.username is not None:
        session_id = new_token()
        now = console.now_ms()
        session = await console.accounts.create_session(
            session_hash=hash_of(session_id),
            username=None,
            csrf_token=new_token(),
            now_ms=now,
            expires_ms=now + LOGIN_FORM_MS,
        )
        response_cookie = session_id
    response = console.render(
        request,
        None,
        "login.html",
        csrf=session.csrf_token,
        next=local_next(request.query_params.get("next")),
        error=request.query_params.get("error") == "1",
    )
    if response_cookie is not None:
        set_cookie(
            response, console, response_cookie, LOGIN_FORM_MS // 1000,
            name=LOGIN_COOKIE, path="/login",
        )  # fmt: skip
    return response


async def login_submit(request: Request) -> Response:
    console = console_of(request)
    session = await _session(request, LOGIN_COOKIE)
    form = await read_form(request)
    if session is None or session.username is not None:
        raise Forbidden("the login form expired: reload it and sign in again")
    check_csrf(request, session.csrf_token, form)
    username = form.get("username")
    password = form.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise Forbidden("user name and password are required")
    client = request.client.host if request.client is not None else "unknown"
    user_key = f"{username[:64].casefold()}@{client}"
    now = console.now_ms()
    wait_ms = max(
        console.user_throttle.retry_after_ms(user_key, now),
        console.client_throttle.retry_after_ms(client, now),
    )
    if wait_ms:
        minutes = -(-wait_ms // 60_000)
        raise WebError(f"too many failed sign-ins: try again in {minutes} minute(s)", status=429)
    account = await console.accounts.get(username[:64]) if username else None
    stored = account.password_hash if account is not None else None
    good = await trio.to_thread.run_sync(verify_password, stored, password)
    if not good or account is None or account.disabled:
        logger.warning("web console: failed sign-in for %r", username[:64])
        console.user_throttle.failed(user_key, now)
        console.client_throttle.failed(client, now)
        nxt = quote(local_next(request.query_params.get("next")), safe="")
        return RedirectResponse(f"/login?error=1&next={nxt}", status_code=303)
    console.user_throttle.succeeded(user_key)
    response = await start_session(
        request, console, account.username, replaces=session.session_hash
    )
    response.delete_cookie(
        LOGIN_COOKIE, path="/login", secure=console.secure, httponly=True, samesite="strict"
    )
    return response


async def logout(request: Request) -> Response:
    console = console_of(request)
    principal = await current(request)
    if principal is not None:
        form = await read_form(request)
        check_csrf(request, principal.csrf, form)
        await console.accounts.end_session(principal.session_hash)
        await console.components.catalog.append_audit(
            actor=principal.actor,
            action="web.logout",
            target=principal.username,
            reason="signed out",
            now_ms=console.now_ms(),
        )
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        COOKIE_NAME, path="/", secure=console.secure, httponly=True, samesite="strict"
    )
    return response
