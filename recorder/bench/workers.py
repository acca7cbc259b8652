"""``recorder bench workers``: the real ``recorder serve --workers N`` process tree under load.

Run: ``recorder bench workers scale|burst|memory [options]`` (``--help`` per mode).

Every mode starts the real service (``recorder serve --workers N``: the parent, its workers,
the catalog's work queue, signed webhooks over HTTP, loopback RTMS WebSockets, encrypted
segments, local store; SQLite unless ``--postgres DSN``) and the RTMS simulator in its own
process. Nothing is mocked; nothing here is used by tests.

* ``scale``: the same load (K paced L16 16 kHz engagements) recorded with 1 and then 2 workers.
  Per N: worker CPU per audio message over a steady window (every engagement streaming),
  each worker's share of the CPU, frames lost (sent minus recorded in the catalog), the
  simulator's keep-alive answer latency (the recorder's loop lag), and the scaling factor
  ``N x (µs/msg with 1) / (µs/msg with N)``: what N workers record on N free cores relative to
  one, if per-message cost is what limits them. On a 2-core machine that also runs the
  simulator, N workers cannot get N whole cores; ``recorded`` and ``lost`` say what they did.
* ``burst``: the 9 a.m. burst: ``--engagements`` (200) ``rtms_started`` spread over
  ``--within`` (5 s). Per engagement: webhook sent to first audio frame sent on the recorder's
  media socket (the recorder has verified the webhook, committed the stream row, a worker has
  claimed it, connected, handshaken and subscribed), p50 / p99 / max; target < 1 s.
* ``memory``: K engagements of one long call each, time-accelerated (``--speed``: scenario
  seconds per real second), with the workers' RSS per engagement printed every ``--every``
  seconds of call time; budget 2 MiB, flat.

``measure_workers(...)`` is the function ``bench fullpath --workers N`` may call for the same
figures.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

RSS_BUDGET_KIB: Final = 2048
FRAME_MS: Final = 20
#: L16 16 kHz mono: samples per 20 ms frame.
FRAME_SAMPLES: Final = 320
CLIENT_ID: Final = "bench-client"
CLIENT_SECRET: Final = "bench-client-secret"  # noqa: S105 (a bench's own throwaway value)
SECRET_TOKEN: Final = "bench-secret-token"  # noqa: S105
TICK: Final = os.sysconf("SC_CLK_TCK")
#: ``recorder.service.start_trace.ENV`` (not imported: the bench imports the service lazily).
START_TRACE_ENV: Final = "RECORDER_START_TRACE"
#: Simulator milestones of one start, by what ``EngagementStats`` shows first (the stage names
#: of the burst breakdown).
SIM_MILESTONES: Final = ("acked", "signaling", "media", "first_frame")


@dataclass(frozen=True, slots=True)
class LoadSpec:
    engagements: int
    seconds: float
    ramp_s: float
    speed: float = 1.0
    #: Seconds of call time (at ``speed``) between two ``mark`` samples (memory mode); 0: none.
    #: A mark reports the audio actually sent per call so far (a loaded host falls behind).
    every_s: float = 0.0


@dataclass(slots=True)
class TreeResult:
    workers: int
    engagements: int
    window_s: float = 0.0
    cpu_s: list[float] = field(default_factory=list)
    messages: int = 0
    frames_sent: int = 0
    frames_recorded: int = 0
    latencies_s: list[float] = field(default_factory=list)
    #: Webhook sent to the recorder's signaling socket accepted by the simulator.
    connects_s: list[float] = field(default_factory=list)
    keepalive_s: list[float] = field(default_factory=list)
    rss_marks: list[tuple[float, float]] = field(default_factory=list)
    spread: dict[str, int] = field(default_factory=dict)
    #: Stream id -> start stage -> wall time (burst: the simulator's milestones and the
    #: service's ``recorder.service.start_trace``).
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    #: CPU seconds from the first webhook until every engagement streamed: the service tree
    #: (parent and workers), the simulator; and the host's busy share of its cores meanwhile.
    burst_cpu_s: float = 0.0
    burst_sim_cpu_s: float = 0.0
    burst_wall_s: float = 0.0
    burst_host_busy: float = float("nan")

    @property
    def us_per_msg(self) -> float:
        return sum(self.cpu_s) * 1e6 / self.messages if self.messages else float("nan")


# --- the service tree --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _config_text(state: Path, port: int, postgres: str | None) -> str:
    lines = [
        "[service]",
        f"listen_port = {port}",
        "[rtms]",
        'allowed_hosts = ["127.0.0.1"]',
        "allow_insecure_loopback = true",
        "[storage]",
        f'state_dir = "{state}"',
        'store = "local"',
        "[keys]",
        'provider = "local"',
        "[workers]",
        "max_engagements = 1000",
        "[logging]",
        'level = "WARNING"',
    ]
    if postgres:
        lines += ["[catalog]", 'kind = "postgres"', f'postgres_dsn = "{postgres}"']
    return "\n".join(lines) + "\n"


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _proc_ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _host_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of every core of the host so far (``/proc/stat``)."""
    with open("/proc/stat", encoding="ascii") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def _proc_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _worker_pids(state: Path, count: int) -> list[int]:
    from recorder.service.instance import INSTANCE_LOCK_FILE
    from recorder.service.workers import worker_state_dir

    pids = []
    for index in range(count):
        text = (worker_state_dir(state, index) / INSTANCE_LOCK_FILE).read_text().strip()
        pids.append(int(text))
    return pids


@contextlib.contextmanager
def _fresh_schema(postgres: str | None) -> Iterator[str | None]:
    """A new schema on ``postgres`` for one run (dropped after), so runs never share streams."""
    if postgres is None:
        yield None
        return
    import secrets

    import psycopg

    schema = f"bench_{secrets.token_hex(6)}"
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        separator = "&" if "?" in postgres else "?"
        yield f"{postgres}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(postgres, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@contextlib.contextmanager
def service_tree(
    workers: int, *, postgres: str | None = None, trace: Path | None = None
) -> Iterator[tuple[str, Path, list[int], str | None]]:
    """``recorder serve --workers N`` in a fresh state directory (and PostgreSQL schema):
    (webhook URL, state, worker pids, the run's DSN). ``trace``: where the service writes its
    start trace (``recorder.service.start_trace``)."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp,
        _fresh_schema(postgres) as dsn,
    ):
        postgres = dsn
        state = Path(tmp) / "state"
        port = _free_port()
        config = Path(tmp) / "serve.toml"
        config.write_text(_config_text(state, port, postgres))
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("ZOOM_", "NOTIFY_"))},
            "ZOOM_CLIENT_ID": CLIENT_ID,
            "ZOOM_CLIENT_SECRET": CLIENT_SECRET,
            "ZOOM_SECRET_TOKEN": SECRET_TOKEN,
        }
        if trace is not None:
            env[START_TRACE_ENV] = str(trace)
        log = (Path(tmp) / "serve.log").open("wb")
        parent = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [
                sys.executable,
                "-m",
                "recorder",
                "serve",
                "--config",
                str(config),
                "--workers",
                str(workers),
            ],
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 60
            pids: list[int] = []
            while time.monotonic() < deadline:
                if parent.poll() is not None:
                    raise RuntimeError(f"service exited: {(Path(tmp) / 'serve.log').read_text()}")
                try:
                    pids = _worker_pids(state, workers)
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        pass
                    break
                except (OSError, ValueError):
                    time.sleep(0.2)
            else:
                raise RuntimeError("service did not start within 60 s")
            time.sleep(1.0)  # every worker's claim loop is up and registered
            yield f"http://127.0.0.1:{port}/webhook", state, pids, postgres
        finally:
            parent.send_signal(signal.SIGTERM)
            try:
                parent.wait(timeout=60)
            except subprocess.TimeoutExpired:
                parent.kill()
                parent.wait()
            log.close()


# --- the simulator process ---------------------------------------------------------------------


def simulator_main(conn: Connection, url: str, spec: dict[str, Any]) -> None:
    import trio

    try:
        trio.run(_simulate, conn, url, LoadSpec(**spec))
    finally:
        conn.close()


async def _simulate(conn: Connection, url: str, spec: LoadSpec) -> None:
    import trio

    from recorder.simulator import Product, Scenario, SimulatorConfig, open_simulator

    base = Scenario(
        product=Product.MEETING,
        duration_s=spec.seconds,
        media=("audio",),
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    config = SimulatorConfig(
        webhook_url=url, secret_token=SECRET_TOKEN, speed=spec.speed, encode_in_thread=True
    )
    latencies: list[float] = []
    connects: list[float] = []
    milestones: dict[str, dict[str, float]] = {}
    all_streaming = trio.Event()
    async with open_simulator(config) as sim, trio.open_nursery() as nursery:
        start = trio.current_time()
        engagements = []

        async def first_frame(engagement: Any, sent: float, sent_wall: float) -> None:
            got = milestones.setdefault(engagement.scenario.rtms_stream_id, {"sent": sent_wall})
            checks: dict[str, Callable[[Any], bool]] = {
                "acked": lambda s: bool(s.webhooks),
                "signaling": lambda s: s.signaling_accepted > 0,
                "media": lambda s: s.ready_acks > 0,
                "first_frame": lambda s: s.frames_sent > 0,
            }

            def note(stats: Any) -> bool:
                now = time.time()
                for name, reached in checks.items():
                    if name not in got and reached(stats):
                        got[name] = now
                return len(got) > len(checks)

            async with trio.open_nursery() as watch:
                watch.start_soon(engagement.wait_for, note)
                await engagement.connected.wait()
                connects.append(trio.current_time() - sent)
                # Not ``engagement.streaming``: since the video merge the simulator sets it only
                # for engagements that send video.
                await engagement.wait_for(lambda stats: stats.frames_sent > 0)
                latencies.append(trio.current_time() - sent)
            if len(latencies) == spec.engagements:
                all_streaming.set()

        for index in range(spec.engagements):
            await trio.sleep_until(start + spec.ramp_s * index / spec.engagements)
            sent, sent_wall = trio.current_time(), time.time()
            engagement = await sim.start(base)
            engagements.append(engagement)
            nursery.start_soon(first_frame, engagement, sent, sent_wall)

        def frames() -> int:
            return sum(e.stats.frames_sent for e in engagements)

        with trio.move_on_after(spec.seconds / spec.speed + 30):
            await all_streaming.wait()
        conn.send(
            (
                "streaming",
                frames(),
                time.monotonic(),
                [e.scenario.rtms_stream_id for e in engagements],
            )
        )
        call_start = trio.current_time()
        if spec.every_s > 0:
            mark = call_start
            while any(not e.finished.is_set() for e in engagements):
                mark += spec.every_s / spec.speed
                await trio.sleep_until(mark)
                conn.send(("mark", frames() * FRAME_MS / 1000 / spec.engagements))
        else:
            # The steady window: from all streaming until the first call may end.
            end = start + (spec.seconds - 1.0) / spec.speed
            await trio.sleep_until(max(end, trio.current_time()))
            conn.send(("window_end", frames(), time.monotonic()))
        with trio.move_on_after(spec.seconds / spec.speed + 60):
            for e in engagements:
                await e.finished.wait()
        conn.send(
            (
                "done",
                {
                    "frames_sent": frames(),
                    "latencies_s": latencies,
                    "connects_s": connects,
                    "keepalive_s": [x for e in engagements for x in e.stats.keepalive_latencies_s],
                    "ids": [e.scenario.rtms_stream_id for e in engagements],
                    "milestones": milestones,
                },
            )
        )
        nursery.cancel_scope.cancel()


# --- measuring ---------------------------------------------------------------------------------


def _recorded_frames(state: Path, postgres: str | None, ids: Sequence[str]) -> int:
    """Frames the catalog holds for ``ids`` once their recordings ended (samples minus gaps)."""
    from recorder.catalog.base import RecordingStatus
    from recorder.catalog.connect import open_catalog

    url = postgres or f"sqlite:///{state / 'catalog.sqlite3'}"
    catalog = open_catalog(url, now_ms=int(time.time() * 1000))
    try:
        deadline = time.monotonic() + 60
        while True:
            rows = [r for s in ids for r in catalog.search(stream_id=s)]
            if len(rows) == len(ids) and all(r.status is not RecordingStatus.ACTIVE for r in rows):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        samples = 0
        for row in rows:
            detail = catalog.show(row.recording_id)
            if detail is None:
                continue
            samples += sum(s.sample_count for s in detail.segments)
            samples -= sum(
                g.end_sample - g.start_sample
                for g in detail.gaps
                if g.start_sample is not None and g.end_sample is not None
            )
        return samples // FRAME_SAMPLES
    finally:
        catalog.close()


def _owners(state: Path, postgres: str | None, ids: Sequence[str]) -> dict[str, int]:
    """How many of ``ids`` each lease owner holds right now."""
    from recorder.catalog.connect import open_catalog

    url = postgres or f"sqlite:///{state / 'catalog.sqlite3'}"
    catalog = open_catalog(url, now_ms=int(time.time() * 1000))
    try:
        spread: dict[str, int] = {}
        for stream_id in ids:
            stream = catalog.get_stream(stream_id)
            owner = (stream.lease_owner if stream else None) or "nobody"
            spread[owner] = spread.get(owner, 0) + 1
        return spread
    finally:
        catalog.close()


def measure_workers(
    workers: int, load: LoadSpec, *, postgres: str | None = None, trace: bool = False
) -> TreeResult:
    """Record ``load`` with ``recorder serve --workers N``; the figures of one run.

    ``trace``: collect the per-stage start times (``TreeResult.stages``) and the burst's CPU.
    """
    result = TreeResult(workers, load.engagements)
    ctx = multiprocessing.get_context("spawn")
    with (
        tempfile.TemporaryDirectory(prefix="bench-trace-") as trace_dir,
        service_tree(workers, postgres=postgres, trace=Path(trace_dir) if trace else None) as (
            url,
            state,
            pids,
            postgres,
        ),
    ):
        rss0 = sum(_proc_rss_kib(p) for p in pids)
        tree = [_proc_ppid(pids[0]), *pids]
        here, there = ctx.Pipe()
        sim = ctx.Process(target=simulator_main, args=(there, url, dataclasses.asdict(load)))
        burst0 = time.monotonic(), sum(_proc_cpu_s(p) for p in tree), _host_ticks()
        sim.start()
        assert sim.pid is not None
        there.close()
        cpu0: list[float] = []
        frames0 = 0
        t0 = 0.0
        done: dict[str, Any] = {}
        while not done:
            kind, *rest = here.recv()
            if kind == "streaming":
                frames0, t0, ids = rest
                cpu0 = [_proc_cpu_s(p) for p in pids]
                busy, total = (b - a for a, b in zip(burst0[2], _host_ticks(), strict=True))
                result.burst_wall_s = time.monotonic() - burst0[0]
                result.burst_cpu_s = sum(_proc_cpu_s(p) for p in tree) - burst0[1]
                result.burst_sim_cpu_s = _proc_cpu_s(sim.pid)
                result.burst_host_busy = busy / total if total else float("nan")
                result.spread = _owners(state, postgres, ids)
            elif kind == "window_end":
                frames1, t1 = rest
                result.cpu_s = [_proc_cpu_s(p) - c for p, c in zip(pids, cpu0, strict=True)]
                result.messages = frames1 - frames0
                result.window_s = t1 - t0
            elif kind == "mark":
                rss = sum(_proc_rss_kib(p) for p in pids)
                result.rss_marks.append((rest[0], (rss - rss0) / load.engagements))
            elif kind == "done":
                done = rest[0]
        sim.join(timeout=30)
        result.frames_sent = done["frames_sent"]
        result.latencies_s = sorted(done["latencies_s"])
        result.connects_s = sorted(done["connects_s"])
        result.keepalive_s = sorted(done["keepalive_s"])
        result.frames_recorded = _recorded_frames(state, postgres, done["ids"])
        if trace:
            from recorder.service import start_trace

            result.stages = start_trace.read(Path(trace_dir))
            for stream_id, seen in done["milestones"].items():
                result.stages.setdefault(stream_id, {}).update(seen)
    return result


def _pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


# --- the modes ---------------------------------------------------------------------------------


def _scale(args: argparse.Namespace) -> int:
    """The same total load with 1 and N workers, then N times the load with N workers.

    Per-message cost falls as a process's load rises (one loop wake-up serves more sockets),
    so the same total load split over N workers costs more per message in each: the
    same-load factor understates what N workers carry. The per-worker row (each worker as
    loaded as the single one was) is the one that says whether N workers record N times.
    """
    base = LoadSpec(args.engagements, args.seconds, args.ramp)
    print(
        f"bench workers scale: {base.engagements} L16 16 kHz engagements per run (x N for the "
        f"'per worker' rows), {base.seconds:.0f} s, ramp {base.ramp_s:.0f} s, "
        f"{os.cpu_count()} cores shared with the simulator, catalog "
        f"{'postgres' if args.postgres else 'sqlite'}"
    )
    print(
        "workers  load         engagements  µs/msg  %core per worker  msgs/s  lost"
        "  keep-alive p50/p99 ms  streams each"
    )
    runs: list[tuple[str, TreeResult]] = []
    for n in args.workers:
        loads = [("total", base)]
        if n > 1:
            loads.append(
                ("per worker", dataclasses.replace(base, engagements=base.engagements * n))
            )
        for label, load in loads:
            r = measure_workers(n, load, postgres=args.postgres)
            runs.append((label, r))
            shares = (
                " ".join(f"{100 * c / r.window_s:3.0f}" for c in r.cpu_s) if r.window_s else "-"
            )
            print(
                f"{n:7d}  {label:11s}  {load.engagements:11d}  {r.us_per_msg:6.1f}  {shares:16s}"
                f"  {r.messages / max(r.window_s, 1e-9):6.0f}"
                f"  {r.frames_sent - r.frames_recorded:4d}"
                f"  {1000 * _pct(r.keepalive_s, 0.5):9.1f}/{1000 * _pct(r.keepalive_s, 0.99):<9.1f}"
                f"  {sorted(r.spread.values())}",
                flush=True,
            )
    one = runs[0][1]
    for label, r in runs[1:]:
        factor = r.workers * one.us_per_msg / r.us_per_msg
        carried = (r.messages / max(r.window_s, 1e-9)) / (one.messages / max(one.window_s, 1e-9))
        print(
            f"scaling 1 -> {r.workers} workers, {label} load: {factor:.2f}x by CPU per message "
            f"({r.workers} x {one.us_per_msg:.1f} / {r.us_per_msg:.1f} µs/msg; target >= 1.8x); "
            f"messages/s carried {carried:.2f}x",
            flush=True,
        )
    return 0


#: The start path, stage <- the stage it follows (``recorder.service.start_trace`` and the
#: simulator's milestones): webhook sent, verified by the ingress, committed with its stream row,
#: 200 back at the simulator, claimed by a worker, recording row and holds written, the RTMS
#: client connecting, recording key ready (beside the connection), the simulator's signaling
#: handshake, the media handshake's ready ack, first frame sent, first packet in the capture.
BURST_STAGES: Final = (
    ("received", "sent"),
    ("queued", "received"),
    ("acked", "queued"),
    ("claimed", "queued"),
    ("recording", "claimed"),
    ("connecting", "recording"),
    ("key", "recording"),
    ("signaling", "connecting"),
    ("media", "signaling"),
    ("first_frame", "media"),
    ("first_packet", "first_frame"),
)


def _stage_table(stages: dict[str, dict[str, float]]) -> list[str]:
    """Per stage: ms since the webhook was sent and ms since the stage it follows (p50/p99)."""
    lines = ["  stage          after          step p50/p99 ms   since webhook p50/p99 ms      n"]
    for stage, after in BURST_STAGES:
        rows = [s for s in stages.values() if stage in s and after in s and "sent" in s]
        step = sorted(1000 * (s[stage] - s[after]) for s in rows)
        since = sorted(1000 * (s[stage] - s["sent"]) for s in rows)
        lines.append(
            f"  {stage:13s}  {after:13s}  {_pct(step, 0.5):7.0f} / {_pct(step, 0.99):<7.0f}"
            f"  {_pct(since, 0.5):9.0f} / {_pct(since, 0.99):<9.0f}  {len(rows):5d}"
        )
    return lines


def _burst(args: argparse.Namespace) -> int:
    load = LoadSpec(args.engagements, args.seconds, args.within)
    load1 = os.getloadavg()[0]
    r = measure_workers(args.workers[0], load, postgres=args.postgres, trace=True)
    lat = r.latencies_s
    first = sorted(
        s["first_packet"] - s["sent"]
        for s in r.stages.values()
        if {"first_packet", "sent"} <= s.keys()
    )
    print(
        f"bench workers burst: {load.engagements} rtms_started within {load.ramp_s:.0f} s, "
        f"{r.workers} workers, catalog {'postgres' if args.postgres else 'sqlite'}"
    )
    print(
        f"webhook -> first audio frame in the recorder's capture: p50 "
        f"{1000 * _pct(first, 0.5):.0f} ms, p99 {1000 * _pct(first, 0.99):.0f} ms, max "
        f"{1000 * (first[-1] if first else float('nan')):.0f} ms over {len(first)} of "
        f"{load.engagements} (target < 1000 ms)"
    )
    # The simulator's own "frames_sent > 0" is seen only at its next change notification,
    # which comes after the replay of everything it buffered before the media socket was
    # ready: later than the recorder's first frame, by seconds under a burst.
    print(
        f"simulator saw frames_sent > 0 (after its buffer replay): p50 "
        f"{1000 * _pct(lat, 0.5):.0f} ms, p99 {1000 * _pct(lat, 0.99):.0f} ms; "
        f"webhook -> signaling connect p50 {1000 * _pct(r.connects_s, 0.5):.0f} ms, "
        f"p99 {1000 * _pct(r.connects_s, 0.99):.0f} ms; "
        f"keep-alive answer p99 {1000 * _pct(r.keepalive_s, 0.99):.0f} ms; "
        f"lost {r.frames_sent - r.frames_recorded} of {r.frames_sent} frames; "
        f"streams per worker {sorted(r.spread.values())}"
    )
    print(
        f"until every engagement streamed ({r.burst_wall_s:.1f} s): service tree CPU "
        f"{r.burst_cpu_s:.1f} s ({1000 * r.burst_cpu_s / load.engagements:.0f} ms per start), "
        f"simulator CPU {r.burst_sim_cpu_s:.1f} s (with its start-up), host cores busy "
        f"{100 * r.burst_host_busy:.0f}% ({os.cpu_count()} cores); load average before "
        f"{load1:.1f}, after {os.getloadavg()[0]:.1f}"
    )
    print("\n".join(_stage_table(r.stages)))
    return 0


def _memory(args: argparse.Namespace) -> int:
    load = LoadSpec(args.engagements, args.seconds, args.ramp, speed=args.speed, every_s=args.every)
    r = measure_workers(args.workers[0], load, postgres=args.postgres)
    print(
        f"bench workers memory: {load.engagements} engagements, {load.seconds:.0f} s of call at "
        f"{load.speed:g}x, {r.workers} workers; RSS growth per engagement (budget "
        f"{RSS_BUDGET_KIB} KiB)"
    )
    for at_s, kib in r.rss_marks:
        print(f"  audio sent per call {at_s:7.0f} s   {kib:7.0f} KiB per engagement")
    print(f"lost {r.frames_sent - r.frames_recorded} of {r.frames_sent} frames")
    return 0


def _numbers(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recorder bench workers", description=__doc__)
    parser.add_argument("mode", choices=["scale", "burst", "memory"])
    parser.add_argument("--workers", type=_numbers, default=None, help="e.g. 1,2 (scale)")
    parser.add_argument("--engagements", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None, help="call length (call time)")
    parser.add_argument("--ramp", type=float, default=5.0, help="start spread (s)")
    parser.add_argument("--within", type=float, default=5.0, help="burst: start spread (s)")
    parser.add_argument("--speed", type=float, default=10.0, help="memory: call s per real s")
    parser.add_argument("--every", type=float, default=300.0, help="memory: call s per sample")
    parser.add_argument("--postgres", default=None, metavar="DSN", help="catalog on PostgreSQL")
    args = parser.parse_args(argv)
    if args.mode == "scale":
        args.workers = args.workers or [1, 2]
        args.engagements = args.engagements or 100
        args.seconds = args.seconds or 30.0
        return _scale(args)
    if args.mode == "burst":
        args.workers = args.workers or [2]
        args.engagements = args.engagements or 200
        args.seconds = args.seconds or 15.0
        return _burst(args)
    args.workers = args.workers or [2]
    args.engagements = args.engagements or 20
    args.seconds = args.seconds or 3600.0
    return _memory(args)
