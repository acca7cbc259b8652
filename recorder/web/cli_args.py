"""The ``recorder web`` arguments (light: the CLI builds every parser at start-up)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from recorder.web.roles import Role


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    config_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    p = sub.add_parser(
        "web",
        help="the officers' web console (serve it, manage its accounts)",
        description="Without a subcommand: serve the console at [web] bind until stopped "
        "(docs/web.md). `recorder web user ...` manages its accounts.",
    )
    config_arg(p)
    wsub = p.add_subparsers(dest="web_command")
    q = wsub.add_parser("user", help="local accounts of the console (argon2 password hashes)")
    usub = q.add_subparsers(dest="user_command", required=True)
    a = usub.add_parser("add", help="add an account; the password is read from a prompt or stdin")
    config_arg(a)
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=[r.value for r in Role])
    a.add_argument("--reason", default="account created", help="why (audited)")
    a.add_argument(
        "--oidc-subject",
        default=None,
        help="sign in through [web] oidc_issuer as this subject (sub) instead of a password",
    )
    a = usub.add_parser("list", help="every account, its role and whether it is disabled")
    config_arg(a)
    a = usub.add_parser("disable", help="disable an account and end its sessions now")
    config_arg(a)
    a.add_argument("name")
    a.add_argument("--reason", default="account disabled", help="why (audited)")
