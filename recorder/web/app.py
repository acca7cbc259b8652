"""Assembles the console: routes, error pages, static files, security headers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from recorder.config import WebConfig
from recorder.errors import ConfigError, RecorderError
from recorder.frontend import VENDOR_URL, node_modules_dir
from recorder.web import actions, auth, pages
from recorder.web import video as web_video
from recorder.web.accounts import WebAccounts
from recorder.web.console import Console, console_of
from recorder.web.errors import NotSignedIn, WebError
from recorder.web.media import MediaProvider
from recorder.web.security import BodyLimit, SecurityHeaders
from recorder.web.throttle import FailureThrottle

if TYPE_CHECKING:
    from recorder.service.components import Components
    from recorder.web.oidc import OidcClient

logger = logging.getLogger(__name__)

STATIC_DIR: Final = Path(__file__).parent / "static"
#: Failed sign-ins count for, and lock a user name (from one address) for, 15 minutes.
LOCK_MS: Final = 15 * 60_000


def vendor_dir() -> Path | None:
    """The front-end packages ``npm ci`` installed (wavesurfer.js), or None (said on pages)."""
    try:
        return node_modules_dir()
    except ConfigError as exc:
        logger.warning("web console: %s; pages show no waveforms", exc)
        return None


def _wants_json(request: Request) -> bool:
    path = request.url.path
    return (
        path.endswith(".json")
        or "/tracks/" in path
        or path.endswith("/video")
        or "application/json" in request.headers.get("accept", "")
    )


async def _web_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WebError)
    if isinstance(exc, NotSignedIn) and request.method == "GET" and not _wants_json(request):
        return auth.login_redirect(request)
    if _wants_json(request):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    console = console_of(request)
    principal = await auth.current(request)
    return console.render(request, principal, "error.html", status=exc.status, message=str(exc))


async def _recorder_error(request: Request, exc: Exception) -> Response:
    """An error of the officer APIs (a bad recording id, a store failure): said, not hidden."""
    assert isinstance(exc, RecorderError)
    logger.warning("web console: %s %s: %s", request.method, request.url.path, exc)
    if _wants_json(request):
        return JSONResponse({"error": str(exc)}, status_code=409)
    console = console_of(request)
    principal = await auth.current(request)
    return console.render(request, principal, "error.html", status=409, message=str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if _wants_json(request):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    console = console_of(request)
    principal = await auth.current(request)
    return console.render(
        request, principal, "error.html", status=exc.status_code, message=str(exc.detail)
    )


async def _home(request: Request) -> Response:
    return RedirectResponse("/search", status_code=303)


def build_app(
    components: Components,
    settings: WebConfig,
    *,
    now_ms: Callable[[], int],
    secure: bool,
    media: MediaProvider | None = None,
    oidc: OidcClient | None = None,
    max_login_failures: int = 5,
) -> Starlette:
    console = Console(
        components=components,
        accounts=WebAccounts(components.catalog),
        settings=settings,
        secure=secure,
        now_ms=now_ms,
        media=media,
        oidc=oidc,
        user_throttle=FailureThrottle(
            max_failures=max_login_failures, window_ms=LOCK_MS, lock_ms=LOCK_MS
        ),
    )
    rid = "{recording_id:str}"
    routes = [
        Route("/", _home),
        Route("/login", auth.login_form, methods=["GET"]),
        Route("/login", auth.login_submit, methods=["POST"]),
        Route("/logout", auth.logout, methods=["POST"]),
        Route("/search", pages.search_page),
        Route(f"/recordings/{rid}", pages.recording_page),
        Route(f"/recordings/{rid}/access", actions.give_reason, methods=["POST"]),
        Route(f"/recordings/{rid}/timeline.json", actions.timeline_json),
        Route(f"/recordings/{rid}/tracks/{{track:str}}/audio", actions.audio),
        Route(f"/recordings/{rid}/tracks/{{track:str}}/peaks.json", actions.peaks),
        Route(f"/recordings/{rid}/video", web_video.video),
        Route(f"/recordings/{rid}/verify", actions.verify_now, methods=["POST"]),
        Route(f"/recordings/{rid}/export", actions.export, methods=["POST"]),
        Route("/holds", pages.holds_page, methods=["GET"]),
        Route("/holds", actions.hold_place, methods=["POST"]),
        Route("/holds/{hold_id:int}/release", actions.hold_release, methods=["POST"]),
        Route("/audit", pages.audit_page),
        Route("/findings", pages.findings_page),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    if oidc is not None:
        from recorder.web import oidc as oidc_routes

        routes += oidc_routes.routes()
    vendor = vendor_dir()
    if vendor is not None:
        routes.append(Mount(VENDOR_URL, StaticFiles(directory=vendor), name="vendor"))
        console.vendor_available = True
    app = Starlette(
        routes=routes,
        exception_handlers={
            WebError: _web_error,
            RecorderError: _recorder_error,
            HTTPException: _http_error,
        },
    )
    app.state.console = console
    app.add_middleware(BodyLimit)
    app.add_middleware(SecurityHeaders, hsts=secure)
    return app
