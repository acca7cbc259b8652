"""The console under test: a recording made once by the real pipeline (signed webhooks, the
simulator over WebSockets, G.711 call with a media drop and transcripts), then per test a copy of
its state served by ``serve_web`` (hypercorn, trio) on loopback, spoken to with httpx.

Browser tests (tests/web/browser/) can use the same fixtures: ``recorded_state`` (session-wide)
and ``console`` (one served console, accounts ``alice`` officer, ``sam`` supervisor, ``audrey``
auditor, passwords in ``PASSWORDS``).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import pytest
import trio

from recorder.catalog._web import WebQueries
from recorder.catalog.base import AuditEvent
from recorder.config import Config
from recorder.officer.bundle.commands import SIGNING_KEY_NAME
from recorder.officer.bundle.signing import generate_signing_key
from recorder.officer.httprange import ByteRange
from recorder.officer.media import ConsoleMedia, TrackMedia
from recorder.service.components import Components, now_ms, open_components
from recorder.web.accounts import WebAccounts
from recorder.web.passwords import hash_password
from recorder.web.roles import Role
from recorder.web.serve import serve_web

PASSWORDS = {
    "alice": "alice-officer-pass-1",
    "sam": "sam-supervisor-pass-1",
    "audrey": "audrey-auditor-pass-1",
}
ROLES = {"alice": Role.OFFICER, "sam": Role.SUPERVISOR, "audrey": Role.AUDITOR}
#: The console under test locks a name after this many failed sign-ins (5 in production; each
#: try costs an argon2 verify).
LOGIN_FAILURES = 2
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass(frozen=True)
class RecordedState:
    root: Path
    recording_id: str
    gap_cause: str
    gap_start_s: float


def _config(root: Path) -> Config:
    from tests.service.test_service import short_config

    return short_config(root)


async def _record(config: Config) -> str:
    from tests.officer.test_export_bundle import zcc_steps
    from tests.service.test_service import record_calls, service, zcc_call

    async with service(config) as running:
        [eng] = await record_calls(
            running, config, zcc_call(config, seconds=4.0, steps=zcc_steps())
        )
        [row] = await running.components.catalog.search(stream_id=eng.scenario.rtms_stream_id)
        return row.recording_id


@pytest.fixture(scope="session")
def recorded_state(tmp_path_factory: pytest.TempPathFactory) -> RecordedState:
    """One real recording, made once per session (about 5 s), copied by each test."""
    root = tmp_path_factory.mktemp("web-recorded")
    config = _config(root)

    async def make() -> RecordedState:
        with trio.fail_after(90):
            rid = await _record(config)
            async with open_components(config) as c:
                detail = await c.catalog.show(rid)
        assert detail is not None
        assert detail.gaps, "the scenario's media drop left no gap"
        gap = detail.gaps[0]
        start = round((gap.start_ms - detail.recording.started_ms) / 1000, 3)
        return RecordedState(root, rid, gap.cause, start)

    state = trio.run(make)
    config.keys.key_dir.mkdir(parents=True, exist_ok=True)
    generate_signing_key(config.keys.key_dir / SIGNING_KEY_NAME)
    return state


class Clock:
    """The console's clock: real time plus an offset a test moves (session expiry)."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return now_ms() + self.offset_ms


@dataclass
class SpyMedia:
    """The real ``ConsoleMedia`` behind a spy at the ``MediaProvider`` seam: which decrypts
    were asked for, under which audit events."""

    real: ConsoleMedia = field(default_factory=ConsoleMedia)
    calls: list[tuple[str, str, str, AuditEvent]] = field(default_factory=list)

    async def open_track(
        self, c: Components, recording_id: str, track: str, audit: AuditEvent
    ) -> TrackMedia:
        self.calls.append(("open", recording_id, track, audit))
        return await self.real.open_track(c, recording_id, track, audit)

    async def peaks(
        self, c: Components, recording_id: str, track: str, audit: AuditEvent
    ) -> dict[str, object]:
        self.calls.append(("peaks", recording_id, track, audit))
        return await self.real.peaks(c, recording_id, track, audit)

    def parse_range(self, header: str | None, length: int) -> list[ByteRange] | None:
        return self.real.parse_range(header, length)

    async def aclose(self) -> None:
        await self.real.aclose()


@dataclass
class Console:
    base: str
    c: Components
    clock: Clock
    accounts: WebAccounts
    media: SpyMedia
    state: RecordedState

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base, follow_redirects=False, timeout=30)

    @asynccontextmanager
    async def session(self, user: str) -> AsyncIterator[httpx.AsyncClient]:
        """An httpx client signed in as ``user``."""
        async with self.client() as client:
            await self.login(user, client)
            yield client

    async def login(self, user: str, client: httpx.AsyncClient) -> None:
        form = await client.get("/login")
        assert form.status_code == 200, form.text
        answer = await client.post(
            "/login",
            data={"username": user, "password": PASSWORDS[user], "csrf": csrf_of(form.text)},
        )
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/search"


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match is not None, "no csrf field"
    return match[1]


def copy_state(state: RecordedState, target: Path) -> Config:
    shutil.copytree(state.root, target)
    return _config(target)


@pytest.fixture(scope="session")
def password_hashes() -> dict[str, str]:
    """argon2 hashes made once (each costs about half a second on a busy 2-core machine)."""
    return {user: hash_password(password) for user, password in PASSWORDS.items()}


@pytest.fixture
async def console(
    recorded_state: RecordedState, password_hashes: dict[str, str], tmp_path: Path
) -> AsyncIterator[Console]:
    config = copy_state(recorded_state, tmp_path / "state")
    clock = Clock()
    media = SpyMedia()
    async with open_components(config) as c, trio.open_nursery() as nursery:
        with trio.fail_after(30):
            accounts = WebAccounts(c.catalog)
            assert isinstance(c.catalog.sync, WebQueries)
            for user, role in ROLES.items():
                c.catalog.sync.web_add_account(
                    username=user, role=role.value, password_hash=password_hashes[user],
                    oidc_subject=None, actor="os:test", reason="test", now_ms=clock(),
                )  # fmt: skip
            port = await nursery.start(
                lambda task_status: serve_web(
                    c,
                    replace(config.web, bind="127.0.0.1:0"),
                    now_ms=clock,
                    media=media,
                    max_login_failures=LOGIN_FAILURES,
                    task_status=task_status,
                )
            )
        yield Console(f"http://127.0.0.1:{port}", c, clock, accounts, media, recorded_state)
        nursery.cancel_scope.cancel()
