"""Zoom's REST APIs: what the recorder asks of Zoom and what it learns from it.

``open_zoom_api(config)`` gives the configured client with the RTMS controller and the
directory on it (the service's auto-start and enrichment use these); ``recorder rtms`` is
``recorder.zoom.commands``; the seams are in ``recorder.zoom.directory``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recorder.config import Config
    from recorder.zoom.client import ZoomApiClient
    from recorder.zoom.control import ZoomRtmsController
    from recorder.zoom.directory_http import HttpZoomDirectory


@dataclass(frozen=True, slots=True)
class ZoomApi:
    client: ZoomApiClient
    controller: ZoomRtmsController
    directory: HttpZoomDirectory


@asynccontextmanager
async def open_zoom_api(
    config: Config, environ: Mapping[str, str] | None = None
) -> AsyncIterator[ZoomApi]:
    """The configured REST client, controller and directory, closed when the block ends.

    Raises:
        ConfigError: client id, secret or account id missing (named), or a base URL refused.
    """
    from recorder.zoom.client import ZoomApiClient, ZoomCredentials
    from recorder.zoom.control import ZoomRtmsController
    from recorder.zoom.directory_http import HttpZoomDirectory

    credentials = ZoomCredentials.from_config(config, environ)
    client = ZoomApiClient(config.zoom, credentials)
    async with client:
        yield ZoomApi(
            client,
            ZoomRtmsController(client, rtms_client_id=credentials.client_id),
            HttpZoomDirectory(client),
        )
