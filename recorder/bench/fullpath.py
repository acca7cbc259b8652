"""CPU per audio message of the full recording path, measured the way DESIGN.md states its targets.

Run: ``python -m recorder.bench.fullpath [--engagements 50,100,150] [--seconds 10] [--quick]``.

Per configuration (codec x K) two fresh processes are started (``multiprocessing``, spawn):

* the **RTMS simulator**, pinned to the server core (1 by default): K paced engagements of one
  codec, started over ``--ramp`` seconds, each ``--seconds`` long at real speed (one 20 ms frame
  per message, ``pace_batch_frames`` 1 by default, as Zoom sends them). It tells the measured
  process each engagement's target through a pipe as soon as it starts, and its frame counters
  at the end;
* the **measured process**, pinned to the other core (0 by default): per engagement the real RTMS
  client (``open_rtms_stream`` over loopback WebSockets, webhook-free) feeding ``run_capture``
  into the real encrypting ``SpoolSinkFactory`` (local keys in a temporary directory): receive,
  parse, base64, decode, timeline, encrypted segment write, checkpoints (fsync). **No upload**
  (docs/perf-baseline.md §6/§7: about 1-2 µs per message more). The capture is the one
  `recorder serve` runs, built from the shipped ``[capture]`` section (``--output service``, the
  default: every codec at its source rate, so G.711 is written at 8 kHz and Opus at 48 kHz);
  ``--output voice`` writes 16 kHz mono instead (G.711 doubled, Opus decimated), an option a
  deployment can choose. Each row says the rate its WAVs were written at.

What is reported, per configuration:

* ``µs/msg``: ``process_time`` of the measured process (all its threads) over a steady window
  (every engagement streaming, none stopping) divided by the audio messages received in it;
  ``whole`` is the same over the whole run (connects, handshakes, sealing and read-back included);
* ``%core``: that CPU over the window's wall time; ``streams/core``: K scaled to 100% busy;
* ``lost``: simulator frames sent minus frames recorded (manifest samples minus gaps), plus
  the client's dropped counters and the manifest's dropped/late counters;
* ``lag``: how far the pipeline's consumption is behind real time (sampled every 250 ms in the
  window: wall clock minus the RTMS timestamp of the next packet to consume), median and max;
* ``RSS/eng``: VmRSS growth of the measured process from before the first connect to the end of
  the window, per engagement (budget: 2 MiB);
* ``connect``: webhook-free connect to first recorded frame, ``open_rtms_stream`` start to the
  first ``AudioPacket`` reaching the pipeline (``run_capture``'s ``on_event``), median and max;
* the ratio to DESIGN.md's 67-71 µs/msg of Zoom's C++ SDK (receive only) and to
  perf-baseline §7's recv-only row (63-74 µs/msg, raw trio-websocket, no RTMS client).

``--client-only`` measures the RTMS client alone (events drained and discarded, no capture): the
difference to the full path is the capture pipeline's share.

Side by side in one run (``--modes``, default ``floor,bare,before,full``), per codec and K, on
the same simulator streams (issue 13's comparison; ratios taken in one run hold from machine to
machine, absolute figures do not):

* ``floor``: raw trio ``receive_some`` on each media socket, no WebSocket parsing (messages
  counted at the paced rate, 50 per stream per second);
* ``bare``: trio-websocket's ``get_message()`` with its own reader task, receive only;
* ``before``: the full path with trio-websocket's reader task and channel per socket;
* ``full``: the full path with one task per socket (``recorder.rtms._direct``).

In ``floor`` and ``bare`` the signaling socket and both handshakes are still the real client's;
only what an open media socket does with its messages changes. A summary per codec prints each
row as µs/msg and as ratios to ``bare``, to ``floor`` and to Zoom's C++ SDK, estimated from this
run's ``bare`` and issue 13's same-run SDK/bare ratio (45/57; the SDK itself is not run here).
``--tls`` runs every row over ``wss://`` (Zoom's media URLs are ``wss://``): the simulator
serves only TLS, with a self-signed certificate made for the run (``recorder.testing.tls``),
and the measured side trusts exactly that certificate, verification on. Before each row the
measured side handshakes once with the simulator's listener: a certificate it does not trust
ends the row at once with OpenSSL's reason, and each row prints the version and cipher
negotiated. The floor then reads trio's ``SSLStream.receive_some`` (over trio's own
``SocketStream``, as bare trio-websocket does); the one-task rows read through
``_direct.ReadWhenReady``, and ``full-trio-tls`` (in ``--tls``'s default modes) is the one-task
full path over trio's own transport instead, to compare the two in one run.
``--workers N`` then runs ``bench workers scale`` (1 and N workers of the real pre-forked
``recorder serve`` tree on the largest K) and prints its scaling factor.
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import os
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from recorder.testing.tls import SelfSignedCertificate

#: DESIGN.md: memory per engagement budget.
RSS_BUDGET_KIB: Final = 2048
FRAME_MS: Final = 20

#: ``--output``: what the measured capture writes.
OUTPUTS: Final[dict[str, str]] = {
    "service": (
        "what `recorder serve` records with the shipped configuration ([capture] "
        'output_sample_rate_hz and output_channels "source": G.711 stays 8 kHz, Opus 48 kHz)'
    ),
    "voice": "16 kHz mono whatever the source (G.711 doubled, Opus decimated)",
}

#: name -> (label, codec wire value, sample rate, channels)
CODECS: Final[dict[str, tuple[str, int, int, int]]] = {
    "l16": ("L16 16k mono", 1, 16_000, 1),
    "g711": ("G.711 8k", 2, 8_000, 1),
    "opus": ("Opus 48k mono", 4, 48_000, 1),
}

#: Seconds after the last engagement's first frame before the window opens, and before the
#: first scheduled end when it closes.
SETTLE_S: Final = 0.5
END_MARGIN_S: Final = 0.5
LAG_SAMPLE_S: Final = 0.25


@dataclass(frozen=True, slots=True)
class RunSpec:
    codec: str
    engagements: int
    seconds: float
    ramp_s: float
    pace_batch_frames: int
    client_cpu: int
    server_cpu: int
    client_only: bool
    per_speaker: bool
    #: ``CaptureConfig.checkpoint_interval_s`` (1.0 in production).
    checkpoint_s: float = 1.0
    #: What the measured process does with the media sockets: ``full`` (client + capture),
    #: ``rtms`` (client alone, = ``client_only``), ``bare`` (trio-websocket ``get_message()``
    #: receive only) or ``floor`` (raw trio ``receive_some``, no WebSocket parsing).
    mode: str = "full"
    #: ``ClientConfig.single_task_sockets``: False = trio-websocket's reader task (before).
    single_task: bool = True
    #: Append the measured process's INFO log here ("" = warnings to stderr only).
    log_file: str = ""
    #: The simulator's ``speed`` (scenario seconds per real second): below 1, frames come
    #: further apart than 20 ms (``bench instructions`` gives a client under valgrind room).
    sim_speed: float = 1.0
    #: What the capture writes, one of ``OUTPUTS``.
    output: str = "service"
    #: TLS (``--tls``): the simulator serves ``wss://`` with this certificate and key (PEM
    #: files made for the run, ``recorder.testing.tls``); "" serves plain ``ws://``.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    #: The one CA file the measured side trusts (the run's certificate; verification on).
    tls_ca_file: str = ""
    #: One-task TLS sockets read through ``_direct.ReadWhenReady`` (False: trio's own
    #: ``SocketStream`` under the SSL stream; ``ClientConfig.tls_read_when_ready``).
    tls_read_when_ready: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


# --- helpers shared by both processes ---------------------------------------------------------


def _pin(cpu: int) -> str:
    """Pin this process to ``cpu`` when the machine has it; returns what was done."""
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:  # pragma: no cover (not Linux)
        return "unpinned"
    if cpu not in allowed or len(allowed) < 2:
        return "unpinned"
    os.sched_setaffinity(0, {cpu})
    return f"cpu{cpu}"


def _run_delay_s() -> float:
    """Seconds the main thread waited on a run queue (the core was busy with someone else)."""
    try:
        with open("/proc/thread-self/schedstat", encoding="ascii") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def _rss_kib(field: str = "VmRSS") -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# --- the simulator process --------------------------------------------------------------------


def simulator_main(conn: Connection, spec: dict[str, Any]) -> None:
    """Entry point of the simulator process (spawned)."""
    import trio

    _pin(int(spec["server_cpu"]))
    try:
        trio.run(_serve, conn, RunSpec(**spec))
    finally:
        conn.close()


def _server_tls(spec: RunSpec) -> ssl.SSLContext | None:
    """The simulator's server context in TLS mode (None: plain ``ws://``)."""
    if not spec.tls_cert_file:
        return None
    certificate = SelfSignedCertificate(Path(spec.tls_cert_file), Path(spec.tls_key_file))
    return certificate.server_context()


def _client_tls(spec: RunSpec) -> ssl.SSLContext | None:
    """The measured side's context in TLS mode: certificate and hostname verified, trusting
    ``tls_ca_file`` alone (None: plain ``ws://``)."""
    if not spec.tls_cert_file:
        return None
    return ssl.create_default_context(cafile=spec.tls_ca_file)


async def _tls_session(base_url: str, context: ssl.SSLContext) -> str:
    """Handshake once with the simulator's listener using the measured side's own context, and
    return the protocol version and cipher negotiated (the run's sockets negotiate the same:
    same contexts, same server). A certificate the context does not trust fails here, with
    OpenSSL's reason, before any engagement starts (the client's own connect reports only an
    abnormal close, retried until the run's timeout)."""
    import trio

    parts = urlsplit(base_url)
    host, port = parts.hostname or "", parts.port or 443
    try:
        stream = await trio.open_ssl_over_tcp_stream(
            host, port, ssl_context=context, https_compatible=True
        )
        try:
            await stream.do_handshake()
            version, cipher = stream.version(), stream.cipher()
        finally:
            await stream.aclose()
    except (trio.BrokenResourceError, OSError) as exc:
        reason = exc.__cause__ if exc.__cause__ is not None else exc
        raise RuntimeError(
            f"TLS handshake with the simulator at {host}:{port} failed: {reason}"
        ) from exc
    return f"{version} {cipher[0] if cipher else '?'}"


async def _recv(conn: Connection) -> Any:
    """Receive from a pipe without blocking the trio loop (messages are small)."""
    import trio

    await trio.lowlevel.wait_readable(conn.fileno())
    return conn.recv()


async def _serve(conn: Connection, spec: RunSpec) -> None:
    import trio

    from recorder.rtms.client import audio_params
    from recorder.rtms.events import AudioCodec
    from recorder.simulator import AudioLayout, Product, Scenario, SimulatorConfig, open_simulator

    _, codec, rate, channels = CODECS[spec.codec]
    params = audio_params(AudioCodec(codec), rate, channels, per_speaker=spec.per_speaker)
    base = Scenario(
        product=Product.MEETING,
        duration_s=spec.seconds,
        media=("audio",),
        layout=AudioLayout.PER_SPEAKER if spec.per_speaker else AudioLayout.MIXED,
    )
    config = SimulatorConfig(
        pace_batch_frames=spec.pace_batch_frames,
        encode_in_thread=True,
        speed=spec.sim_speed,
        ssl_context=_server_tls(spec),
    )
    async with open_simulator(config) as sim:
        await sim.warm_audio(base, [params])
        conn.send(("ready", sim.base_url))
        message = await _recv(conn)
        if message[0] != "go":
            return
        cpu0, wall0 = time.process_time(), time.perf_counter()
        start = trio.current_time()
        engagements = []
        for index in range(spec.engagements):
            await trio.sleep_until(start + spec.ramp_s * index / spec.engagements)
            engagement = await sim.start(base)
            engagements.append(engagement)
            target = engagement.target
            conn.send(
                (
                    "target",
                    index,
                    {
                        "instance_id": target.instance_id,
                        "rtms_stream_id": target.rtms_stream_id,
                        "server_urls": target.server_urls,
                        "client_id": target.client_id,
                        "client_secret": target.client_secret,
                        "t0_ms": engagement.scenario.t0_ms,
                    },
                )
            )
        with trio.move_on_after(spec.seconds / spec.sim_speed + 60):
            for engagement in engagements:
                await engagement.finished.wait()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        conn.send(
            (
                "done",
                {
                    "frames_sent": sum(e.stats.frames_sent for e in engagements),
                    "buffer_dropped": sum(e.stats.buffer_dropped_frames for e in engagements),
                    "handler_errors": sum(e.stats.handler_errors for e in engagements),
                    "keepalives_missed": sum(e.stats.keepalives_missed for e in engagements),
                    "busy": cpu / wall if wall > 0 else 0.0,
                },
            )
        )


# --- the measured process ---------------------------------------------------------------------


def measured_main(conn: Connection, result: Connection, spec: dict[str, Any]) -> None:
    """Entry point of the measured process (spawned): RTMS client + capture + encrypted spool."""
    import trio

    pinned = _pin(int(spec["client_cpu"]))
    if spec.get("log_file"):
        import logging

        logging.basicConfig(
            filename=spec["log_file"],
            level=logging.INFO,
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
        )
    try:
        outcome = trio.run(_measure, conn, RunSpec(**spec))
        outcome["pinned"] = pinned
        result.send(outcome)
    except BaseException as exc:
        result.send({"error": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        result.close()
        conn.close()


@dataclass(slots=True)
class _Live:
    t0_ms: int
    opened: float
    first_frame_s: float | None = None
    stream: Any = None
    manifest: Any = None
    consumed: Any = None  # the stream's receive channel


async def _measure(conn: Connection, spec: RunSpec) -> dict[str, Any]:
    import gc

    import trio

    from recorder.audio.decoder import VOICE
    from recorder.capture.checkpoints import CheckpointCoordinator, open_checkpoint_coordinator
    from recorder.capture.pipeline import run_capture
    from recorder.config import CaptureConfig as CaptureSection
    from recorder.crypto.setup import KeyringSettings, build_keyring
    from recorder.crypto.writer import SpoolSinkFactory
    from recorder.rtms.client import ClientConfig, StreamTarget, audio_params, open_rtms_stream
    from recorder.rtms.events import AudioCodec, AudioPacket, CaptureEvent
    from recorder.rtms.signature import Product
    from recorder.rtms.urls import split_server_urls
    from recorder.service.app import capture_config_of

    _, codec, rate, channels = CODECS[spec.codec]
    params = audio_params(AudioCodec(codec), rate, channels, per_speaker=spec.per_speaker)
    tls = _client_tls(spec)
    client_config = ClientConfig(
        audio_params=params,
        allow_insecure_loopback=True,
        # bare trio-websocket is measured with its own reader task; the floor reads the raw
        # stream, which only a socket without a reader task leaves free.
        single_task_sockets=spec.single_task if spec.mode != "bare" else False,
        # The floor's TLS stream is trio's own, over trio's SocketStream, as bare's is.
        tls_read_when_ready=spec.tls_read_when_ready and spec.mode != "floor",
        ssl_context=tls,
    )
    capture_config = replace(
        capture_config_of(CaptureSection()), checkpoint_interval_s=spec.checkpoint_s
    )
    if spec.output == "voice":
        capture_config = replace(capture_config, output=VOICE)
    live: dict[int, _Live] = {}
    all_first = trio.Event()
    timeout_s = spec.ramp_s + spec.seconds / spec.sim_speed + 60

    with tempfile.TemporaryDirectory(prefix="rtms-fullpath-") as tmp:
        root = Path(tmp)
        keyring = build_keyring(
            KeyringSettings(recording_key_dir=root / "recording-keys", local_key_dir=root / "kek")
        )
        sinks = SpoolSinkFactory(root / "spool", keyring)
        gc.collect()
        rss_base = _rss_kib()
        window: dict[str, float] = {}
        lags: list[float] = []
        sim_stats: dict[str, Any] = {}
        checkpoints: list[CheckpointCoordinator] = []

        async def engage(index: int, info: dict[str, Any]) -> None:
            target = StreamTarget(
                product=Product.MEETING,
                instance_id=info["instance_id"],
                rtms_stream_id=info["rtms_stream_id"],
                server_urls=split_server_urls(info["server_urls"]),
                client_id=info["client_id"],
                client_secret=info["client_secret"],
            )
            await keyring.prepare_async(target.rtms_stream_id)
            state = live[index] = _Live(t0_ms=info["t0_ms"], opened=time.perf_counter())

            async def on_event(event: CaptureEvent) -> None:
                if state.first_frame_s is None and isinstance(event, AudioPacket):
                    state.first_frame_s = time.perf_counter() - state.opened
                    if len(live) == spec.engagements and all(
                        s.first_frame_s is not None for s in live.values()
                    ):
                        all_first.set()

            if spec.mode in RECEIVE_ONLY:
                _FIRST_MEDIA[target.rtms_stream_id] = lambda: on_first_media(state)
            async with open_rtms_stream(target, client_config) as stream:
                state.stream = stream
                state.consumed = stream.events
                if spec.client_only or spec.mode in RECEIVE_ONLY:
                    async for event in stream.events:
                        if state.first_frame_s is None:
                            await on_event(event)
                else:
                    state.manifest = await run_capture(
                        stream.events,
                        sinks,
                        recording_id=target.rtms_stream_id,
                        originator_reference=target.instance_id,
                        config=capture_config,
                        on_event=on_event,
                        inline=stream.inline if spec.single_task else None,
                        checkpoints=checkpoints[0],
                    )

        def on_first_media(state: _Live) -> None:
            if state.first_frame_s is None:
                state.first_frame_s = time.perf_counter() - state.opened
                if len(live) == spec.engagements and all(
                    s.first_frame_s is not None for s in live.values()
                ):
                    all_first.set()

        if spec.mode in RECEIVE_ONLY:
            _install_receive_only(spec.mode)

        def received() -> int:
            return sum(s.stream.stats.frames["audio"] for s in live.values() if s.stream)

        async def monitor() -> None:
            await all_first.wait()
            await trio.sleep(SETTLE_S)
            first_end_wall = min(s.t0_ms for s in live.values()) / 1000 + spec.seconds
            end = trio.current_time() + (first_end_wall - time.time()) - END_MARGIN_S
            window["cpu"], window["wall"] = time.process_time(), time.perf_counter()
            window["msgs"], window["waited"] = received(), _run_delay_s()
            window["main"] = time.thread_time()
            while trio.current_time() + LAG_SAMPLE_S < end:
                await trio.sleep(LAG_SAMPLE_S)
                if spec.per_speaker:
                    continue
                now_ms = time.time() * 1000
                for s in live.values():
                    queued = s.consumed.statistics().current_buffer_used
                    consumed = s.stream.stats.frames["audio"] - queued
                    lags.append(now_ms - (s.t0_ms + FRAME_MS * consumed))
            await trio.sleep_until(max(end, trio.current_time()))
            window["cpu"] = time.process_time() - window["cpu"]
            window["wall"] = time.perf_counter() - window["wall"]
            window["msgs"] = received() - window["msgs"]
            # Every stream is paced at one message per frame: what the floor is counted by
            # (the other modes print it beside their real count as a check).
            window["paced"] = spec.engagements * (1000 / FRAME_MS) * window["wall"]
            if spec.mode == "floor":
                window["msgs"] = round(window["paced"])
            window["waited"] = _run_delay_s() - window["waited"]
            window["main"] = time.thread_time() - window["main"]
            window["rss"] = _rss_kib()

        cpu_start = time.process_time()
        message = await _recv(conn)
        if message[0] != "ready":
            raise RuntimeError(f"simulator said {message!r}")
        tls_session = ""
        if tls is not None:
            try:
                with trio.fail_after(10):
                    tls_session = await _tls_session(message[1], tls)
            except BaseException:
                conn.send(("abort",))
                raise
        conn.send(("go",))
        with trio.fail_after(timeout_s):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(monitor)
                async with (
                    # One checkpoint ticker for every engagement, as ``recorder serve`` runs.
                    open_checkpoint_coordinator(capture_config.checkpoint_interval_s) as ticker,
                    trio.open_nursery() as engagements,
                ):
                    checkpoints.append(ticker)
                    while True:
                        message = await _recv(conn)
                        if message[0] == "target":
                            engagements.start_soon(engage, message[1], message[2])
                        elif message[0] == "done":
                            sim_stats = message[1]
                            break
                nursery.cancel_scope.cancel()
        cpu_total = time.process_time() - cpu_start

    total_msgs = received()
    dropped = sum(sum(s.stream.stats.dropped.values()) for s in live.values() if s.stream)
    manifest_dropped = late = recorded = gap_frames = 0
    recorded_rates: set[int] = set()
    # From the manifests' written rate (no manifest, no late samples to count).
    samples_per_frame = 1
    for s in live.values():
        if s.manifest is None:
            continue
        for counters in s.manifest.counters.values():
            manifest_dropped += counters.get("dropped_packets", 0)
            late += counters.get("late_samples", 0)
        for entry in s.manifest.audio_entries():
            samples = entry.end_sample - entry.start_sample
            gaps = sum(
                span.end_sample - span.start_sample for span in entry.spans if span.kind == "gap"
            )
            # Rounded: Opus priming trims a fraction of the first frame.
            recorded += round((samples - gaps) * 1000 / (entry.sample_rate * FRAME_MS))
            gap_frames += round(gaps * 1000 / (entry.sample_rate * FRAME_MS))
            samples_per_frame = entry.sample_rate * FRAME_MS // 1000
            recorded_rates.add(entry.sample_rate)
    connects = [s.first_frame_s for s in live.values() if s.first_frame_s is not None]
    return {
        "window": window,
        "lags_ms": lags,
        "connect_s": connects,
        "msgs": total_msgs,
        "cpu_total": cpu_total,
        "client_dropped": dropped,
        "reconnects": sum(s.stream.stats.reconnects for s in live.values() if s.stream),
        "gap_frames": gap_frames,
        "manifest_dropped": manifest_dropped,
        "late_samples": late,
        "late_frames": late // max(1, samples_per_frame),
        "recorded_frames": recorded,
        "recorded_rates": sorted(recorded_rates),
        "rss_base": rss_base,
        "tls": tls_session,
        "rss_hwm": _rss_kib("VmHWM"),
        "sim": sim_stats,
        "outcomes": sorted(
            {s.manifest.outcome for s in live.values() if s.manifest is not None}
            if not (spec.client_only or spec.mode in RECEIVE_ONLY)
            else {"client-only"}
        ),
    }


# --- receive-only reference clients (in the measured process) ---------------------------------

#: Modes where the media sockets only receive (the reference rows of the comparison).
RECEIVE_ONLY: Final = ("floor", "bare")
#: rtms_stream_id -> called once when that stream's media socket gets its first message.
_FIRST_MEDIA: dict[str, Any] = {}


def _install_receive_only(mode: str) -> None:
    """Replace the engine's pump for *open media sockets* with a receive-only loop.

    Signaling and both handshakes stay the real client's (so the simulator streams exactly as
    for the full path); once a media socket is open, ``bare`` only calls trio-websocket's
    ``get_message()`` and counts, ``floor`` only calls ``receive_some`` on the raw stream and
    counts bytes (messages are then counted at the paced rate, 50 per stream per second). Media
    keep-alives go unanswered: the simulator breaks a socket after 3 (30 s), longer than a run.
    Only ever called in the spawned measured process.
    """
    from recorder.rtms import _engine
    from recorder.rtms.protocol import MediaConnection

    original = _engine.Engine._pump

    async def receive_only(
        self: Any, ws: Any, conn: Any, handle: Any, *, until_open: bool = False
    ) -> None:
        if until_open or not isinstance(conn, MediaConnection):
            await original(self, ws, conn, handle, until_open=until_open)
            return
        frames = self._stats.frames
        first = _FIRST_MEDIA.pop(self._target.rtms_stream_id, None)
        if mode == "bare":
            get_message = ws.get_message
            while True:
                try:
                    await get_message()
                except Exception:
                    return
                frames["audio"] += 1
                if first is not None:
                    first()
                    first = None
        receive_some = ws._stream.receive_some
        size = ws._receive_buffer_size
        while True:
            try:
                data = await receive_some(size)
            except Exception:
                return
            if not data:
                return
            frames["floor_bytes"] += len(data)
            if first is not None:
                first()
                first = None

    _engine.Engine._pump = receive_only  # type: ignore[method-assign]


# --- the orchestrating parent -----------------------------------------------------------------


def run_config(spec: RunSpec, *, timeout_s: float) -> dict[str, Any]:
    """One configuration in two fresh processes; returns the measured process's results."""
    ctx = multiprocessing.get_context("spawn")
    # Functions referenced through the importable module, also when run as ``python -m``.
    module = importlib.import_module("recorder.bench.fullpath")
    sim_end, client_end = ctx.Pipe()
    result_recv, result_send = ctx.Pipe(duplex=False)
    simulator = ctx.Process(
        target=module.simulator_main, args=(sim_end, spec.as_dict()), name="fullpath-simulator"
    )
    measured = ctx.Process(
        target=module.measured_main,
        args=(client_end, result_send, spec.as_dict()),
        name="fullpath-measured",
    )
    simulator.start()
    measured.start()
    sim_end.close()
    client_end.close()
    result_send.close()
    try:
        if not result_recv.poll(timeout_s):
            return {"error": f"no result within {timeout_s:.0f} s"}
        try:
            outcome: dict[str, Any] = result_recv.recv()
        except EOFError:
            return {"error": "measured process died without a result"}
        return outcome
    finally:
        for process in (measured, simulator):
            process.join(10)
            if process.is_alive():
                process.terminate()
                process.join(5)
            if process.is_alive():
                process.kill()
                process.join()
        result_recv.close()


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


#: --modes name -> (RunSpec.mode, single_task, tls_read_when_ready, row label)
MODES: Final[dict[str, tuple[str, bool, bool, str]]] = {
    "floor": ("floor", True, True, "floor: trio receive_some"),
    "bare": ("bare", False, True, "bare trio-websocket recv"),
    "before": ("full", False, True, "full path, reader task"),
    "full": ("full", True, True, "full path, one task"),
    "rtms": ("rtms", True, True, "RTMS client only"),
    # TLS only: the one-task path with trio's SocketStream under the SSL stream.
    "full-trio-tls": ("full", True, False, "one task, trio default TLS"),
}
#: Rows that only mean something over TLS.
TLS_ONLY_MODES: Final = ("full-trio-tls",)
DEFAULT_MODES: Final = "floor,bare,before,full"
DEFAULT_TLS_MODES: Final = DEFAULT_MODES + ",full-trio-tls"


def _label(spec: RunSpec) -> str:
    label = CODECS[spec.codec][0] + (" per-speaker" if spec.per_speaker else "")
    if spec.client_only and spec.mode == "full":
        return label + " client-only"
    for mode, single_task, read_when_ready, text in MODES.values():
        if (mode, single_task) == (spec.mode, spec.single_task) and (
            read_when_ready == spec.tls_read_when_ready or not spec.tls_cert_file
        ):
            return f"{label} {text}"
    return f"{label} {spec.mode}"


#: A steady window shorter than this (the client lagged far behind real time, so every stream
#: started late) gives no per-message figure: the row says so and ``whole`` stands instead.
MIN_WINDOW_S: Final = 0.5


def _us_per_msg(out: dict[str, Any]) -> float | None:
    window = out.get("window") or {}
    if "error" in out or not window.get("msgs") or window.get("wall", 0) < MIN_WINDOW_S:
        return None
    return float(window["cpu"] / window["msgs"] * 1e6)


def _whole_us(spec: RunSpec, out: dict[str, Any]) -> float | None:
    """CPU over the whole run per message: connects and seals included, but robust to a
    client that lagged (the floor counts what the simulator sent)."""
    if "error" in out:
        return None
    msgs = out["sim"].get("frames_sent", 0) if spec.mode == "floor" else out["msgs"]
    return float(out["cpu_total"] / msgs * 1e6) if msgs else None


def _row(spec: RunSpec, out: dict[str, Any]) -> str:
    head = f"{_label(spec):44} K={spec.engagements:<4}"
    if "error" in out:
        return f"{head} ERROR {out['error']}"
    window = out["window"]
    us = _us_per_msg(out)
    if us is None:
        whole_us = _whole_us(spec, out)
        return (
            f"{head} no steady window of {MIN_WINDOW_S} s (window {window.get('wall', 0):.2f}"
            f" s: the client lagged or a stream never started); whole "
            f"{whole_us if whole_us is not None else float('nan'):5.1f} µs/msg"
        )
    workers = (window["cpu"] - window["main"]) / window["msgs"] * 1e6
    whole = _whole_us(spec, out) or float("nan")
    busy = window["cpu"] / window["wall"]
    per_core = spec.engagements / busy if busy > 0 else float("nan")
    sim = out["sim"]
    receive_only = spec.mode in RECEIVE_ONLY
    # Client-only records nothing: there, frames sent but never received are the loss.
    kept = out["msgs"] if spec.client_only or spec.mode == "rtms" else out["recorded_frames"]
    lost = "n/a" if receive_only else f"{sim.get('frames_sent', 0) - kept:+d}"
    lags = out["lags_ms"]
    rss = (window["rss"] - out["rss_base"]) / spec.engagements
    connect = out["connect_s"]
    lag = f"{_median(lags):4.0f}/{max(lags):4.0f}" if lags and not receive_only else "   n/a   "
    counted = "msgs paced" if spec.mode == "floor" else f"msgs {out['msgs']}"
    rates = "/".join(str(rate) for rate in out.get("recorded_rates", ()))
    written = f" written at {rates} Hz" if rates else ""
    return (
        f"{head} {us:6.1f} µs/msg (threads {workers:4.1f}, whole {whole:5.1f}) "
        f"{busy * 100:5.1f}%core "
        f"(waited {window['waited'] / window['wall'] * 100:4.1f}%) "
        f"{per_core:5.0f} streams/core | lost {lost} drop {out['client_dropped']}"
        f"/{out['manifest_dropped']} late {out['late_frames']} gaps {out.get('gap_frames', 0)} "
        f"reconnects {out.get('reconnects', 0)} lag {lag} ms | "
        f"RSS {rss:5.0f} KiB/eng | connect {_median(connect) * 1000:4.0f}/"
        f"{max(connect, default=float('nan')) * 1000:4.0f} ms | "
        f"sim {sim.get('busy', 0) * 100:3.0f}%core "
        f"sent {sim.get('frames_sent', 0)} rec {out['recorded_frames']}{written} {counted} "
        f"(paced {window.get('paced', 0):.0f} in window, counted {window['msgs']:.0f})"
        + (f" | {out['tls']}" if out.get("tls") else "")
    )


def _ratio(us: float | None, reference: float | None) -> str:
    if us is None or not reference:
        return "  n/a"
    return f"{us / reference:5.2f}x"


#: Issue 13's same-run table: Zoom's C++ SDK (receive only) 45 µs where bare trio-websocket
#: took 57 µs. The SDK is not run here; ``x SDK`` scales this run's bare row by that ratio.
SDK_PER_BARE: Final = 45.0 / 57.0


def _comparison(
    codec: str, k: int, results: dict[str, float | None], wholes: dict[str, float | None]
) -> list[str]:
    """The side-by-side summary of one codec at one K: every row as µs and as ratios, over
    the steady window and (in brackets) over the whole run."""
    lines = [
        f"== {CODECS[codec][0]}, K={k}, this run: µs/msg  x bare  x floor  x SDK(est.)"
        "   [whole run: µs/msg  x bare]",
    ]
    bare, floor = results.get("bare"), results.get("floor")
    sdk = bare * SDK_PER_BARE if bare is not None else None
    whole_bare = wholes.get("bare")
    for name, us in results.items():
        figure = f"{us:6.1f}" if us is not None else "   n/a"
        whole = wholes.get(name)
        whole_figure = f"{whole:6.1f}" if whole is not None else "   n/a"
        lines.append(
            f"   {MODES[name][3]:28} {figure}  {_ratio(us, bare)}  {_ratio(us, floor)}  "
            f"{_ratio(us, sdk)}   [{whole_figure}  {_ratio(whole, whole_bare)}]"
        )
    return lines


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def _run_table(
    args: argparse.Namespace,
    codecs: Sequence[str],
    levels: Sequence[int],
    modes: Sequence[str],
    certificate: SelfSignedCertificate | None,
) -> bool:
    """Every row of every codec and K, and the side-by-side comparisons; True if one failed.
    With a certificate, every row runs over TLS: the simulator serves it, and the measured
    side trusts it alone."""
    cert_file = str(certificate.cert_file) if certificate is not None else ""
    key_file = str(certificate.key_file) if certificate is not None else ""
    failed = False
    for codec in codecs:
        for k in levels:
            results: dict[str, float | None] = {}
            wholes: dict[str, float | None] = {}
            for name in modes:
                mode, single_task, read_when_ready, _ = MODES[name]
                spec = RunSpec(
                    codec=codec,
                    engagements=k,
                    seconds=args.seconds,
                    ramp_s=args.ramp,
                    pace_batch_frames=args.pace_batch,
                    client_cpu=args.client_cpu,
                    server_cpu=args.server_cpu,
                    client_only=args.client_only,
                    per_speaker=args.per_speaker,
                    checkpoint_s=args.checkpoint_s,
                    mode=mode,
                    single_task=single_task,
                    tls_read_when_ready=read_when_ready,
                    log_file=args.log_file,
                    output=args.output,
                    tls_cert_file=cert_file,
                    tls_key_file=key_file,
                    tls_ca_file=cert_file,
                )
                out = run_config(spec, timeout_s=args.ramp + args.seconds + 90)
                failed = failed or "error" in out
                results[name] = _us_per_msg(out)
                wholes[name] = _whole_us(spec, out)
                print(_row(spec, out))
                sys.stdout.flush()
            if len(results) > 1:
                print("\n".join(_comparison(codec, k, results, wholes)))
                sys.stdout.flush()
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codecs", default="l16,g711,opus", help="of l16, g711, opus")
    parser.add_argument("--engagements", default="150", help="concurrency levels K")
    parser.add_argument(
        "--modes",
        default=None,
        help=f"rows per codec and K, of {','.join(MODES)} (before = reader-task sockets; "
        f"full-trio-tls = one task over trio's default TLS transport, --tls only); default "
        f"{DEFAULT_MODES}, with --tls {DEFAULT_TLS_MODES}",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="wss://: the simulator serves a self-signed certificate made for the run, which "
        "the measured side trusts (verification on); every row reads through TLS",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="also print the 1 -> N workers scaling factor (runs `bench workers scale`)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each engagement")
    parser.add_argument("--ramp", type=float, default=1.5, help="seconds to start all K")
    parser.add_argument("--pace-batch", type=int, default=1, help="simulator pace_batch_frames")
    parser.add_argument("--client-cpu", type=int, default=0)
    parser.add_argument("--server-cpu", type=int, default=1)
    parser.add_argument("--per-speaker", action="store_true", help="3 speakers, data_opt 2")
    parser.add_argument("--client-only", action="store_true", help="no capture: client alone")
    parser.add_argument(
        "--checkpoint-s", type=float, default=1.0, help="capture checkpoint interval (analysis)"
    )
    parser.add_argument(
        "--output",
        default="service",
        choices=sorted(OUTPUTS),
        help="what the capture writes: service = the shipped [capture] (source rate), "
        "voice = 16 kHz mono",
    )
    parser.add_argument("--log-file", default="", help="the measured process's INFO log")
    parser.add_argument("--quick", action="store_true", help="smoke run: K=25, 4 s, ~20 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.engagements, args.seconds, args.ramp = "25", 4.0, 0.5
    if args.modes is None:
        args.modes = DEFAULT_TLS_MODES if args.tls else DEFAULT_MODES
    modes = [m for m in args.modes.split(",") if m]
    if args.client_only:
        modes = ["rtms"]
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"unknown mode in {modes}; choose from {list(MODES)}")
    if not args.tls and any(m in TLS_ONLY_MODES for m in modes):
        parser.error(f"mode(s) {list(TLS_ONLY_MODES)} need --tls")
    codecs = [c for c in args.codecs.split(",") if c]
    unknown = [c for c in codecs if c not in CODECS]
    if unknown:
        parser.error(f"unknown codec(s) {unknown}; choose from {sorted(CODECS)}")
    levels = _ints(args.engagements)
    if not levels or min(levels) < 1 or args.seconds <= 0:
        parser.error("engagements and seconds must be positive")
    if args.seconds - args.ramp < 2 * (SETTLE_S + END_MARGIN_S):
        parser.error("--seconds must exceed --ramp by at least 2 s (the steady window)")

    transport = "TLS WebSockets, wss://" if args.tls else "WebSockets, ws://, no TLS"
    print(
        "full recording path per audio message: simulator process pinned to cpu"
        f"{args.server_cpu} -> RTMS client (loopback {transport}) -> run_capture -> encrypting "
        f"spool (local keys, fsync checkpoints) in one trio process pinned to cpu{args.client_cpu}"
    )
    if args.tls:
        print(
            "TLS: every socket of every row (signaling and media) is wss://; the simulator "
            "serves only TLS, with a self-signed certificate made for this run, which the "
            "measured side alone trusts (certificate and hostname verified); each row ends "
            "with the protocol and cipher negotiated"
        )
    print(
        f"{args.seconds:.0f} s engagements at real speed, started over {args.ramp:.1f} s, "
        f"pace_batch_frames {args.pace_batch}; NO upload (perf-baseline §6/§7: +1-2 µs/msg); "
        "ratios: x bare = to trio-websocket receive-only, x floor = to raw trio receive_some, "
        f"x SDK(est.) = to Zoom's C++ SDK estimated as bare x {SDK_PER_BARE:.2f} (issue 13's "
        "same-run 45/57 µs; DESIGN's 67-71 µs is another day's absolute figure)"
    )
    print(
        "columns: CPU µs per audio msg in the steady window (threads = the part spent in worker "
        "threads; whole = over the whole run) | lost = frames sent - "
        "recorded, drop = client/manifest dropped, late = late frames, gaps = frames the "
        "manifest lists as gaps (with a cause), reconnects = client reconnects, "
        "lag = median/max ms behind real time | VmRSS growth per engagement | "
        "connect to first recorded frame median/max; "
        "waited = share of the window the trio thread was runnable but another process had "
        "its core (noise from other work on the machine)"
    )
    print(f"output ({args.output}): {OUTPUTS[args.output]}")
    sys.stdout.flush()
    with tempfile.TemporaryDirectory(prefix="rtms-fullpath-tls-") as tls_dir:
        certificate = SelfSignedCertificate.create(Path(tls_dir)) if args.tls else None
        failed = _run_table(args, codecs, levels, modes, certificate)
    if args.workers > 1:
        # Scaling needs the real pre-forked tree (one socket, the catalog's work queue), not this
        # bench's single measured process: `bench workers scale` measures it, on L16 streams.
        from recorder.bench import workers

        print(f"scaling: 1 and {args.workers} workers of `recorder serve` (bench workers scale)")
        sys.stdout.flush()
        scale = [
            "scale",
            f"--workers=1,{args.workers}",
            f"--engagements={max(levels)}",
            f"--seconds={args.seconds}",
            f"--ramp={args.ramp}",
        ]
        failed = workers.main(scale) != 0 or failed
    else:
        print("scaling: not measured (--workers 1; --workers 2 runs `bench workers scale`)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
