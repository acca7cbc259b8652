"""``recorder rtms start|stop|pause|resume PRODUCT ID``, and the Python API under it.

``request_rtms_change`` is the one way the recorder asks Zoom to change a stream: the request
(actor, reason) and its audit event are committed first, then Zoom is asked, then Zoom's answer
is written (``recorder.catalog._rtms_requests``). A pause the stream then reports is attributed
to this request by the engagement that records it (``recorder.service.pause_evidence``).

The actor is the OS user running the command, or ``--actor`` (an agent's name given by the
desktop integration that calls this), with the OS user kept as ``via`` in the audit event.
Secrets come from the environment or systemd credentials only, never from the command line.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import trio

from recorder.catalog.aio import AsyncCatalog, open_configured_async_catalog
from recorder.catalog.rtms_request_types import RtmsRequestRow
from recorder.config import load_config
from recorder.errors import ZoomApiError
from recorder.officer.actor import os_actor
from recorder.products import Product
from recorder.zoom import open_zoom_api
from recorder.zoom.client import ZoomCredentials
from recorder.zoom.control import SUPPORTED_ACTIONS
from recorder.zoom.directory import RtmsAction, RtmsController

logger = logging.getLogger(__name__)

#: Writing Zoom's answer must happen even when the caller is being cancelled.
_FINISH_TIMEOUT_S = 10.0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def request_rtms_change(
    catalog: AsyncCatalog,
    controller: RtmsController,
    *,
    product: Product,
    target_id: str,
    action: RtmsAction,
    actor: str,
    reason: str,
    via: str | None = None,
    now_ms: Callable[[], int] = _now_ms,
) -> RtmsRequestRow:
    """Record, audit, ask Zoom, record Zoom's answer. Returns the finished request.

    Raises:
        ZoomApiError: Zoom refused or failed (the request is kept as ``refused`` with it).
        CatalogError: the request could not be recorded (Zoom was not asked).
    """
    if action not in SUPPORTED_ACTIONS[product]:
        # Refused before anything is written: there is no request Zoom could carry out.
        raise ZoomApiError(f"Zoom has no REST API to {action.value} RTMS of a {product.value}")
    row, _ = await catalog.add_rtms_request(
        product=product.value,
        target_id=target_id,
        action=action.value,
        actor=actor,
        reason=reason,
        now_ms=now_ms(),
        via=via,
    )
    try:
        await controller.change(product, target_id, action)
    except ZoomApiError as exc:
        with trio.CancelScope(shield=True), trio.move_on_after(_FINISH_TIMEOUT_S):
            await catalog.finish_rtms_request(
                row.request_id, outcome="refused", error=str(exc), now_ms=now_ms()
            )
        raise
    with trio.CancelScope(shield=True), trio.move_on_after(_FINISH_TIMEOUT_S):
        row = await catalog.finish_rtms_request(
            row.request_id, outcome="accepted", error=None, now_ms=now_ms()
        )
    return row


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``recorder rtms ...`` (registered by ``recorder.cli``)."""
    p = sub.add_parser("rtms", help="ask Zoom to start, stop, pause or resume RTMS (audited)")
    actions = p.add_subparsers(dest="rtms_command", required=True)
    products = [p.value for p in Product if SUPPORTED_ACTIONS[p]]
    for action in RtmsAction:
        q = actions.add_parser(action.value, help=f"{action.value} RTMS of a live instance")
        q.add_argument("--config", type=Path, default=None, help="TOML configuration file")
        q.add_argument("product", choices=products)
        q.add_argument("target_id", metavar="ID", help="meeting id or UUID, engagement id, call id")
        q.add_argument("--reason", default=None, help="why (audited; default: the command)")
        q.add_argument(
            "--actor", default=None, help="on whose behalf (default: the OS user; audited)"
        )
        if action is RtmsAction.PAUSE:
            q.add_argument(
                "--wait",
                type=float,
                default=0.0,
                metavar="SECONDS",
                help="wait this long for the recorded stream to show the pause (exit 1 if not)",
            )


async def run(args: argparse.Namespace) -> int:
    """The command: prints the request and Zoom's answer; exit 0 only when Zoom accepted."""
    config = load_config(args.config, os.environ)
    # Before the catalog is opened: a missing secret or account needs no database.
    ZoomCredentials.from_config(config)
    action = RtmsAction(args.rtms_command)
    product = Product(args.product)
    me = os_actor()
    actor = args.actor or me
    via = me if args.actor else None
    reason = args.reason or f"recorder rtms {action.value}"
    catalog = await open_configured_async_catalog(
        config.catalog, now_ms=_now_ms(), postgres_password=config.secrets.postgres_password
    )
    async with catalog, open_zoom_api(config) as zoom:
        # A refusal propagates (the CLI prints it and exits non-zero); it is already recorded.
        row = await request_rtms_change(
            catalog,
            zoom.controller,
            product=product,
            target_id=args.target_id,
            action=action,
            actor=actor,
            reason=reason,
            via=via,
        )
        print(
            f"request {row.request_id}: {action.value} {product.value} {args.target_id} "
            f"accepted by Zoom (actor {actor}, audited on {row.audit_target})"
        )
        wait_s = getattr(args, "wait", 0.0)
        if wait_s <= 0:
            return 0
        recording_id = await wait_for_pause(catalog, row, timeout_s=wait_s)
    if recording_id is None:
        print(f"the pause is NOT confirmed by a recorded stream after {wait_s:g} s")
        return 1
    print(f"the pause is confirmed on recording {recording_id}")
    return 0


#: How often ``wait_for_pause`` looks at the catalog.
_CONFIRM_POLL_S = 0.2


async def wait_for_pause(
    catalog: AsyncCatalog, request: RtmsRequestRow, *, timeout_s: float
) -> str | None:
    """The recording whose pause the request explains, once a recorder matched it; None if
    none did within ``timeout_s`` (the recorder flags it when the stream ends)."""
    with trio.move_on_after(timeout_s):
        while True:
            for row in await catalog.rtms_requests(target_id=request.target_id, limit=1000):
                if row.request_id == request.request_id and row.matched_recording_id:
                    return row.matched_recording_id
            await trio.sleep(_CONFIRM_POLL_S)
    return None
