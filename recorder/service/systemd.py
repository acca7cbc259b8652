"""sd_notify(3) without dependencies: READY, STATUS, WATCHDOG and STOPPING to systemd.

The protocol is one AF_UNIX datagram of ``KEY=value`` lines to ``$NOTIFY_SOCKET``; a leading
``@`` names a socket in the abstract namespace. Outside systemd (no ``$NOTIFY_SOCKET``) every call
is a cheap no-op, so the service calls the notifier unconditionally.

Rule: ``watchdog()`` is called from the service's running loop, never from a side thread, so a
wedged loop stops the pings and systemd restarts the service (``WatchdogSec=`` in the unit,
compliance.md). Ping at ``ping_interval_s`` (half of systemd's interval).

Notification is best-effort by design: a failed send is logged (once per kind of failure) and
returns False; it never raises into the service loop.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import Final

logger = logging.getLogger(__name__)

#: The service status text is shown by ``systemctl status``; keep it to one short line.
_MAX_STATUS_CHARS: Final = 200


def watchdog_interval_s(environ: Mapping[str, str], *, pid: int | None = None) -> float | None:
    """systemd's watchdog interval for this process, or None when the watchdog is off.

    ``$WATCHDOG_USEC`` holds the interval; ``$WATCHDOG_PID``, when set, must be our pid (the
    variables are inherited by children, which must not ping on the parent's behalf).
    """
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    watchdog_pid = environ.get("WATCHDOG_PID")
    if watchdog_pid is not None:
        if not watchdog_pid.isdigit():
            return None
        if int(watchdog_pid) != (os.getpid() if pid is None else pid):
            return None
    return int(usec) / 1_000_000


def _address(notify_socket: str) -> str | None:
    if notify_socket.startswith("@"):
        return "\0" + notify_socket[1:]
    if notify_socket.startswith("/"):
        return notify_socket
    # vsock: and other transports are for VMs and containers managers; not supported here.
    return None


class SystemdNotifier:
    """Sends sd_notify messages; a no-op when not started by systemd with ``Type=notify``."""

    def __init__(
        self, notify_socket: str | None, *, watchdog_interval: float | None = None
    ) -> None:
        self._address = _address(notify_socket) if notify_socket else None
        if notify_socket and self._address is None:
            logger.warning("NOTIFY_SOCKET transport not supported; systemd will not be notified")
        self._socket: socket.socket | None = None
        self._failures_logged: set[str] = set()
        self.watchdog_interval_s = watchdog_interval

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"), watchdog_interval=watchdog_interval_s(env))

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def ping_interval_s(self) -> float | None:
        """How often to call ``watchdog()``: half of systemd's interval, as sd_watchdog_enabled(3)
        recommends. None when the watchdog is off."""
        return None if self.watchdog_interval_s is None else self.watchdog_interval_s / 2

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines in one datagram. True if systemd got it (or is absent)."""
        if self._address is None:
            return True
        if self._socket is None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.setblocking(False)
        message = "\n".join(assignments).encode("utf-8")
        try:
            self._socket.sendto(message, self._address)
        except OSError as exc:
            kind = type(exc).__name__
            if kind not in self._failures_logged:
                self._failures_logged.add(kind)
                logger.warning("sd_notify failed", extra={"error": kind, "errno": exc.errno})
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """The service is up: webhooks are being accepted."""
        if status is None:
            return self.notify("READY=1")
        return self.notify("READY=1", _status_line(status))

    def status(self, text: str) -> bool:
        return self.notify(_status_line(text))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown has begun (draining); systemd waits up to TimeoutStopSec=."""
        if status is None:
            return self.notify("STOPPING=1")
        return self.notify("STOPPING=1", _status_line(status))

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _status_line(text: str) -> str:
    # A newline would start a new assignment: systemd would read the rest as another KEY=value.
    one_line = " ".join(text.split())
    return "STATUS=" + one_line[:_MAX_STATUS_CHARS]
