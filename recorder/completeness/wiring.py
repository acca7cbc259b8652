"""The Zoom REST client (``recorder.zoom.open_zoom_api``) as the service's completeness parts.

Rule: given parts (tests, embedders) win; otherwise the client is opened only when something
will use it (``[completeness] enabled`` with ``auto_start``, or ``enrich``) and Zoom is
configured (client id and secret, ``[zoom] account_id`` or ``ZOOM_ACCOUNT_ID``). Without that,
auto-start and enrichment stay off and the log says why, once; recording is never affected.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from recorder.config import Config
from recorder.errors import ConfigError
from recorder.service.components import ZoomParts

logger = logging.getLogger(__name__)


def wanted(config: Config) -> bool:
    policy = config.completeness
    return (policy.enabled and policy.auto_start) or policy.enrich


@asynccontextmanager
async def zoom_parts(
    config: Config, given: ZoomParts | None = None
) -> AsyncIterator[ZoomParts | None]:
    """The parts to give ``open_components``: ``given``, the configured REST client's, or None."""
    if given is not None or not wanted(config):
        yield given
        return
    from recorder.zoom import open_zoom_api

    async with AsyncExitStack() as stack:
        try:
            api = await stack.enter_async_context(open_zoom_api(config))
        except ConfigError as exc:
            logger.info("Zoom REST API not configured: auto-start and enrichment are off (%s)", exc)
            api = None
        yield (
            None
            if api is None
            else ZoomParts(rtms_controller=api.controller, zoom_directory=api.directory)
        )
