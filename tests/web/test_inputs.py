"""Hostile input to the console's pure parts (hypothesis) and to the server (oversized bodies,
odd cookies and paths): refused with a clear answer, never a crash or an open redirect."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from recorder.web.auth import local_next
from recorder.web.errors import WebError
from recorder.web.pages import _search_args
from recorder.web.security import COOKIE_NAME, MAX_BODY_BYTES, csrf_ok, new_token
from tests.web.conftest import Console

pytestmark = pytest.mark.timeout(60)

_PREFIXES = ["/", "//", "/\\", "http://", "https://evil.example", "\\", "/%2f", "javascript:"]
_PREFIXES += [" /", "/\t/", "\x00", "/[", "//["]
_URLISH = st.one_of(
    st.text(max_size=60),
    st.builds(lambda a, b: a + b, st.sampled_from(_PREFIXES), st.text(max_size=30)),
)


@given(_URLISH)
@settings(max_examples=200, deadline=None)
def test_after_sign_in_the_browser_stays_on_this_site(target: str) -> None:
    got = local_next(target)
    parts = urlsplit(got)
    assert got.startswith("/")
    assert not got.startswith("//")
    assert not parts.scheme
    assert not parts.netloc
    assert "\\" not in got
    assert all(ord(ch) >= 32 for ch in got)


@given(st.text(max_size=80), st.text(max_size=80))
@settings(max_examples=100, deadline=None)
def test_csrf_comparison(expected: str, given_token: str) -> None:
    assert csrf_ok(expected, given_token) == (bool(given_token) and expected == given_token)


def test_csrf_tokens_are_long_and_fresh() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert min(len(t) for t in tokens) >= 43


def _request(pairs: list[tuple[str, str]]) -> Request:
    scope = {"type": "http", "method": "GET", "path": "/search", "headers": [],
             "query_string": urlencode(pairs).encode()}  # fmt: skip
    return Request(scope)


_NAMES = st.sampled_from(
    ["since", "until", "tz", "product", "id", "participant", "agent", "caller", "queue", "status",
     "gap_cause", "policy", "after", "limit", "incomplete", "has_gaps", "on_hold", "text", "x"]
)  # fmt: skip


@given(st.lists(st.tuples(_NAMES, st.text(max_size=250)), max_size=8))
@settings(max_examples=120, deadline=None)
def test_search_filters_parse_or_are_refused_by_name(pairs: list[tuple[str, str]]) -> None:
    from recorder.errors import RecorderError
    from recorder.officer.search import query_from
    from recorder.officer.when import zone

    refused: RecorderError | None = None
    try:
        args = _search_args(_request(pairs))
        query_from(args, zone(args.tz))
    except RecorderError as exc:  # a filter, time or zone refused, with a message
        refused = exc
    if refused is not None:
        assert str(refused)
        assert not isinstance(refused, WebError) or refused.status == 400


async def test_oversized_bodies_and_odd_requests(console: Console) -> None:
    with trio.fail_after(30):
        async with console.client() as client:
            form = await client.get("/login")
            big = {"username": "alice", "password": "x" * (MAX_BODY_BYTES + 1)}
            answer = await client.post("/login", data=big)
            assert answer.status_code == 413
            # Streamed without a length: refused once past the limit.

            async def chunks():  # type: ignore[no-untyped-def]
                for _ in range(MAX_BODY_BYTES // 1024 + 2):
                    yield b"a=" + b"b" * 1022

            answer = await client.post(
                "/login",
                content=chunks(),
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
            assert answer.status_code == 413
            assert form.status_code == 200
            for cookie in (b"", b"x" * 4000, "\u00e9\u00e9".encode(), b'"a;b"', b"=;=;"):
                answer = await client.get(
                    "/search", headers=[(b"cookie", COOKIE_NAME.encode() + b"=" + cookie)]
                )
                assert answer.status_code == 303
            for path in ("/recordings/..%2f..%2fetc", "/recordings/%00", "/static/../web/app.py"):
                answer = await client.get(path)
                assert answer.status_code in (303, 404), path


def test_failure_throttle_locks_a_key_and_forgets_it() -> None:
    from recorder.web.throttle import FailureThrottle

    t = FailureThrottle(max_failures=3, window_ms=1000, lock_ms=5000)
    for at in (0, 10, 20):
        assert t.retry_after_ms("k", at) == 0
        t.failed("k", at)
    assert t.retry_after_ms("k", 21) == 4999
    assert t.retry_after_ms("other", 21) == 0
    assert t.retry_after_ms("k", 5020) == 0
    # Failures spread wider than the window never lock.
    for at in (10_000, 11_500, 13_000, 14_500):
        t.failed("slow", at)
        assert t.retry_after_ms("slow", at) == 0
    t.failed("k", 6000)
    t.succeeded("k")
    assert t.retry_after_ms("k", 6001) == 0


def test_a_finding_is_shown_by_its_fields() -> None:
    import dataclasses
    import enum

    from recorder.officer.when import zone
    from recorder.web.pages import _finding_view

    class Kind(enum.StrEnum):
        MISSING = "missing"

    @dataclasses.dataclass(frozen=True)
    class Row:
        kind: Kind
        instance_id: str
        recording_id: str | None
        first_found_ms: int
        resolved_ms: int | None

    shown = _finding_view(Row(Kind.MISSING, "m-1", None, 1_767_225_600_000, None), zone(None))
    assert shown["kind"] == "missing"
    assert shown["first_found"] == "2026-01-01 00:00:00 UTC"
    assert shown["resolved"] == "-"
    assert shown["recording_id"] is None


def test_stale_export_directories_of_dead_consoles_are_removed(tmp_path: Path) -> None:
    import subprocess
    import sys

    from recorder.web.actions import EXPORT_PREFIX, OWNER_FILE, remove_stale_exports

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = tmp_path / f"{EXPORT_PREFIX}stale"
    (stale / "bundle").mkdir(parents=True)
    (stale / OWNER_FILE).write_text(dead.stdout.strip())
    live = tmp_path / f"{EXPORT_PREFIX}live"
    live.mkdir()
    (live / OWNER_FILE).write_text(str(os.getppid()))
    unowned = tmp_path / f"{EXPORT_PREFIX}starting"
    unowned.mkdir()
    assert remove_stale_exports(tmp_path) == [stale]
    assert not stale.exists()
    assert live.exists()
    assert unowned.exists()
