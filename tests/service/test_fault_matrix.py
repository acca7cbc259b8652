"""The fault matrix of issue 9: real ``recorder serve`` processes, each driven into one fault,
with the audio lost measured in ms against what the simulator (Zoom) sent.

* SIGKILL / SIGTERM of the process that answered 200, before it started the engagement:
  0 calls lost, another process starts it from the catalog (the outbox).
* Two workers on one host (same host name and uid): one owner, one connection.
* One worker's clock 31 s fast: never two connections to one stream (leases use the catalog's
  clock).
* The catalog partitioned away from the owner: it fences itself before the other takes over;
  never two connections.
* The catalog unavailable mid-call (shorter than the fence): recording continues, 0 ms lost,
  catalog reconciled after.
* SIGKILL of the owner mid-segment (local store) and mid-upload (moto's S3 server, the PUT held
  in a proxy at the kill): the other process takes over, the killed one restarts and recovers
  its ``.part`` and uploads its pending job; 0 calls lost, at most 1.2 s of audio.

``ops/INSTALL.md`` shows the measured table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from recorder.catalog.aio import AsyncCatalog, open_configured_async_catalog
from recorder.catalog.base import RecordingDetail, RecordingRow, RecordingStatus, UploadState
from recorder.config import CatalogConfig, CatalogKind
from recorder.service.components import CLOCK_OFFSET_ENV
from recorder.simulator.engagement import Engagement as SimEngagement
from recorder.simulator.scenario import Action, Step
from recorder.simulator.simulator import SimulatorConfig, open_simulator

from .helpers_fleet import (
    FanOut,
    FleetSecrets,
    ServeProcess,
    fleet_simulator,
    free_port,
    meeting,
    poll,
    segments_of,
    serve_config_text,
    serve_processes,
    subprocess_env,
    track_seconds,
    wall_ms,
)
from .test_fleet import TRACK, kill_mid_segment, settled_detail
from .test_outages import new_locked_bucket

pytestmark = [pytest.mark.slow]

#: Invariant 6 as measured: a crash loses at most about 1.2 s of received audio.
MAX_LOST_MS = 1200


def make_process(
    tmp_path: Path,
    name: str,
    secrets_: FleetSecrets,
    *,
    owner: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    sqlite_path: Path | None = None,
    **config: object,
) -> ServeProcess:
    port = free_port()
    path = tmp_path / f"{name}.toml"
    text = serve_config_text(state_dir=tmp_path / name, port=port, **config)  # type: ignore[arg-type]
    if sqlite_path is not None:
        text += f'[catalog]\nkind = "sqlite"\nsqlite_path = "{sqlite_path}"\n'
    path.write_text(text)
    env = subprocess_env(secrets_, owner=owner or f"recorder-{name}")
    env.update(extra_env or {})
    return ServeProcess(name, path, port, env, tmp_path / f"{name}.log")


@asynccontextmanager
async def catalog_at(dsn: str | None, sqlite_path: Path | None) -> AsyncIterator[AsyncCatalog]:
    if dsn is not None:
        config = CatalogConfig(kind=CatalogKind.POSTGRES, postgres_dsn=dsn)
    else:
        config = CatalogConfig(kind=CatalogKind.SQLITE, sqlite_path=sqlite_path)
    catalog = await open_configured_async_catalog(config, now_ms=wall_ms())
    try:
        yield catalog
    finally:
        await catalog.aclose()


def lost_ms(sim: SimEngagement, detail: RecordingDetail) -> float:
    """What Zoom sent on the track minus what the catalog holds as recorded audio (printed:
    the figures of the table in ops/INSTALL.md come from ``pytest -s`` of this module)."""
    sent_ms = sim.scenario.duration_s * 1000
    # The union of the segments' spans: audio two owners both recorded counts once.
    covered_ms = 0
    reached_ms = None
    for segment in segments_of(detail, TRACK):
        start = segment.start_ms if reached_ms is None else max(segment.start_ms, reached_ms)
        covered_ms += max(0, segment.end_ms - start)
        reached_ms = max(reached_ms or segment.end_ms, segment.end_ms)
    lost = sent_ms - min(covered_ms, track_seconds(detail, TRACK) * 1000)
    print(
        f"fault-matrix {sim.scenario.name}: sent_ms={sent_ms:.0f} lost_ms={lost:.0f}"
        f" connections={sim.stats.signaling_accepted} max_open={sim.stats.signaling_max_open}"
    )
    return lost


class KillAfterAck:
    """Zoom's delivery to ONE process, which is stopped (SIGKILL or SIGTERM) the moment it has
    answered 200 to ``rtms_started``: before it can have started the engagement."""

    def __init__(self, target: ServeProcess, *, graceful: bool) -> None:
        self.target = target
        self.graceful = graceful
        self.client = httpx.AsyncClient()
        self.acked_started = False

    async def __call__(self, headers: Mapping[str, str], body: bytes) -> int:
        if not self.target.running:
            return 503
        try:
            response = await self.client.post(
                self.target.webhook_url, content=body, headers=dict(headers), timeout=2.5
            )
        except httpx.HTTPError:
            return 503
        if b"rtms_started" in body and response.status_code == 200 and not self.acked_started:
            self.acked_started = True
            if self.graceful:
                self.target.terminate()
            else:
                self.target.kill()
        return response.status_code

    async def aclose(self) -> None:
        await self.client.aclose()


@pytest.mark.parametrize("graceful", [False, True], ids=["sigkill", "sigterm-drain"])
@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_stopping_the_process_that_acknowledged_rtms_started_loses_no_call(
    tmp_path: Path, request: pytest.FixtureRequest, engine: str, graceful: bool
) -> None:
    secrets_ = FleetSecrets()
    dsn: str | None = request.getfixturevalue("postgres_dsn") if engine == "postgres" else None
    sqlite_path = None if dsn else tmp_path / "catalog.sqlite3"
    shared: dict[str, object] = {"store_dir": tmp_path / "store", "key_dir": tmp_path / "keys"}
    if dsn:
        shared["postgres_dsn"] = dsn
    else:
        shared["sqlite_path"] = sqlite_path
    a = make_process(tmp_path, "a", secrets_, **shared)
    b = make_process(tmp_path, "b", secrets_, **shared)
    delivery = KillAfterAck(a, graceful=graceful)
    sim_config = SimulatorConfig(webhook_handler=delivery, secret_token=secrets_.secret_token)
    with trio.fail_after(90):
        async with (
            serve_processes(a, b),
            catalog_at(dsn, sqlite_path) as catalog,
            open_simulator(sim_config) as sim,
        ):
            # Longer than the drain (5 s) plus the closing handshake, so that the stream is still
            # live when the drained process hands its lease back.
            call = await sim.start(meeting(secrets_, name="acked", seconds=14))
            await a.wait()
            assert delivery.acked_started
            await call.finished.wait()
            detail = await settled_detail(catalog, call.scenario.rtms_stream_id)
            assert detail.recording.status is RecordingStatus.COMPLETE
            assert call.stats.signaling_max_open == 1
            assert lost_ms(call, detail) <= MAX_LOST_MS, lost_ms(call, detail)
            assert b.running
    await delivery.aclose()


async def test_two_workers_on_one_host_have_one_owner(tmp_path: Path, postgres_dsn: str) -> None:
    """Same host name and uid (what the owner used to be): still two owners, one wins."""
    secrets_ = FleetSecrets()
    shared = {"postgres_dsn": postgres_dsn, "store_dir": tmp_path / "store", "key_dir": tmp_path}
    procs = [
        make_process(tmp_path, name, secrets_, owner="host-1", lease_ttl_s=1.5, **shared)  # type: ignore[arg-type]
        for name in ("w1", "w2")
    ]
    fan = FanOut([p.webhook_url for p in procs])
    with trio.fail_after(90):
        async with (
            serve_processes(*procs),
            catalog_at(postgres_dsn, None) as catalog,
            open_simulator(fleet_simulator(fan, secrets_)) as sim,
        ):
            call = await sim.start(meeting(secrets_, name="one-host", seconds=6))
            await call.finished.wait()
            detail = await settled_detail(catalog, call.scenario.rtms_stream_id)
            stream = await catalog.get_stream(call.scenario.rtms_stream_id)
            assert stream is not None
            assert stream.lease_epoch == 1, "nobody took the stream from its owner"
            assert call.stats.signaling_accepted == 1
            assert call.stats.signaling_max_open == 1
            assert lost_ms(call, detail) <= 50
            # A second process on the same state directory is refused, not a second owner.
            twin = ServeProcess(
                "twin", procs[0].config_path, free_port(), procs[0].env, tmp_path / "twin.log"
            )
            await twin.start()
            assert await twin.wait() != 0
            assert "in use by another recorder process" in twin.log_tail()
    await fan.aclose()


async def test_a_worker_31_s_fast_never_opens_a_second_connection(
    tmp_path: Path, postgres_dsn: str
) -> None:
    secrets_ = FleetSecrets()
    shared = {"postgres_dsn": postgres_dsn, "store_dir": tmp_path / "store", "key_dir": tmp_path}
    honest = make_process(tmp_path, "honest", secrets_, lease_ttl_s=2.0, **shared)  # type: ignore[arg-type]
    fast = make_process(
        tmp_path,
        "fast",
        secrets_,
        lease_ttl_s=2.0,
        extra_env={CLOCK_OFFSET_ENV: "31000"},
        **shared,  # type: ignore[arg-type]
    )
    # Zoom reaches the honest worker first; the fast one only sees the row in the catalog.
    fan = FanOut([honest.webhook_url])
    with trio.fail_after(90):
        async with (
            serve_processes(honest, fast),
            catalog_at(postgres_dsn, None) as catalog,
            open_simulator(fleet_simulator(fan, secrets_)) as sim,
        ):
            call = await sim.start(meeting(secrets_, name="skew", seconds=8))
            await call.finished.wait()
            detail = await settled_detail(catalog, call.scenario.rtms_stream_id)
            stream = await catalog.get_stream(call.scenario.rtms_stream_id)
            assert stream is not None
            assert stream.lease_epoch == 1
            assert call.stats.signaling_accepted == 1
            assert call.stats.signaling_max_open == 1
            assert lost_ms(call, detail) <= 50
    await fan.aclose()


class TcpProxy:
    """A TCP proxy the test can cut: the owner's only way to the catalog (a partition)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.cut = False
        self._scope = trio.CancelScope()
        self._conns: list[trio.SocketStream] = []
        self._flowing = trio.Event()
        self._flowing.set()
        #: Bytes a client sent while the proxy held them (a request in flight, not forwarded).
        self.held_bytes = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with self._scope:
            listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
            task_status.started()
            await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        if self.cut:
            await client.aclose()
            return
        server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        self._conns += [client, server]
        async with client, server, trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, client, server, nursery.cancel_scope)
            nursery.start_soon(self._pump, server, client, nursery.cancel_scope)

    async def _pump(
        self, src: trio.SocketStream, dst: trio.SocketStream, scope: trio.CancelScope
    ) -> None:
        try:
            while data := await src.receive_some(65536):
                if not self._flowing.is_set():
                    self.held_bytes += len(data)
                    await self._flowing.wait()
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()

    async def partition(self) -> None:
        """Drop every connection and refuse new ones (silently: like a network partition)."""
        self.cut = True
        for conn in self._conns:
            with trio.CancelScope(shield=True):
                await conn.aclose()
        self._conns.clear()

    def heal(self) -> None:
        self.cut = False

    def hold(self) -> None:
        """Keep connections open but forward nothing more: requests in flight hang."""
        self._flowing = trio.Event()

    def release(self) -> None:
        self._flowing.set()

    def stop(self) -> None:
        self._scope.cancel()


async def test_a_partitioned_owner_fences_itself_before_the_other_takes_over(
    tmp_path: Path, postgres_dsn: str
) -> None:
    secrets_ = FleetSecrets()
    proxy = TcpProxy(5432)
    assert "127.0.0.1:5432" in postgres_dsn
    proxied = postgres_dsn.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    common = {"store_dir": tmp_path / "store", "key_dir": tmp_path, "lease_ttl_s": 3.0}
    owner = make_process(tmp_path, "cut", secrets_, postgres_dsn=proxied, **common)  # type: ignore[arg-type]
    other = make_process(tmp_path, "other", secrets_, postgres_dsn=postgres_dsn, **common)  # type: ignore[arg-type]
    # Zoom reaches only the owner-to-be; the other sees the stream through the catalog.
    fan = FanOut([owner.webhook_url])
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(proxy.run)
            async with (
                serve_processes(owner, other),
                catalog_at(postgres_dsn, None) as catalog,
                open_simulator(fleet_simulator(fan, secrets_)) as sim,
            ):
                call = await sim.start(meeting(secrets_, name="partition", seconds=16))
                stream_id = call.scenario.rtms_stream_id

                async def owned() -> str | None:
                    row = await catalog.get_stream(stream_id)
                    return row.lease_owner if row is not None else None

                first_owner = await poll(owned)
                assert first_owner.startswith("recorder-cut/")
                await call.wait_for(lambda s: s.signaling_open == 1)

                # The client connects while the recording row is written: cut the owner off
                # once it records (a cut before the row is a failed start, not this case).
                async def recording() -> list[RecordingRow] | None:
                    return await catalog.search(stream_id=stream_id) or None

                await poll(recording)
                await proxy.partition()
                # The other process takes over once the lease ran out on the catalog's clock.
                await call.wait_for(lambda s: s.signaling_accepted >= 2)
                assert "fencing" in owner.log_tail(200)
                async with httpx.AsyncClient() as client:

                    async def fenced_counted() -> bool | None:
                        metrics = (await client.get(f"{owner.base_url}/metrics")).text
                        return 'rtmsrec_leases_lost_total{cause="fenced"} 1.0' in metrics or None

                    await poll(fenced_counted)
                # The partition heals: the fenced owner's journaled evidence (its last segments,
                # sealed when it fenced itself) reaches the catalog through its sweep.
                proxy.heal()
                await call.finished.wait()
                await settled_detail(catalog, stream_id)

                async def reconciled() -> RecordingDetail | None:
                    rows = await catalog.search(stream_id=stream_id)
                    detail = await catalog.show(rows[0].recording_id)
                    assert detail is not None
                    covered = track_seconds(detail, TRACK) * 1000
                    return detail if covered >= 16_000 - MAX_LOST_MS else None

                with trio.move_on_after(30):
                    await poll(reconciled, interval_s=0.5)
                detail = await settled_detail(catalog, stream_id)
                row = await catalog.get_stream(stream_id)
                assert row is not None
                assert row.lease_epoch >= 2
                assert call.stats.signaling_max_open == 1, "two connections at once"
                assert owner.running, "the partitioned process stays up"
                assert lost_ms(call, detail) <= MAX_LOST_MS, lost_ms(call, detail)
            proxy.stop()
    await fan.aclose()


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
@pytest.mark.timeout(180)
async def test_catalog_unavailable_mid_call_loses_nothing_and_is_reconciled(
    tmp_path: Path, request: pytest.FixtureRequest, engine: str
) -> None:
    """The catalog goes away for 30 s mid-call (issue 9's figure): longer than the recorder's 5 s
    catalog write bound, within what the default 45 s lease rides out. SQLite: another
    connection holds the write lock (writes wait, then go in late). PostgreSQL: the recorder's
    only way to the server, a proxy, drops every connection and refuses new ones (writes fail
    at once and are journaled); the machine's server itself is never stopped."""
    secrets_ = FleetSecrets()
    proxy = TcpProxy(5432)
    common: dict[str, object] = {
        "key_dir": tmp_path / "keys",
        "lease_ttl_s": 45.0,
        "segment_seconds": 1,
    }
    dsn: str | None = None
    sqlite_path: Path | None = None
    if engine == "postgres":
        dsn = request.getfixturevalue("postgres_dsn")
        assert dsn is not None
        assert "127.0.0.1:5432" in dsn
        common["postgres_dsn"] = dsn.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    else:
        sqlite_path = tmp_path / "catalog.sqlite3"
        common["sqlite_path"] = sqlite_path
    proc = make_process(tmp_path, "solo", secrets_, **common)  # type: ignore[arg-type]
    fan = FanOut([proc.webhook_url])
    with trio.fail_after(150):
        async with trio.open_nursery() as nursery:
            await nursery.start(proxy.run)
            async with (
                serve_processes(proc),
                catalog_at(dsn, sqlite_path) as catalog,
                open_simulator(fleet_simulator(fan, secrets_)) as sim,
            ):
                call = await sim.start(meeting(secrets_, name="outage", seconds=40))
                await call.wait_for(lambda s: (s.track(TRACK).packets or 0) >= 100)
                outage_started = wall_ms()
                if sqlite_path is not None:
                    blocker = sqlite3.connect(sqlite_path, isolation_level=None, timeout=10)
                    blocker.execute("BEGIN EXCLUSIVE")
                else:
                    await proxy.partition()
                await trio.sleep(30)  # the outage itself: a fixed fault duration, not a wait
                if sqlite_path is not None:
                    blocker.execute("ROLLBACK")
                    blocker.close()
                else:
                    proxy.heal()
                assert wall_ms() - outage_started >= 30_000
                await call.finished.wait()
                detail = await settled_detail(catalog, call.scenario.rtms_stream_id)
                assert detail.recording.status is RecordingStatus.COMPLETE
                assert call.stats.signaling_accepted == 1, "recording went on through the outage"
                assert lost_ms(call, detail) <= 50, lost_ms(call, detail)
                assert [g for g in detail.gaps if g.track == TRACK] == []
                if engine == "postgres":
                    log = proc.log_tail(20_000)
                    assert "intent journaled" in log
                    assert "journaled intents reconciled" in log
                    assert not list((tmp_path / "solo" / "evidence-journal").iterdir())
            proxy.stop()
    await fan.aclose()


async def test_rtms_interrupted_recovers_in_one_reconnect_without_a_spurious_failover(
    tmp_path: Path,
) -> None:
    """The interrupted webhook makes the row's newest event newer than the start, with the old
    URLs; a lease keeper that took that for a failover reconnected a healthy stream on its next
    renew. Renews here come every 2 s (about 2, 4, 6 s into the call); the drop at 2.5 s has
    recovered (0.2 s backoff) well before the renew at 4 s looks at the row."""
    secrets_ = FleetSecrets()
    proc = make_process(tmp_path, "solo", secrets_, key_dir=tmp_path / "keys", lease_ttl_s=6.0)
    fan = FanOut([proc.webhook_url])
    scenario_steps = (Step(2.5, Action.DROP_SIGNALING),)
    with trio.fail_after(60):
        async with (
            serve_processes(proc),
            catalog_at(None, tmp_path / "solo" / "catalog.sqlite3") as catalog,
            open_simulator(fleet_simulator(fan, secrets_)) as sim,
        ):
            call = await sim.start(
                meeting(secrets_, name="interrupted", seconds=8, steps=scenario_steps)
            )
            await call.finished.wait()
            detail = await settled_detail(catalog, call.scenario.rtms_stream_id)
            assert call.stats.signaling_accepted == 2, "one reconnect, no failover after it"
            assert call.stats.signaling_max_open == 1
            assert detail.recording.status is RecordingStatus.COMPLETE
            assert lost_ms(call, detail) <= 50, lost_ms(call, detail)
    await fan.aclose()


@pytest.mark.parametrize("fault", ["mid-segment", "mid-upload"])
@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_sigkill_of_the_owner_mid_segment_or_mid_upload_loses_no_call(
    tmp_path: Path, request: pytest.FixtureRequest, engine: str, fault: str
) -> None:
    """The owner is SIGKILLed a second past its last sealed segment (``mid-segment``), or while
    the PUT of a sealed segment to S3 is in flight (``mid-upload``: a proxy in front of moto
    holds the request's bytes at the kill). The other process takes over; the killed one is
    restarted (systemd's ``Restart=``), recovers its ``.part`` and finishes its spooled upload."""
    secrets_ = FleetSecrets()
    dsn: str | None = request.getfixturevalue("postgres_dsn") if engine == "postgres" else None
    sqlite_path = None if dsn else tmp_path / "catalog.sqlite3"
    shared: dict[str, object] = {"key_dir": tmp_path / "keys"}
    if dsn:
        shared["postgres_dsn"] = dsn
    else:
        shared["sqlite_path"] = sqlite_path
    proxy: TcpProxy | None = None
    if fault == "mid-upload":
        endpoint: str = request.getfixturevalue("moto_endpoint")
        proxy = TcpProxy(int(endpoint.rsplit(":", 1)[1]))
        shared["s3_endpoint"] = f"http://127.0.0.1:{proxy.port}"
        shared["s3_bucket"] = new_locked_bucket(endpoint)
    else:
        shared["store_dir"] = tmp_path / "store"
    procs = [make_process(tmp_path, name, secrets_, **shared) for name in ("a", "b")]
    fan = FanOut([p.webhook_url for p in procs])
    seconds = 14
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            if proxy is not None:
                await nursery.start(proxy.run)
            async with (
                serve_processes(*procs),
                catalog_at(dsn, sqlite_path) as catalog,
                open_simulator(fleet_simulator(fan, secrets_)) as sim,
            ):
                call = await sim.start(meeting(secrets_, name=fault, seconds=seconds))
                stream_id = call.scenario.rtms_stream_id

                async def first_sealed() -> tuple[str, int] | None:
                    rows = await catalog.search(stream_id=stream_id)
                    stream = await catalog.get_stream(stream_id)
                    if not rows or stream is None or stream.lease_owner is None:
                        return None
                    detail = await catalog.show(rows[0].recording_id)
                    assert detail is not None
                    verified = [
                        s for s in detail.segments if s.upload_state is UploadState.VERIFIED
                    ]
                    if not verified:
                        return None
                    return stream.lease_owner, max(s.end_ms for s in detail.segments)

                owner, sealed_until_ms = await poll(first_sealed)
                killed = next(p for p in procs if owner.startswith(f"recorder-{p.name}/"))
                survivor = next(p for p in procs if p is not killed)
                if proxy is None:
                    await kill_mid_segment(killed, call, sealed_until_ms)
                else:
                    proxy.hold()

                    async def upload_in_flight() -> bool | None:
                        rows = await catalog.search(stream_id=stream_id)
                        detail = await catalog.show(rows[0].recording_id)
                        assert detail is not None
                        pending = [
                            s for s in detail.segments if s.upload_state is UploadState.PENDING
                        ]
                        return (bool(pending) and proxy.held_bytes > 0) or None

                    await poll(upload_in_flight)
                    killed.kill()
                    await killed.wait()
                    proxy.release()
                assert not call.finished.is_set(), "the call must still be live at the kill"
                await call.wait_for(lambda s: s.reconnects >= 1)
                await call.finished.wait()
                # The killed process comes back: its partial segment and spooled jobs follow.
                async with serve_processes(killed):

                    async def recovered() -> RecordingDetail | None:
                        detail = await settled_detail(catalog, stream_id)
                        covered = track_seconds(detail, TRACK) * 1000
                        return detail if covered >= seconds * 1000 - MAX_LOST_MS else None

                    with trio.move_on_after(30):
                        await poll(recovered, interval_s=0.5)
                    detail = await settled_detail(catalog, stream_id)
                assert detail.recording.status is RecordingStatus.COMPLETE, "0 calls lost"
                if fault == "mid-segment":
                    assert any(s.recovered for s in detail.segments), "the .part was recovered"
                assert call.stats.signaling_max_open == 1
                assert survivor.running
                assert lost_ms(call, detail) <= MAX_LOST_MS, lost_ms(call, detail)
            if proxy is not None:
                proxy.stop()
    await fan.aclose()
