"""``recorder demo``: the whole path on the embedded default, with no account and no network.

It starts the built-in RTMS simulator and the recorder service in one process, lets the simulator
deliver signed webhooks to the service's real HTTP ingress, and records four concurrent
engagements over real WebSockets on loopback:

* a Contact Center call, agent and caller on two channels (G.711, as a PSTN leg carries it);
* a meeting recorded per speaker in Opus;
* a Contact Center G.711 call that loses its media socket and then fails over to a new server;
* a webinar in L16 that is paused and resumed.

While they run it prints progress; at the end it waits for every segment to be uploaded and
verified, then prints what an officer sees (recordings, tracks, gaps with causes, verification
status) and where the files are. Secrets are generated for the run and never printed.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Final

import trio

from recorder.config import (
    AudioChoice,
    AudioCodecName,
    Config,
    Secret,
    for_demo,
    load_config,
)
from recorder.errors import RecorderError
from recorder.officer.verify import verify_recording
from recorder.officer.views import describe
from recorder.rtms.webhook import Product
from recorder.service.app import RunningService, run_service
from recorder.simulator.scenario import Scenario, load_scenario
from recorder.simulator.simulator import SimulatorConfig, open_simulator
from recorder.spool.uploader import Backoff

logger = logging.getLogger(__name__)

DEMO_SCENARIOS: Final = (
    "zcc_call.toml",
    "meeting_per_speaker.toml",
    "g711_drop_failover.toml",
    "webinar.toml",
)
#: Short segments, so the demo shows rotation within a half-minute call.
DEMO_SEGMENT_SECONDS: Final = 10
PROGRESS_EVERY_S: Final = 3.0
UPLOAD_WAIT_S: Final = 60.0


def demo_config(state_dir: Path) -> Config:
    """The embedded default under ``state_dir``, with generated secrets and loopback RTMS."""
    base = load_config(None, {"XDG_STATE_HOME": str(state_dir)})
    root = state_dir / "rtms-recorder"
    storage = replace(
        base.storage,
        state_dir=root,
        spool_dir=root / "spool",
        local_store_path=root / "store",
    )
    rtms = replace(
        base.rtms,
        backoff_initial_s=0.5,
        backoff_max_s=4.0,
        audio_by_product={
            Product.CONTACT_CENTER: AudioChoice(codec=AudioCodecName.G711, sample_rate_hz=8000),
            Product.MEETING: AudioChoice(
                codec=AudioCodecName.OPUS, sample_rate_hz=48000, channels=2, per_speaker=True
            ),
        },
    )
    service = replace(base.service, listen_port=0, drain_timeout_s=10.0)
    capture = replace(base.capture, segment_seconds=DEMO_SEGMENT_SECONDS)
    secrets_ = replace(
        base.secrets,
        zoom_client_id=Secret("demo-" + secrets.token_hex(8)),
        zoom_client_secret=Secret(secrets.token_urlsafe(24)),
        zoom_secret_token=Secret(secrets.token_urlsafe(24)),
    )
    return for_demo(
        replace(
            base,
            storage=storage,
            rtms=rtms,
            service=service,
            capture=capture,
            secrets=secrets_,
            keys=replace(base.keys, key_dir=root / "keys"),
            catalog=replace(base.catalog, sqlite_path=root / "catalog.sqlite3"),
        )
    )


def demo_scenarios(client_id: str, client_secret: str) -> list[Scenario]:
    folder = resources.files("recorder.simulator") / "scenarios"
    scenarios = []
    for name in DEMO_SCENARIOS:
        with resources.as_file(folder / name) as path:
            scenario = load_scenario(Path(path))
        scenarios.append(replace(scenario, client_id=client_id, client_secret=client_secret))
    return scenarios


def _progress(service: RunningService) -> str:
    parts = []
    for eng in service.supervisor.history:
        gaps = sum(eng.status.gap_seconds.values())
        state = "ended" if eng.finished.is_set() else "recording"
        parts.append(
            f"{eng.spec.product.value}:{eng.status.segments_sealed} seg "
            f"{eng.status.seconds_captured:.0f}s gaps {gaps:.1f}s ({state})"
        )
    return " | ".join(parts) or "waiting for webhooks"


async def run_demo(state_dir: Path, *, print_fn: Callable[[str], None] = print) -> int:
    """Run the demo; returns 0 when every recording verified, 1 otherwise."""
    config = demo_config(state_dir)
    assert config.secrets.zoom_client_id is not None
    assert config.secrets.zoom_client_secret is not None
    assert config.secrets.zoom_secret_token is not None
    root = config.storage.state_dir
    print_fn(f"rtms-recorder demo: embedded default under {root}")
    print_fn("  catalog SQLite, local object store, local keys, RTMS simulator on 127.0.0.1")
    async with run_service(
        config,
        owner="demo",
        upload_backoff=Backoff(initial_s=0.2, max_s=2.0),
        rejoin_interval_s=2.0,
    ) as service:
        webhook_url = f"http://127.0.0.1:{service.port}{config.service.webhook_path}"
        print_fn(f"  recorder ingress {webhook_url} (signed webhooks only)")
        sim_config = SimulatorConfig(
            webhook_url=webhook_url,
            secret_token=config.secrets.zoom_secret_token.reveal(),
            webhook_retry_delays_s=(2.0, 4.0, 8.0),
        )
        async with open_simulator(sim_config) as sim:
            await sim.validate_endpoint()
            print_fn("  endpoint.url_validation answered correctly")
            scenarios = demo_scenarios(
                config.secrets.zoom_client_id.reveal(),
                config.secrets.zoom_client_secret.reveal(),
            )
            engagements = []
            for scenario in scenarios:
                eng = await sim.start(scenario)
                engagements.append(eng)
                steps = ", ".join(step.action for step in eng.scenario.steps) or "no faults"
                print_fn(
                    f"  started {eng.scenario.name} ({eng.scenario.product.value}, "
                    f"{eng.scenario.duration_s:g} s; {steps})"
                )
            async with trio.open_nursery() as nursery:

                async def report() -> None:
                    while True:
                        await trio.sleep(PROGRESS_EVERY_S)
                        print_fn(f"  .. {_progress(service)}")

                nursery.start_soon(report)
                for eng in engagements:
                    await eng.finished.wait()
                with trio.move_on_after(30):
                    for recorded in list(service.supervisor.history):
                        await recorded.finished.wait()
                nursery.cancel_scope.cancel()
        print_fn("  all engagements ended; waiting for uploads to be verified ...")
        with trio.move_on_after(UPLOAD_WAIT_S):
            await service.uploads_settled()
        return await _officer_view(service, root, print_fn)


async def _officer_view(
    service: RunningService, root: Path, print_fn: Callable[[str], None]
) -> int:
    c = service.components
    rows = await c.catalog.search(limit=50)
    print_fn("")
    print_fn(f"What an officer sees ({len(rows)} recordings):")
    all_ok = bool(rows)
    for row in rows:
        detail = await c.catalog.show(row.recording_id)
        if detail is None:
            continue
        try:
            verdict = await verify_recording(
                c, row.recording_id, actor="demo", reason="recorder demo self-check"
            )
        except RecorderError as exc:
            print_fn(f"  {row.recording_id}: verification failed: {exc}")
            all_ok = False
            continue
        all_ok = all_ok and verdict.ok
        print_fn("")
        for line in describe(detail, verdict):
            print_fn(line)
    pending = (await c.spool.stats()).pending_count
    print_fn("")
    print_fn("Where things are:")
    print_fn(f"  encrypted objects  {c.config.storage.local_store_path}")
    print_fn(f"  catalog            {c.config.catalog.sqlite_path}")
    print_fn(f"  keys (0600)        {c.config.keys.key_dir}")
    print_fn(f"  spool              {c.config.storage.spool_dir} ({pending} pending)")
    print_fn(f"  state              {root}")
    print_fn("")
    print_fn(
        "Every recording verified: decrypted from the store, every chunk authenticated, digests "
        "equal to the catalog's."
        if all_ok
        else "Some recordings did NOT verify: see above."
    )
    return 0 if all_ok and pending == 0 else 1
