"""``recorder simulate``: run scenario files against a webhook URL and say what happens.

Rule: this module prints ids, URLs, counts and outcomes, never secrets, signatures or payloads.
The lead's CLI (``recorder.cli``) parses arguments and calls ``run_simulate``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from recorder.errors import ConfigError, RecorderError
from recorder.simulator.engagement import Engagement
from recorder.simulator.scenario import Scenario, Step, load_scenario
from recorder.simulator.simulator import Simulator, SimulatorConfig, open_simulator

logger = logging.getLogger(__name__)


def _summary(eng: Engagement) -> str:
    s = eng.stats
    tracks = ", ".join(
        f"{name} {t.packets} pkts ({t.replayed} replayed)" for name, t in sorted(s.tracks.items())
    )
    hooks = ", ".join(
        f"{w.event.rsplit('.', 1)[-1]}#{w.attempt}={w.http_status}" for w in s.webhooks
    )
    return (
        f"{eng.scenario.name}: stopped reason={s.stop_reason} "
        f"signaling accepted={s.signaling_accepted} max-open={s.signaling_max_open} "
        f"rejected={sum(s.rejected.values())}; media accepted={s.media_accepted}; "
        f"keep-alives sent={s.keepalives_sent} answered={s.keepalives_answered} "
        f"missed={s.keepalives_missed}; interruptions={s.interruptions} "
        f"failovers={s.failovers} reconnects={s.reconnects}; {tracks or 'no audio sent'}; "
        f"webhooks: {hooks or 'none'}"
    )


async def run_simulate(
    scenario_paths: list[Path],
    *,
    webhook_url: str,
    secret_token: str,
    profile: str,
    speed: float = 1.0,
    print_fn: Callable[[str], None] = print,
    client_id: str | None = None,
    client_secret: str | None = None,
    validate_endpoint: bool = False,
    zoom_api_port: int | None = None,
    zoom_account_id: str = "sim_account",
) -> int:
    """Run every scenario concurrently against ``webhook_url``; return an exit code.

    Args:
        scenario_paths: ``.toml`` / ``.json`` scenario files.
        webhook_url: where the signed ``*.rtms_*`` webhooks go (the recorder's ingress).
        secret_token: the webhook secret token the receiver verifies with.
        profile: ``doc-2026``, ``legacy-2025`` or ``zoom-mock``.
        speed: scenario seconds per real second.
        print_fn: where progress lines go.
        client_id, client_secret: override the scenarios' credentials, so that the simulator
            expects the handshake signature the recorder computes with its own credentials.
        validate_endpoint: send ``endpoint.url_validation`` first and check the answer.
        zoom_api_port: also serve the simulated Zoom REST API (OAuth and ``rtms_app/status``,
            ``recorder.simulator.rest``) on this loopback port (0: any free port), and make the
            scenarios live instances that start when RTMS is started through it
            (``recorder rtms start``) instead of at once. Its OAuth credentials are
            ``client_id`` / ``client_secret`` and ``zoom_account_id``.

    Returns:
        0 when every engagement ran to its end and every ``rtms_started`` got a 2xx; 1 when a
        webhook was never accepted; a ``RecorderError`` exit code on bad input.
    """
    try:
        scenarios: list[Scenario] = [load_scenario(path) for path in scenario_paths]
    except RecorderError as exc:
        print_fn(f"error: {exc}")
        return exc.exit_code
    if client_id is not None or client_secret is not None:
        scenarios = [
            replace(
                s,
                client_id=client_id or s.client_id,
                client_secret=client_secret or s.client_secret,
            )
            for s in scenarios
        ]

    def announce(scenario: Scenario, step: Step) -> None:
        args = " ".join(f"{k}={v}" for k, v in sorted(step.args.items()) if k != "text")
        print_fn(f"{scenario.name}: t={step.at_s:g}s {step.action.value} {args}".rstrip())

    config = SimulatorConfig(
        profile=profile,
        webhook_url=webhook_url,
        secret_token=secret_token,
        speed=speed,
        on_step=announce,
    )
    try:
        async with open_simulator(config) as sim:
            print_fn(f"simulator: profile {sim.profile.name}, RTMS endpoints at {sim.base_url}")
            if validate_endpoint:
                await sim.validate_endpoint()
                print_fn(f"endpoint.url_validation: {webhook_url} answered correctly")
            engagements: list[Engagement] = []
            if zoom_api_port is not None:
                engagements = await _serve_zoom_api(
                    sim,
                    scenarios,
                    port=zoom_api_port,
                    account_id=zoom_account_id,
                    client_id=client_id,
                    client_secret=client_secret,
                    print_fn=print_fn,
                )
            for scenario in scenarios if zoom_api_port is None else ():
                eng = await sim.start(scenario)
                engagements.append(eng)
                s = eng.scenario
                print_fn(
                    f"started {s.name}: {s.product.value} {s.product.id_key}={s.instance_id} "
                    f"rtms_stream_id={s.rtms_stream_id} duration={s.duration_s:g}s "
                    f"steps={len(s.steps)} server_urls={eng.server_urls}"
                )
            for eng in engagements:
                await eng.finished.wait()
                print_fn(_summary(eng))
    except RecorderError as exc:
        print_fn(f"error: {exc}")
        return exc.exit_code
    failed = [
        eng.scenario.name
        for eng in engagements
        if not any(
            w.event.endswith("rtms_started")
            and w.http_status is not None
            and 200 <= w.http_status < 300
            for w in eng.stats.webhooks
        )
    ]
    if failed:
        print_fn(f"webhook receiver never accepted rtms_started for: {', '.join(failed)}")
        return 1
    return 0


async def _serve_zoom_api(
    sim: Simulator,
    scenarios: list[Scenario],
    *,
    port: int,
    account_id: str,
    client_id: str | None,
    client_secret: str | None,
    print_fn: Callable[[str], None],
) -> list[Engagement]:
    """Serve the Zoom REST API until every scenario was started through it and has ended."""
    from recorder.simulator.rest import RestSettings, open_zoom_rest

    if not client_id or not client_secret:
        raise ConfigError(
            "--zoom-api-port needs ZOOM_CLIENT_ID and ZOOM_CLIENT_SECRET (the OAuth app)"
        )
    settings = RestSettings(
        account_id=account_id,
        client_id=client_id,
        client_secret=client_secret,
        rtms_client_id=client_id,
        port=port,
    )
    async with open_zoom_rest(sim, settings) as rest:
        print_fn(f"zoom api: {rest.base_url} (account {account_id})")
        live = [rest.add_live(scenario) for scenario in scenarios]
        for instance in live:
            s = instance.scenario
            print_fn(
                f"live {s.name}: {s.product.value} {s.product.id_key}={s.instance_id}; "
                f"start it with: recorder rtms start {s.product.value} {instance.rest_id}"
            )
        engagements = []
        for instance in live:
            await instance.started.wait()
            assert instance.engagement is not None
            await instance.engagement.finished.wait()
            engagements.append(instance.engagement)
        return engagements
