"""The simulator's Python API: ``open_simulator(config)`` then ``await sim.start(scenario)``.

Example::

    async with open_simulator(SimulatorConfig(profile="doc-2026", webhook_url=None)) as sim:
        eng = await sim.start(Scenario(product=Product.MEETING, duration_s=5))
        target = eng.target          # URLs, ids, credentials: drive a client without webhooks
        await eng.finished.wait()

Rule: the simulator owns one nursery: the WebSocket server, every engagement and every webhook
retry run in it, and leaving the ``async with`` cancels them all.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from recorder.errors import ConfigError
from recorder.rtms.messages import AudioParams
from recorder.simulator._codecs import encode_program_track
from recorder.simulator.engagement import Engagement, EngagementOptions
from recorder.simulator.profiles import Profile, get_profile
from recorder.simulator.program import build_program
from recorder.simulator.scenario import Scenario, Step, validate
from recorder.simulator.server import RtmsServer
from recorder.simulator.webhooks import (
    DEFAULT_RETRY_DELAYS_S,
    DEFAULT_TIMEOUT_S,
    CallableWebhookSink,
    HttpWebhookSink,
    WebhookSender,
    WebhookSink,
)


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    #: ``doc-2026`` | ``legacy-2025`` | ``zoom-mock``, or a ``Profile`` (timers changed).
    profile: Profile | str = "doc-2026"
    #: Where webhooks go: a URL (signed POSTs), a callable ``(headers, body) -> status``, or None.
    webhook_url: str | None = None
    webhook_handler: Callable[[Mapping[str, str], bytes], Any] | None = None
    secret_token: str = "sim_secret_token"  # noqa: S105 (a simulator default, not a secret)
    #: ``payload.object`` instead of the official flat payload.
    webhook_nested: bool = False
    #: Zoom Phone webhooks as ``phone.call_rtms_*`` instead of ``phone.rtms_*`` (§16).
    phone_call_event_names: bool = False
    webhook_retry_delays_s: Sequence[float] = DEFAULT_RETRY_DELAYS_S
    webhook_timeout_s: float = DEFAULT_TIMEOUT_S
    #: Scenario seconds per trio second (2.0 runs a call twice as fast; timers scale too).
    speed: float = 1.0
    #: JSON in binary frames, as the official SDK sends it (§15).
    binary_frames: bool = False
    host: str = "127.0.0.1"
    port: int = 0
    #: Serve ``wss://`` URLs with this server context (``recorder.testing.tls`` makes one for
    #: loopback); None serves ``ws://``.
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)
    handshake_timeout_s: float = 10.0
    #: Encode audio for a media socket in a worker thread (keeps other engagements smooth).
    #: Tests on a ``MockClock`` set False: waiting on a thread lets the mock clock jump ahead.
    encode_in_thread: bool = True
    #: Wake each engagement's media pump once per this many 20 ms frames: 1 paces every frame
    #: exactly; benchmarks with hundreds of engagements use 5 (frames up to 80 ms late, never
    #: early) to halve the simulator's CPU per packet.
    pace_batch_frames: int = 1
    #: Called with each scripted step as it runs.
    on_step: Callable[[Scenario, Step], None] | None = None
    #: Unix seconds for ``x-zm-request-timestamp`` (kept real under a MockClock).
    wall_clock: Callable[[], float] = field(default=time.time)


class Simulator:
    def __init__(
        self,
        *,
        config: SimulatorConfig,
        profile: Profile,
        server: RtmsServer,
        sender: WebhookSender,
        nursery: trio.Nursery,
    ) -> None:
        self.config = config
        self.profile = profile
        self._server = server
        self._sender = sender
        self._nursery = nursery
        self.engagements: list[Engagement] = []

    @property
    def base_url(self) -> str:
        return self._server.base_url

    async def start(self, scenario: Scenario) -> Engagement:
        """Start one engagement: ``*.rtms_started`` goes out, sockets open, steps run."""
        resolved = validate(scenario.resolved())
        # Milliseconds of numpy work (the fixtures are cached), and no thread hop: a thread wait
        # lets a MockClock jump to the next deadline.
        program = build_program(resolved)
        engagement = Engagement(
            resolved,
            program,
            profile=self.profile,
            base_url=self._server.base_url,
            sender=self._sender,
            webhook_nursery=self._nursery,
            options=EngagementOptions(
                speed=self.config.speed,
                binary_frames=self.config.binary_frames,
                webhook_nested=self.config.webhook_nested,
                phone_call_event_names=self.config.phone_call_event_names,
                handshake_timeout_s=self.config.handshake_timeout_s,
                encode_in_thread=self.config.encode_in_thread,
                on_step=self.config.on_step,
                pace_batch_frames=self.config.pace_batch_frames,
            ),
        )
        self._server.register(engagement)
        self.engagements.append(engagement)
        await self._nursery.start(self._run, engagement)
        return engagement

    async def _run(
        self,
        engagement: Engagement,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            await engagement.run(task_status=task_status)
        finally:
            # A finished engagement's URLs answer 404 like any unknown path; the routing table
            # stays as small as the number of live engagements.
            self._server.unregister(engagement)

    async def warm_audio(self, scenario: Scenario, formats: Sequence[AudioParams]) -> None:
        """Encode the scenario's tracks in ``formats`` ahead of time (results are cached).

        A media handshake otherwise encodes on demand, which delays its msg 4 by up to a few
        hundred milliseconds for Opus; benchmarks and short tests warm up first.
        """
        program = build_program(validate(scenario.resolved()))
        for params in formats:
            for track in program.tracks:
                if self.config.encode_in_thread:
                    await trio.to_thread.run_sync(encode_program_track, track, params)
                else:
                    encode_program_track(track, params)

    async def send_webhook(
        self, event: str, payload: Mapping[str, Any], *, event_ts: int | None = None
    ) -> int | None:
        """Send any signed webhook once (``rtms.concurrency_near_limit``, out-of-order tests...).

        Returns the HTTP status, or None when delivery failed.
        """
        timestamp = int(self.config.wall_clock() * 1000) if event_ts is None else event_ts
        body = self._sender.body_for(event, timestamp, payload)
        statuses: list[int | None] = []
        await self._sender.deliver(
            event, timestamp, body, lambda d: statuses.append(d.http_status), retry=False
        )
        return statuses[0] if statuses else None

    async def validate_endpoint(self) -> None:
        """``endpoint.url_validation`` against the webhook target; ``WebhookError`` if wrong."""
        await self._sender.validate_endpoint()


@asynccontextmanager
async def open_simulator(config: SimulatorConfig | None = None) -> AsyncIterator[Simulator]:
    """Run a simulator for the duration of the block (server on ``config.host``, port 0)."""
    config = config or SimulatorConfig()
    profile = config.profile if isinstance(config.profile, Profile) else get_profile(config.profile)
    if config.speed <= 0:
        raise ConfigError("simulator speed must be positive")
    async with httpx.AsyncClient() as client, trio.open_nursery() as nursery:
        sink: WebhookSink | None = None
        if config.webhook_handler is not None:
            sink = CallableWebhookSink(config.webhook_handler)
        elif config.webhook_url is not None:
            sink = HttpWebhookSink(
                config.webhook_url, client=client, timeout_s=config.webhook_timeout_s
            )
        sender = WebhookSender(
            sink=sink,
            secret_token=config.secret_token,
            retry_delays_s=tuple(d / config.speed for d in config.webhook_retry_delays_s),
            timeout_s=config.webhook_timeout_s,
            wall_clock=config.wall_clock,
        )
        server = RtmsServer(
            host=config.host,
            port=config.port,
            binary_frames=config.binary_frames,
            ssl_context=config.ssl_context,
        )
        await nursery.start(server.run)
        simulator = Simulator(
            config=config, profile=profile, server=server, sender=sender, nursery=nursery
        )
        try:
            yield simulator
        finally:
            nursery.cancel_scope.cancel()
