"""Zoom's REST APIs: what the recorder asks of Zoom and what it learns from it.

``open_zoom_api(config)`` gives the configured client with the RTMS controller, the directory
and the listing on it (the service's auto-start and enrichment, ``recorder completeness pull``
use these); ``recorder rtms`` is ``recorder.zoom.commands``; the seams are in
``recorder.zoom.directory`` and ``recorder.completeness.pull``.
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
    from recorder.zoom.listing_http import HttpZoomListing


@dataclass(frozen=True, slots=True)
class ZoomApi:
    client: ZoomApiClient
    controller: ZoomRtmsController
    directory: HttpZoomDirectory
    #: What Zoom's list APIs say started (``recorder completeness pull``), for the
    #: ``[completeness] products``.
    listing: HttpZoomListing


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
    from recorder.zoom.listing_http import HttpZoomListing

    credentials = ZoomCredentials.from_config(config, environ)
    client = ZoomApiClient(config.zoom, credentials)
    async with client:
        yield ZoomApi(
            client,
            ZoomRtmsController(client, rtms_client_id=credentials.client_id),
            HttpZoomDirectory(client),
            HttpZoomListing(
                client,
                credentials.account_id,
                products=config.completeness.products,
                page_size=config.zoom.list_page_size,
                max_pages=config.zoom.list_max_pages,
            ),
        )
