"""sd_notify over a real AF_UNIX datagram socket, path and abstract namespace."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from recorder.service.systemd import SystemdNotifier, watchdog_interval_s


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, str(path)
    sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_ready_status_watchdog_stopping(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    try:
        assert notifier.ready("accepting webhooks on :8080")
        assert received(sock) == ["READY=1", "STATUS=accepting webhooks on :8080"]
        assert notifier.status("3 engagements\nINJECTED=1")
        assert received(sock) == ["STATUS=3 engagements INJECTED=1"]
        assert notifier.watchdog()
        assert received(sock) == ["WATCHDOG=1"]
        assert notifier.stopping("draining")
        assert received(sock) == ["STOPPING=1", "STATUS=draining"]
        assert notifier.ready()
        assert received(sock) == ["READY=1"]
    finally:
        notifier.close()


def test_abstract_namespace_socket() -> None:
    name = f"rtms-recorder-test-{secrets.token_hex(6)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    notifier = SystemdNotifier(f"@{name}")
    try:
        assert notifier.watchdog()
        assert received(sock) == ["WATCHDOG=1"]
    finally:
        notifier.close()
        sock.close()


def test_without_systemd_every_call_is_a_harmless_no_op() -> None:
    notifier = SystemdNotifier.from_environ({})
    assert not notifier.enabled
    assert notifier.ready()
    assert notifier.watchdog()
    assert notifier.stopping()
    assert notifier.ping_interval_s is None


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path) -> None:
    notifier = SystemdNotifier(str(tmp_path / "gone.sock"))
    try:
        assert notifier.watchdog() is False
        assert notifier.watchdog() is False
    finally:
        notifier.close()


def test_unsupported_transport_is_disabled() -> None:
    assert not SystemdNotifier("vsock:2:1234").enabled


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "20000000"}, 20.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}, 20.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "x"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval_s(environ) == expected


def test_ping_interval_is_half_the_watchdog(listener: tuple[socket.socket, str]) -> None:
    _sock, path = listener
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000"})
    assert notifier.watchdog_interval_s == 30.0
    assert notifier.ping_interval_s == 15.0
