"""``recorder web`` (serve the console) and ``recorder web user add|list|disable``."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import sys
from pathlib import Path
from typing import TextIO

import trio

from recorder.config import Secret, Secrets
from recorder.errors import ConfigError, RecorderError
from recorder.officer.actor import os_actor
from recorder.service.components import Components, now_ms
from recorder.web.accounts import WebAccounts
from recorder.web.roles import Role


def read_password(stdin: TextIO) -> str:
    """From a prompt (twice) on a terminal, else the first line of stdin."""
    if stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise ConfigError("the two passwords differ")
        return first
    line = stdin.readline()
    return line.rstrip("\r\n")


async def user_command(c: Components, args: argparse.Namespace) -> int:
    accounts = WebAccounts(c.catalog)
    if args.user_command == "add":
        password = None
        if args.oidc_subject is None:
            password = await trio.to_thread.run_sync(read_password, sys.stdin)
        account = await accounts.add(
            args.name,
            Role(args.role),
            password=password,
            oidc_subject=args.oidc_subject,
            actor=os_actor(),
            reason=args.reason,
            now_ms=now_ms(),
        )
        print(f"added {account.username} ({account.role})")
        return 0
    if args.user_command == "disable":
        account = await accounts.disable(
            args.name, actor=os_actor(), reason=args.reason, now_ms=now_ms()
        )
        print(f"disabled {account.username}; its sessions are ended")
        return 0
    for account in await accounts.list():
        kind = "oidc" if account.password_hash is None else "local"
        state = "disabled" if account.disabled else "active"
        print(f"{account.username:<24} {account.role:<10} {kind:<5} {state}")
    return 0


def configure_logging(config_path: Path | None, level: str | None) -> None:
    """The service's redacting log handler, masking every configured secret (the OIDC client
    secret among them) wherever it would appear."""
    import os

    from recorder.config import load_config
    from recorder.service.logs import configure_logging as configure

    config = load_config(config_path, os.environ)
    configure(
        level or config.logging.level, config.logging.format, secrets=secret_values(config.secrets)
    )


def secret_values(secrets: Secrets) -> list[Secret]:
    """Every secret that is set (each field of ``Secrets`` is one)."""
    found = (getattr(secrets, f.name) for f in dataclasses.fields(Secrets))
    return [value for value in found if isinstance(value, Secret)]


def _only(error: BaseException) -> BaseException:
    """The one exception inside nested single-exception groups (else the group itself)."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


async def serve_command(c: Components, args: argparse.Namespace) -> int:
    from recorder.web.serve import check_settings, public_url, serve_web

    settings = c.config.web
    check_settings(settings)
    try:
        async with trio.open_nursery() as nursery:
            port: int = await nursery.start(
                lambda task_status: serve_web(c, settings, now_ms=now_ms, task_status=task_status)
            )
            print(f"web console at {public_url(settings, port)} (Ctrl-C stops it)", flush=True)
    except BaseExceptionGroup as group:
        error = _only(group)
        if isinstance(error, KeyboardInterrupt):
            raise KeyboardInterrupt from None  # Ctrl-C: `recorder` exits 130, no traceback
        if isinstance(error, RecorderError):
            raise error from None
        if isinstance(error, OSError):
            raise ConfigError(f"[web] bind {settings.bind}: {error.strerror or error}") from None
        raise
    return 0
