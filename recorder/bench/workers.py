"""``recorder bench workers``: the real ``recorder serve --workers N`` process tree under load.

Run: ``recorder bench workers scale|burst|memory [options]`` (``--help`` per mode).

Every mode starts the real service (``recorder serve --workers N``: the parent, its workers,
the catalog's work queue, signed webhooks over HTTP, loopback RTMS WebSockets, encrypted
segments, local store; SQLite unless ``--postgres DSN``) and the RTMS simulator in its own
process. Nothing is mocked; nothing here is used by tests.

* ``scale``: K paced L16 16 kHz engagements with 1 worker, the same K with N, then N x K with
  N (each worker as loaded as the single one was). Compared is **capacity**, not messages
  carried: on a 2-core host the simulator producing the load needs about as much CPU per
  message as the recorder, so what N workers carry is capped by what it can offer beside them
  (the bench prints its µs/msg). Per run, over a steady window (every engagement streaming):
  the tree's CPU per message (workers and parent), each worker's share of a core, how long
  its loop waited for a core, frames lost (sent minus recorded in the catalog), recordings
  not ended in time, keep-alives missed, and the capacity: the rate carried scaled to the
  point where the tree would use N whole cores or its busiest worker one (``TreeResult.
  capacity_msgs_s``). Scaling = capacity with N / capacity with 1 (target >= 1.8x); a run
  that lost frames or keep-alives is marked not clean and so is the factor that uses it.
* ``burst``: the 9 a.m. burst: ``--engagements`` (200) ``rtms_started`` spread over
  ``--within`` (5 s). Per engagement: webhook sent to first audio frame sent on the recorder's
  media socket (the recorder has verified the webhook, committed the stream row, a worker has
  claimed it, connected, handshaken and subscribed), p50 / p99 / max; target < 1 s.
* ``memory``: K and then 2K engagements of one long call each, time-accelerated (``--speed``:
  scenario seconds per real second), the workers' summed RSS every ``--every`` seconds of
  call time. Marginal cost per engagement = (RSS with 2K - RSS with K) / K at the same mark;
  the fixed part per worker is what remains; budget 2 MiB, flat. ``--arena-max`` sets glibc's
  MALLOC_ARENA_MAX for the tree (serve gives its workers 2); ``--tracemalloc FRAMES`` makes
  every process of the tree dump a tracemalloc snapshot at each mark (a ``sitecustomize`` on
  the tree's PYTHONPATH, bench-only) and prints the Python heap's marginal and growth by line.

``measure_workers(...)`` is the function ``bench fullpath --workers N`` may call for the same
figures.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
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
    #: (audio sent per call so far, the workers' summed RSS, and RssAnon, in KiB) per ``mark``.
    rss_totals: list[tuple[float, int, int]] = field(default_factory=list)
    #: Per mark, the workers' tracemalloc snapshot files (``memory --tracemalloc``).
    snapshots: list[list[Path]] = field(default_factory=list)
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
    #: The parent's (``serve --workers N``) CPU over the same window as ``cpu_s``.
    parent_cpu_s: float = 0.0
    #: The simulator process's CPU over the window (the load generator's cost).
    sim_cpu_s: float = 0.0
    keepalives_missed: int = 0
    #: Per worker, seconds its trio loop waited for a core over the window (a loaded host).
    wait_s: list[float] = field(default_factory=list)
    #: Engagements whose recording had not ended a minute after the simulator stopped.
    unfinished: int = 0

    @property
    def tree_us_per_msg(self) -> float:
        """Recorder CPU per message, the parent's included (what the tree costs per message)."""
        if not self.messages:
            return float("nan")
        return (sum(self.cpu_s) + self.parent_cpu_s) * 1e6 / self.messages

    @property
    def capacity_msgs_s(self) -> float:
        """Messages/s this tree could carry on ``workers`` cores of its own, from this run's cost.

        Linear in the measured CPU: the rate at which either the whole tree (workers and
        parent) would use all ``workers`` cores, or its busiest worker (one trio loop: one
        core at most) a whole core, whichever comes first. Per-message cost falls as load
        rises, so this is a lower bound for both configurations alike.
        """
        if not self.messages or not self.window_s or not self.cpu_s:
            return float("nan")
        rate = self.messages / self.window_s
        tree = (sum(self.cpu_s) + self.parent_cpu_s) / self.window_s
        busiest = max(self.cpu_s) / self.window_s
        if tree <= 0 or busiest <= 0:
            return float("nan")
        return rate * min(self.workers / tree, 1.0 / busiest)

    @property
    def clean(self) -> bool:
        """Nothing lost and every keep-alive answered: a load this tree did carry."""
        return (
            self.frames_sent == self.frames_recorded
            and self.keepalives_missed == 0
            and self.unfinished == 0
        )

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


def _host_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of every core of the host so far (``/proc/stat``)."""
    with open("/proc/stat", encoding="ascii") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def _proc_wait_s(pid: int) -> float:
    """Seconds the process's main thread (its trio loop) sat runnable waiting for a core."""
    with open(f"/proc/{pid}/schedstat", encoding="ascii") as f:
        return int(f.read().split()[1]) / 1e9


def _proc_rss_kib(pid: int, field: str = "VmRSS") -> int:
    """``VmRSS`` (all resident pages) or ``RssAnon`` (heap and other private memory: what an
    engagement can add; the shared libraries' pages are ``RssFile``)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return 0


#: Loaded by every process of the tree when ``memory --tracemalloc`` puts it on PYTHONPATH: each
#: SIGUSR2 then dumps a tracemalloc snapshot. Bench-only: nothing in ``recorder`` knows of it.
_TRACE_SITECUSTOMIZE: Final = """\
import os, signal, tracemalloc
_dir = os.environ.get("RECORDER_BENCH_TRACE_DIR")
if _dir:
    tracemalloc.start(int(os.environ.get("RECORDER_BENCH_TRACE_FRAMES", "1")))
    _count = [0]

    def _dump(signum, frame):
        _count[0] += 1
        path = os.path.join(_dir, "%d-%03d.snap" % (os.getpid(), _count[0]))
        tracemalloc.take_snapshot().dump(path + ".tmp")
        os.rename(path + ".tmp", path)

    signal.signal(signal.SIGUSR2, _dump)
"""


def _trace_env(trace_dir: Path, frames: int) -> dict[str, str]:
    """The environment that makes the tree's processes dump snapshots into ``trace_dir``."""
    site = trace_dir / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(_TRACE_SITECUSTOMIZE)
    path = os.environ.get("PYTHONPATH", "")
    return {
        "PYTHONPATH": f"{site}{os.pathsep}{path}" if path else str(site),
        "RECORDER_BENCH_TRACE_DIR": str(trace_dir),
        "RECORDER_BENCH_TRACE_FRAMES": str(frames),
    }


def _snapshot_all(pids: Sequence[int], trace_dir: Path, count: int) -> list[Path]:
    """SIGUSR2 to each pid; wait until each has written its ``count``-th snapshot."""
    for pid in pids:
        os.kill(pid, signal.SIGUSR2)
    paths = [trace_dir / f"{pid}-{count:03d}.snap" for pid in pids]
    deadline = time.monotonic() + 120
    while not all(p.exists() for p in paths) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in paths if p.exists()]


def _parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


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
    workers: int, *, postgres: str | None = None, env: dict[str, str] | None = None
) -> Iterator[tuple[str, Path, list[int], str | None]]:
    """``recorder serve --workers N`` in a fresh state directory (and PostgreSQL schema):
    (webhook URL, state, worker pids, the run's DSN). ``env``: extra variables for the tree."""
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
            **(env or {}),
        }
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
        if spec.every_s > 0:
            # Marks by audio actually sent, not by wall time: a host that cannot keep the pace
            # would otherwise compare two runs at different points of their calls.
            mark = spec.every_s
            while True:
                sent = frames() * FRAME_MS / 1000 / spec.engagements
                if sent >= mark:
                    conn.send(("mark", sent))
                    mark += spec.every_s
                if all(e.finished.is_set() for e in engagements):
                    break
                await trio.sleep(0.25)
        else:
            # The steady window: from all streaming until the first call may end.
            end = start + (spec.seconds - 1.0) / spec.speed
            await trio.sleep_until(max(end, trio.current_time()))
            conn.send(("window_end", frames(), time.monotonic()))
        # A host that cannot keep the pace sends late, not less: give the calls time to end
        # (a call cut short leaves its recording open, waiting for the stream to come back).
        with trio.move_on_after(4 * spec.seconds / spec.speed + 60):
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
                    "keepalives_missed": sum(e.stats.keepalives_missed for e in engagements),
                    "ids": [e.scenario.rtms_stream_id for e in engagements],
                    "milestones": milestones,
                },
            )
        )
        nursery.cancel_scope.cancel()


# --- measuring ---------------------------------------------------------------------------------


def _recorded_frames(state: Path, postgres: str | None, ids: Sequence[str]) -> tuple[int, int]:
    """Frames the catalog holds for ``ids`` once their recordings ended (samples minus gaps),
    and how many of ``ids`` had no ended recording within a minute (their frames are not
    counted: an overloaded run's "lost" is then partly "not sealed yet")."""
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
        ended = sum(1 for r in rows if r.status is not RecordingStatus.ACTIVE)
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
        return samples // FRAME_SAMPLES, len(ids) - ended
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
    workers: int,
    load: LoadSpec,
    *,
    postgres: str | None = None,
    env: dict[str, str] | None = None,
    trace_dir: Path | None = None,
    start_stages: bool = False,
) -> TreeResult:
    """Record ``load`` with ``recorder serve --workers N``; the figures of one run.

    ``trace_dir``: the tree was started with ``_trace_env(trace_dir)``; a tracemalloc snapshot
    of every worker is taken at each ``mark``. ``start_stages``: collect the per-stage
    start times (``TreeResult.stages``) and the burst's CPU."""
    result = TreeResult(workers, load.engagements)
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench-start-") as stages_dir:
        extra = {**(env or {}), **({START_TRACE_ENV: stages_dir} if start_stages else {})}
        with service_tree(workers, postgres=postgres, env=extra) as tree_info:
            return _measure(
                result, ctx, load, tree_info, trace_dir, Path(stages_dir) if start_stages else None
            )


def _measure(
    result: TreeResult,
    ctx: Any,
    load: LoadSpec,
    tree_info: tuple[str, Path, list[int], str | None],
    trace_dir: Path | None,
    stages_dir: Path | None,
) -> TreeResult:
    url, state, pids, postgres = tree_info
    rss0 = sum(_proc_rss_kib(p) for p in pids)
    parent = _parent_pid(pids[0])
    tree = [parent, *pids]
    here, there = ctx.Pipe()
    sim = ctx.Process(target=simulator_main, args=(there, url, dataclasses.asdict(load)))
    burst0 = time.monotonic(), sum(_proc_cpu_s(p) for p in tree), _host_ticks()
    sim.start()
    there.close()
    if sim.pid is None:
        raise RuntimeError("the simulator process did not start")
    cpu0: list[float] = []
    wait0: list[float] = []
    parent0 = sim0 = 0.0
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
            wait0 = [_proc_wait_s(p) for p in pids]
            parent0, sim0 = _proc_cpu_s(parent), _proc_cpu_s(sim.pid)
            result.spread = _owners(state, postgres, ids)
        elif kind == "window_end":
            frames1, t1 = rest
            result.cpu_s = [_proc_cpu_s(p) - c for p, c in zip(pids, cpu0, strict=True)]
            result.wait_s = [_proc_wait_s(p) - w for p, w in zip(pids, wait0, strict=True)]
            result.parent_cpu_s = _proc_cpu_s(parent) - parent0
            result.sim_cpu_s = _proc_cpu_s(sim.pid) - sim0
            result.messages = frames1 - frames0
            result.window_s = t1 - t0
        elif kind == "mark":
            rss = sum(_proc_rss_kib(p) for p in pids)
            result.rss_marks.append((rest[0], (rss - rss0) / load.engagements))
            anon = sum(_proc_rss_kib(p, "RssAnon") for p in pids)
            result.rss_totals.append((rest[0], rss, anon))
            if trace_dir is not None:
                taken = _snapshot_all(pids, trace_dir, len(result.snapshots) + 1)
                result.snapshots.append(taken)
        elif kind == "done":
            done = rest[0]
    sim.join(timeout=30)
    result.frames_sent = done["frames_sent"]
    result.latencies_s = sorted(done["latencies_s"])
    result.connects_s = sorted(done["connects_s"])
    result.keepalive_s = sorted(done["keepalive_s"])
    result.keepalives_missed = done["keepalives_missed"]
    result.frames_recorded, result.unfinished = _recorded_frames(state, postgres, done["ids"])
    if stages_dir is not None:
        from recorder.service import start_trace

        result.stages = start_trace.read(stages_dir)
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

    What is compared is capacity, not messages carried: on this 2-core host the simulator
    producing the load needs CPU too (more per message than the recorder), so what N workers
    carry is capped by what the simulator can offer beside them. Each run's capacity is the
    rate it carried scaled by its CPU headroom (``TreeResult.capacity_msgs_s``: all N cores for
    the tree, the parent's CPU included, one core at most for the busiest worker); only runs
    that lost nothing and missed no keep-alive count (``clean``). Per-message cost falls as a
    process's load rises (one loop wake-up serves more sockets), so the same total load split
    over N workers costs more per message in each: the 'per worker' row (each worker as loaded
    as the single one was) is the one that says whether N workers record N times what one does.
    """
    base = LoadSpec(args.engagements, args.seconds, args.ramp)
    env = _tree_env(args) or None
    print(
        f"bench workers scale: {base.engagements} L16 16 kHz engagements per run (x N for the "
        f"'per worker' rows), {base.seconds:.0f} s, ramp {base.ramp_s:.0f} s, "
        f"{os.cpu_count()} cores shared with the simulator, catalog "
        f"{'postgres' if args.postgres else 'sqlite'}; load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print(
        "workers  load         engagements  msgs/s  tree µs/msg  %core per worker  parent"
        "  waited %  sim µs/msg    lost  unended  ka missed  ka p99 ms  clean"
        "  capacity msgs/s  streams each"
    )
    runs: list[tuple[str, TreeResult]] = []
    for n in args.workers:
        loads = [("total", base)]
        if n > 1:
            loads.append(
                ("per worker", dataclasses.replace(base, engagements=base.engagements * n))
            )
        for label, load in loads:
            r = measure_workers(n, load, postgres=args.postgres, env=env)
            runs.append((label, r))
            window = max(r.window_s, 1e-9)
            shares = " ".join(f"{100 * c / window:3.0f}" for c in r.cpu_s) or "-"
            print(
                f"{n:7d}  {label:11s}  {load.engagements:11d}  {r.messages / window:6.0f}"
                f"  {r.tree_us_per_msg:11.1f}  {shares:16s}  {100 * r.parent_cpu_s / window:5.1f}%"
                f"  {100 * max(r.wait_s, default=0) / window:8.0f}"
                f"  {r.sim_cpu_s * 1e6 / max(r.messages, 1):10.1f}"
                f"  {r.frames_sent - r.frames_recorded:6d}  {r.unfinished:7d}"
                f"  {r.keepalives_missed:9d}"
                f"  {1000 * _pct(r.keepalive_s, 0.99):9.1f}  {'yes' if r.clean else 'NO':5s}"
                f"  {r.capacity_msgs_s:15.0f}  {sorted(r.spread.values())}",
                flush=True,
            )
    one = runs[0][1]
    if not (one.messages and one.window_s > 0 and one.capacity_msgs_s > 0):
        print("scaling: not measured (the one-worker run had no steady window: longer --seconds)")
        return 1
    for label, r in runs[1:]:
        factor = r.capacity_msgs_s / one.capacity_msgs_s
        by_cost = r.workers * one.tree_us_per_msg / r.tree_us_per_msg
        carried = (r.messages / max(r.window_s, 1e-9)) / (one.messages / max(one.window_s, 1e-9))
        caveat = (
            ""
            if r.clean and one.clean
            else " (NOT clean: a run lost frames or keep-alives, or did not end in time)"
        )
        print(
            f"scaling 1 -> {r.workers} workers, {label} load: capacity {factor:.2f}x "
            f"({r.capacity_msgs_s:.0f} / {one.capacity_msgs_s:.0f} msgs/s; target >= 1.8x)"
            f"{caveat}; by tree CPU per message {by_cost:.2f}x ({r.workers} x "
            f"{one.tree_us_per_msg:.1f} / {r.tree_us_per_msg:.1f} µs/msg); messages/s carried "
            f"{carried:.2f}x (capped by what the simulator offers: it spent "
            f"{r.sim_cpu_s * 1e6 / max(r.messages, 1):.0f} µs/msg)",
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
    r = measure_workers(args.workers[0], load, postgres=args.postgres, start_stages=True)
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
    """K and then 2K engagements, the same calls: marginal RSS = (RSS(2K) - RSS(K)) / K.

    Growth from the start divided by K charges each engagement with what the workers grow by
    whatever their load (imports, codec and catalog caches, allocator arenas); the difference
    between two runs at the same point of the call leaves only what one more engagement costs.
    """
    k = args.engagements
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-trace-") as traces:
        for count in (k, 2 * k):
            env = _tree_env(args)
            trace_dir = None
            if args.tracemalloc:
                trace_dir = Path(traces) / str(count)
                env.update(_trace_env(trace_dir, args.tracemalloc))
            load = LoadSpec(count, args.seconds, args.ramp, speed=args.speed, every_s=args.every)
            runs.append(
                measure_workers(
                    args.workers[0], load, postgres=args.postgres, env=env, trace_dir=trace_dir
                )
            )
        small, large = runs
        heap = io.StringIO()
        if args.tracemalloc:
            # Read while the snapshot files exist; printed after the RSS table.
            with contextlib.redirect_stdout(heap):
                _print_heap_diffs(small, large)
    n = small.workers
    print(
        f"bench workers memory: {k} and {2 * k} engagements, {args.seconds:.0f} s of call at "
        f"{args.speed:g}x, {n} workers, environment {_tree_env(args) or 'as serve sets it'}; "
        "load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print(
        f"  audio sent per call ({k} / {2 * k})   RSS (MiB, workers summed)   marginal KiB per "
        f"engagement: RSS, anon (budget {RSS_BUDGET_KIB})   fixed MiB per worker: RSS, anon"
    )
    for (at_s, rss_k, anon_k), (at_2k, rss_2k, anon_2k) in zip(
        small.rss_totals, large.rss_totals, strict=False
    ):
        marginal = (rss_2k - rss_k) / k
        marginal_anon = (anon_2k - anon_k) / k
        fixed = (rss_k - k * marginal) / n / 1024
        fixed_anon = (anon_k - k * marginal_anon) / n / 1024
        print(
            f"  {at_s:6.0f} / {at_2k:6.0f} s               "
            f"{rss_k / 1024:7.1f} / {rss_2k / 1024:7.1f}"
            f"               {marginal:7.0f}  {marginal_anon:7.0f}"
            f"                              {fixed:6.1f}  {fixed_anon:6.1f}"
        )
    print(heap.getvalue(), end="")
    for r in runs:
        print(
            f"{r.engagements} engagements: lost {r.frames_sent - r.frames_recorded} of "
            f"{r.frames_sent} frames ({r.unfinished} recordings not ended in time), "
            f"{r.keepalives_missed} keep-alives missed, "
            f"streams each {sorted(r.spread.values())}"
        )
    return 0


def _heap_by_line(paths: Sequence[Path]) -> dict[str, int]:
    """Python heap bytes by allocating line (``file:line``), summed over ``paths``."""
    import tracemalloc

    sizes: dict[str, int] = {}
    for path in paths:
        for stat in tracemalloc.Snapshot.load(str(path)).statistics("lineno"):
            frame = stat.traceback[0]
            key = f"{frame.filename}:{frame.lineno}"
            sizes[key] = sizes.get(key, 0) + stat.size
    return sizes


def _print_top(title: str, before: dict[str, int], after: dict[str, int], per: int) -> None:
    diffs = sorted(
        ((after.get(key, 0) - before.get(key, 0), key) for key in before.keys() | after.keys()),
        reverse=True,
    )
    total = sum(after.values()) - sum(before.values())
    print(f"{title}: Python heap {total / per / 1024:+.0f} KiB (per engagement); top lines:")
    site = str(Path(sys.prefix))
    for diff, key in diffs[:12]:
        print(f"  {diff / per / 1024:+8.1f} KiB  {key.replace(site, '<venv>')}")


def _print_heap_diffs(small: TreeResult, large: TreeResult) -> None:
    """What the Python heap holds per engagement (tracemalloc; not C allocations: FFmpeg,
    OpenSSL, SQLite, and allocator slack are in RSS only)."""
    if not small.snapshots or not large.snapshots:
        print("tracemalloc: no snapshots were taken (no mark reached)")
        return
    k = small.engagements
    last = min(len(small.snapshots), len(large.snapshots)) - 1
    _print_top(
        f"marginal ({large.engagements} minus {k} engagements, mark {last + 1})",
        _heap_by_line(small.snapshots[last]),
        _heap_by_line(large.snapshots[last]),
        k,
    )
    if len(large.snapshots) > 1:
        _print_top(
            f"growth over the call ({large.engagements} engagements, first to last mark)",
            _heap_by_line(large.snapshots[0]),
            _heap_by_line(large.snapshots[-1]),
            large.engagements,
        )


def _tree_env(args: argparse.Namespace) -> dict[str, str]:
    env = {"MALLOC_ARENA_MAX": args.arena_max} if args.arena_max else {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--env wants NAME=VALUE, got {item!r}")
        env[key] = value
    return env


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
    parser.add_argument(
        "--arena-max",
        default=None,
        metavar="N",
        help="scale, memory: MALLOC_ARENA_MAX for the service tree (default: serve's own)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="scale, memory: an environment variable for the service tree (e.g. glibc tunables)",
    )
    parser.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="memory: trace the workers' Python heap (slow) and print what grows, by line",
    )
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
