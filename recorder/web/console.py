"""What every route needs: the components, accounts, settings, templates and clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import jinja2
import trio
from starlette.requests import Request
from starlette.responses import HTMLResponse

from recorder.catalog.base import AuditEvent
from recorder.config import WebConfig
from recorder.web.accounts import WebAccounts
from recorder.web.media import MediaProvider
from recorder.web.throttle import FailureThrottle

if TYPE_CHECKING:
    from recorder.service.components import Components
    from recorder.video.memory_mux import MemoryVideo
    from recorder.web.auth import Principal
    from recorder.web.oidc import OidcClient

TEMPLATES: Final = Path(__file__).parent / "templates"


def template_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


@dataclass(slots=True)
class Console:
    components: Components
    accounts: WebAccounts
    settings: WebConfig
    #: Secure cookies (and HSTS) unless served as plain HTTP on loopback for development.
    secure: bool
    now_ms: Callable[[], int]
    media: MediaProvider | None = None
    oidc: OidcClient | None = None
    templates: jinja2.Environment = field(default_factory=template_env)
    #: The ``play`` audit event of each (session, recording, track) in this process: a player
    #: makes many range requests under one event (the media provider decrypts under it).
    played: dict[tuple[str, str, str], AuditEvent] = field(default_factory=dict)
    #: Whether the waveform library (``recorder.frontend``) is installed and mounted.
    vendor_available: bool = False
    #: Failed sign-ins per user name and client address, and per client address.
    user_throttle: FailureThrottle = field(
        default_factory=lambda: FailureThrottle(max_failures=5, window_ms=900_000, lock_ms=900_000)
    )
    client_throttle: FailureThrottle = field(
        default_factory=lambda: FailureThrottle(max_failures=30, window_ms=900_000, lock_ms=900_000)
    )
    #: Listening videos built in memory per (session, recording, play event) (``web.video``).
    videos: dict[tuple[str, str, int], MemoryVideo] = field(default_factory=dict)
    #: One video built at a time (memory: see ``web.video.MAX_VIDEO_BYTES``).
    video_lock: trio.Lock = field(default_factory=trio.Lock)

    def render(
        self,
        request: Request,
        principal: Principal | None,
        name: str,
        *,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        from recorder.web.roles import Permission, allows

        def can(permission: str) -> bool:
            return principal is not None and allows(principal.role, Permission(permission))

        body = self.templates.get_template(name).render(
            me=principal,
            can=can,
            csrf=principal.csrf if principal is not None else context.pop("csrf", ""),
            oidc_enabled=self.oidc is not None,
            **context,
        )
        return HTMLResponse(body, status_code=status)


def console_of(request: Request) -> Console:
    console = request.app.state.console
    assert isinstance(console, Console)
    return console
