"""The end of ``recorder demo``: how to see the recordings in a browser.

``recorder demo --web`` serves the console on the demo's state (loopback only) with a fresh
supervisor account whose random password is printed once, and keeps serving until Ctrl-C.
Without ``--web`` the demo only says how; it still ends by itself (``ops/dev demo``).
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import trio

from recorder.officer.actor import os_actor
from recorder.service.components import now_ms, open_components
from recorder.service.demo import demo_config
from recorder.web.accounts import WebAccounts
from recorder.web.roles import Role
from recorder.web.serve import public_url, serve_web


def _free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def hint(print_fn: Callable[[str], None] = print) -> None:
    print_fn(
        "To browse these recordings in the web console, run `recorder demo --web` (the default "
        "in a terminal): it prints the console's URL and a one-time login, and serves until "
        "Ctrl-C."
    )


async def serve_demo_console(
    state_dir: Path,
    *,
    print_fn: Callable[[str], None] = print,
    port: int | None = None,
    task_status: trio.TaskStatus[tuple[str, str, str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the console on the demo's state until cancelled; reports (url, user, password)."""
    config = demo_config(state_dir)
    async with open_components(config) as c:
        accounts = WebAccounts(c.catalog)
        user = f"demo-{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(15)
        await accounts.add(
            user,
            Role.SUPERVISOR,
            password=password,
            actor=os_actor(),
            reason="recorder demo --web: a one-time login for this demo",
            now_ms=now_ms(),
        )
        if port is None and not _free(*config.web.host_port):
            port = 0  # another console (or anything) has the usual port: take a free one
        settings = replace(config.web, bind="127.0.0.1:0" if port == 0 else config.web.bind)
        async with trio.open_nursery() as nursery:
            bound: int = await nursery.start(
                lambda task_status: serve_web(c, settings, now_ms=now_ms, task_status=task_status)
            )
            url = public_url(settings, bound)
            print_fn(f"web console: {url}")
            print_fn(f"  one-time login for this demo: user {user}  password {password}")
            print_fn("  (serving until Ctrl-C)")
            task_status.started((url, user, password))
