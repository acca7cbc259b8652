"""``recorder web``: the console served by hypercorn's trio worker.

Plain HTTP is allowed only on a loopback address (development, the demo); any other bind needs
``[web] tls_cert`` and ``tls_key``, and then cookies are ``Secure`` and HSTS is sent.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from recorder.config import WebConfig
from recorder.errors import ConfigError
from recorder.web.actions import remove_stale_exports
from recorder.web.app import build_app
from recorder.web.media import MediaProvider, default_provider

if TYPE_CHECKING:
    from recorder.service.components import Components

logger = logging.getLogger(__name__)

#: Longest the media provider may take to close when the console stops (shielded).
CLOSE_TIMEOUT_S: Final = 10.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def public_url(settings: WebConfig, port: int) -> str:
    if settings.public_url:
        return settings.public_url
    host, _ = settings.host_port
    scheme = "https" if settings.tls_cert else "http"
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


def check_settings(settings: WebConfig) -> None:
    host, _ = settings.host_port
    if settings.tls_cert is None and not is_loopback(host):
        raise ConfigError(
            f"[web] bind {settings.bind}: plain HTTP is only allowed on a loopback address; "
            "set tls_cert and tls_key"
        )


async def serve_web(
    components: Components,
    settings: WebConfig,
    *,
    now_ms: Callable[[], int],
    media: MediaProvider | None = None,
    port: int | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    max_login_failures: int = 5,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; reports the bound port (``port=0`` in tests picks a free one)."""
    check_settings(settings)
    host, configured_port = settings.host_port
    tls = settings.tls_cert is not None
    oidc = None
    if settings.oidc_issuer is not None:
        from recorder.web.oidc import OidcClient

        secret = components.config.secrets.web_oidc_client_secret
        if secret is None:
            raise ConfigError(
                "[web] oidc_issuer is set: RECORDER_WEB_OIDC_CLIENT_SECRET is missing"
            )
        oidc = OidcClient(settings, secret)
    for stale in await trio.to_thread.run_sync(remove_stale_exports):
        logger.warning("removed an export directory a stopped console left behind: %s", stale)
    provider = media if media is not None else default_provider()
    app = build_app(
        components,
        settings,
        now_ms=now_ms,
        secure=tls,
        media=provider,
        oidc=oidc,
        max_login_failures=max_login_failures,
    )
    config = HypercornConfig()
    bound = configured_port if port is None else port
    config.bind = [f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"]
    config.accesslog = None  # an access log would hold recording ids and queries; audit has them
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    config.graceful_timeout = 5.0
    if tls:
        config.certfile = str(settings.tls_cert)
        config.keyfile = str(settings.tls_key)

    async def run(*, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        await serve(app, config, shutdown_trigger=shutdown_trigger, task_status=task_status)  # type: ignore[arg-type]

    try:
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(run)
            task_status.started(int(binds[0].rsplit(":", 1)[1]))
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S):
            await provider.aclose()  # spooled ciphertext of open tracks, peaks in memory
