"""``bench instructions``: its measured side runs natively in its smallest configuration, and
its reading of callgrind's output is checked on a file in callgrind's format (no valgrind run
here: under it one run takes minutes)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from recorder.bench import instructions
from recorder.testing.tls import SelfSignedCertificate

#: callgrind's compressed names: ``(id) name`` the first time, ``(id)`` alone after.
CALLGRIND_OUT = b"""\
version: 1
events: Ir
fn=(1) trio_loop
cfn=(2) epoll_wait
calls=3 0
0 40
cfn=(3) __libc_recv
calls=2 0
0 10
fn=(4) other
cfn=(2)
calls=4 0
0 50
cfn=(5) ./sysdeps/unix/sysv/linux/epoll_wait.c:epoll_wait
calls=1 0
0 5
cfn=(6) epoll_wait_if_ready
calls=9 0
0 1
fn=(2)
0 7
totals: 112
"""


def test_calls_are_counted_through_callgrinds_name_compression() -> None:
    assert instructions._calls_to(CALLGRIND_OUT, b"epoll_wait") == 3 + 4 + 1
    assert instructions._calls_to(CALLGRIND_OUT, b"__libc_recv") == 2
    assert instructions._calls_to(CALLGRIND_OUT, b"sendmsg") == 0
    match = instructions._TOTALS.search(CALLGRIND_OUT)
    assert match is not None
    assert match.group(1) == b"112"


@pytest.fixture
def own_affinity() -> Iterator[None]:
    """``--inner`` pins its process to one core (valgrind's process, there). Run in this test's
    process, that pin outlived the test: in every thread started meanwhile too (trio's cached
    worker threads, which start child processes), so later tests of the same pytest worker ran
    their children on one core (and OpenBLAS in a child saw one CPU). Every thread gets the
    process's cores back."""
    allowed = os.sched_getaffinity(0)
    try:
        yield
    finally:
        for task in os.listdir("/proc/self/task"):
            with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
                os.sched_setaffinity(int(task), allowed)


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
@pytest.mark.usefixtures("own_affinity")
def test_the_measured_side_records_a_short_slowed_stream(tmp_path: Path, tls: bool) -> None:
    result = tmp_path / "result.json"
    options: list[str] = []
    if tls:
        certificate = SelfSignedCertificate.create(tmp_path / "tls")
        options = ["--tls-cert", str(certificate.cert_file), "--tls-key", str(certificate.key_file)]
    code = instructions.main(
        [
            *options,
            "--inner",
            "--codec",
            "l16",
            "--mode",
            "full",
            "--engagements",
            "1",
            "--inner-seconds",
            "0.6",
            "--speed",
            "0.5",
            "--result",
            str(result),
        ]
    )
    assert code == 0
    outcome = json.loads(result.read_text(encoding="utf-8"))
    assert "error" not in outcome
    # Over TLS, the negotiated version and cipher are reported; over ws://, none.
    if tls:
        assert outcome["tls"].startswith("TLSv1."), outcome["tls"]
    else:
        assert outcome["tls"] == ""
    # 0.6 scenario seconds of 20 ms frames, every one received and recorded.
    assert outcome["sim"]["frames_sent"] == 30
    assert outcome["msgs"] == 30
    assert outcome["recorded_frames"] == 30
