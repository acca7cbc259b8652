"""Helpers for the multi-process and failure tests: ``recorder serve`` as a real subprocess, a
webhook fan-out (Zoom delivering to every process of a fleet), configs and catalog look-ups.

Waiting on another *process* polls a condition with a short sleep inside the caller's
``fail_after``; nothing here waits on a race inside the test process.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import trio

from recorder.catalog.base import RecordingDetail, SegmentRow
from recorder.simulator.scenario import Product, Scenario
from recorder.simulator.simulator import SimulatorConfig

RECORDER = Path(sys.executable).with_name("recorder")
#: How often another process's state is looked at (catalog rows, /readyz).
POLL_S = 0.1

T = TypeVar("T")


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's pick, released at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class FleetSecrets:
    """Generated per test: the processes read them from the environment, never from the file."""

    client_id: str = field(default_factory=lambda: "fleet-" + secrets.token_hex(6))
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    secret_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    def environ(self) -> dict[str, str]:
        return {
            "ZOOM_CLIENT_ID": self.client_id,
            "ZOOM_CLIENT_SECRET": self.client_secret,
            "ZOOM_SECRET_TOKEN": self.secret_token,
        }


def _toml_string(value: str | Path) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def serve_config_text(
    *,
    state_dir: Path,
    port: int,
    key_dir: Path,
    store_dir: Path | None = None,
    s3_endpoint: str | None = None,
    s3_bucket: str | None = None,
    postgres_dsn: str | None = None,
    lease_ttl_s: float = 2.0,
    rejoin_interval_s: float = 0.3,
    segment_seconds: int = 2,
    checkpoint_interval_s: float = 0.25,
    drain_timeout_s: float = 5.0,
) -> str:
    """A ``recorder serve`` configuration for loopback RTMS with short leases and segments."""
    lines = [
        "[service]",
        f"listen_port = {port}",
        f"lease_ttl_s = {lease_ttl_s}",
        f"rejoin_interval_s = {rejoin_interval_s}",
        f"drain_timeout_s = {drain_timeout_s}",
        "readiness_check_timeout_s = 2.0",
        "[rtms]",
        'allowed_hosts = ["127.0.0.1"]',
        "allow_insecure_loopback = true",
        # Reconnects in a test must not wait Zoom's 3 s first backoff step.
        "backoff_initial_s = 0.2",
        "backoff_max_s = 1.0",
        "connect_timeout_s = 5.0",
        "[capture]",
        f"segment_seconds = {segment_seconds}",
        f"checkpoint_interval_s = {checkpoint_interval_s}",
        "[storage]",
        f"state_dir = {_toml_string(state_dir)}",
    ]
    if s3_endpoint is not None:
        assert s3_bucket is not None
        lines += [
            'store = "s3"',
            "[storage.s3]",
            f"bucket = {_toml_string(s3_bucket)}",
            f"endpoint_url = {_toml_string(s3_endpoint)}",
            'region = "us-east-1"',
            'object_lock_mode = "governance"',
            "retention_days = 1",
            "verify_tls = false",
        ]
    else:
        lines += ['store = "local"', f"local_store_path = {_toml_string(store_dir or 'store')}"]
    lines += ["[keys]", 'provider = "local"', f"key_dir = {_toml_string(key_dir)}"]
    if postgres_dsn is not None:
        lines += ["[catalog]", 'kind = "postgres"', f"postgres_dsn = {_toml_string(postgres_dsn)}"]
    lines += ["[logging]", 'level = "INFO"', 'format = "text"']
    return "\n".join(lines) + "\n"


class ServeProcess:
    """One ``recorder serve --config FILE`` subprocess; stderr goes to ``log_path``."""

    def __init__(
        self, name: str, config_path: Path, port: int, env: Mapping[str, str], log_path: Path
    ) -> None:
        self.name = name
        self.config_path = config_path
        self.port = port
        self.env = dict(env)
        self.log_path = log_path
        self.process: trio.Process | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}/webhook"

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await trio.lowlevel.open_process(
                [str(RECORDER), "serve", "--config", str(self.config_path)],
                env=self.env,
                stdin=None,
                stdout=log,
                stderr=log,
            )

    async def wait_ready(self, client: httpx.AsyncClient) -> None:
        """Poll /readyz until 200 (the process is another process: polling is the only way)."""
        while True:
            assert self.process is not None
            if self.process.returncode is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                response = await client.get(f"{self.base_url}/readyz", timeout=2.0)
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await trio.sleep(POLL_S)

    def kill(self) -> None:
        """SIGKILL: no drain, no lease release, partial segments left as they are on disk."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    async def wait(self) -> int:
        assert self.process is not None
        return await self.process.wait()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    async def aclose(self) -> None:
        if self.process is None:
            return
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
        with trio.CancelScope(shield=True):
            await self.process.wait()


@asynccontextmanager
async def serve_processes(*procs: ServeProcess) -> AsyncIterator[Sequence[ServeProcess]]:
    """Start the processes, wait until each is ready; kill whatever is left on the way out."""
    try:
        async with httpx.AsyncClient() as client:
            for proc in procs:
                await proc.start()
            for proc in procs:
                await proc.wait_ready(client)
        yield procs
    except BaseException:
        for proc in procs:
            print(f"----- {proc.name} log -----\n{proc.log_tail()}", file=sys.stderr)
        raise
    finally:
        for proc in procs:
            await proc.aclose()


class FanOut:
    """A simulator webhook handler that delivers each signed request to every target URL.

    Zoom sends each event to the one endpoint of the app; behind a load balancer (or with
    several event subscriptions) a fleet sees the same webhook in more than one process. The
    answer is the best status any target gave (a dead process must not make Zoom retry when
    a live one accepted), or 503 when none answered.
    """

    def __init__(self, urls: Sequence[str]) -> None:
        self.urls = list(urls)
        self.client = httpx.AsyncClient()
        #: (url, status or None) per attempt, for the test's post-mortem.
        self.deliveries: list[tuple[str, int | None]] = []

    async def __call__(self, headers: Mapping[str, str], body: bytes) -> int:
        statuses: list[int] = []

        async def one(url: str) -> None:
            try:
                response = await self.client.post(
                    url, content=body, headers=dict(headers), timeout=2.5
                )
            except httpx.HTTPError:
                self.deliveries.append((url, None))
                return
            self.deliveries.append((url, response.status_code))
            statuses.append(response.status_code)

        async with trio.open_nursery() as nursery:
            for url in list(self.urls):
                nursery.start_soon(one, url)
        ok = [s for s in statuses if 200 <= s < 300]
        return ok[0] if ok else (statuses[0] if statuses else 503)

    async def aclose(self) -> None:
        await self.client.aclose()


def fleet_simulator(
    fan: FanOut, secrets_: FleetSecrets, *, retry_delays_s: tuple[float, ...] = (0.5, 1.0, 2.0)
) -> SimulatorConfig:
    """A simulator whose signed webhooks go to every process of the fleet."""
    return SimulatorConfig(
        webhook_handler=fan,
        secret_token=secrets_.secret_token,
        webhook_retry_delays_s=retry_delays_s,
    )


async def poll(check: Callable[[], Awaitable[T | None]], interval_s: float = POLL_S) -> T:
    """Call ``check`` until it returns something other than None (another process's state)."""
    while True:
        result = await check()
        if result is not None:
            return result
        await trio.sleep(interval_s)


def meeting(secrets_: FleetSecrets, *, name: str, seconds: float, **changes: Any) -> Scenario:
    """A meeting with the mixed L16 track (the default [rtms] audio) for ``seconds``."""
    return Scenario(
        product=Product.MEETING,
        name=name,
        duration_s=seconds,
        client_id=secrets_.client_id,
        client_secret=secrets_.client_secret,
        media=("audio",),
        **changes,
    )


def track_seconds(detail: RecordingDetail, track: str) -> float:
    return sum(s.sample_count / s.sample_rate for s in detail.segments if s.track == track)


def segments_of(detail: RecordingDetail, track: str) -> list[SegmentRow]:
    return sorted(
        (s for s in detail.segments if s.track == track),
        key=lambda s: (s.start_ms, s.segment_index),
    )


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def subprocess_env(secrets_: FleetSecrets, *, owner: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # Secrets and owner come from the test; no systemd notify socket or credentials leak in.
        if not k.startswith(
            (
                "ZOOM_",
                "ZM_RTMS_",
                "RECORDER_",
                "CREDENTIALS_DIRECTORY",
                "NOTIFY_SOCKET",
                "WATCHDOG_",
            )
        )
    }
    env.update(secrets_.environ())
    env["RECORDER_OWNER"] = owner
    return env
