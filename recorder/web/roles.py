"""Who may do what in the console. Checked server-side on every route (``auth.require``)."""

from __future__ import annotations

import enum
from typing import Final


class Role(enum.StrEnum):
    OFFICER = "officer"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"


class Permission(enum.StrEnum):
    SEARCH = "search"
    VIEW = "view"  # metadata of one recording: participants, gaps, holds, verification
    PLAY = "play"  # decrypts: audio, peaks, transcript
    EXPORT = "export"
    VERIFY = "verify"
    HOLD = "hold"
    AUDIT = "audit"
    FINDINGS = "findings"


_OFFICER: Final = frozenset(
    {
        Permission.SEARCH,
        Permission.VIEW,
        Permission.PLAY,
        Permission.EXPORT,
        Permission.VERIFY,
        Permission.FINDINGS,
    }
)

PERMISSIONS: Final[dict[Role, frozenset[Permission]]] = {
    Role.OFFICER: _OFFICER,
    Role.SUPERVISOR: _OFFICER | {Permission.HOLD, Permission.AUDIT},
    # Read-only: what happened and who looked, never the content.
    Role.AUDITOR: frozenset(
        {Permission.SEARCH, Permission.VIEW, Permission.AUDIT, Permission.FINDINGS}
    ),
}


def allows(role: Role, permission: Permission) -> bool:
    return permission in PERMISSIONS[role]
