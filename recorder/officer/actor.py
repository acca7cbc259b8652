"""Who is acting: the operating-system user, never a name typed on the command line.

The audit log's ``actor`` must identify a person or job the host vouches for (SEC 17a-4(f)'s
"identity of the actor"); the OS account under which the command runs is what this host can
verify. ``sudo`` keeps the invoking user visible as ``via``.
"""

from __future__ import annotations

import os
import pwd


def os_actor() -> str:
    """``os:<user>`` (``os:<user>(sudo:<invoker>)`` when run through sudo)."""
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid{uid}"
    invoker = os.environ.get("SUDO_USER")
    if invoker and invoker != name:
        return f"os:{name}(sudo:{invoker})"
    return f"os:{name}"
