"""S3 unreachable while segments are produced: nothing lost, and everything lands once it is back.

Uses its own ``ThreadedMotoServer`` on a fixed free port so it can be stopped and started again;
moto keeps its backend state in-process, so the bucket and objects survive the restart.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from moto.server import ThreadedMotoServer

from recorder.spool.spool import Spool, UploadJob
from recorder.spool.uploader import Backoff, UploaderStats, run_uploader
from recorder.store.base import LockMode

from ..store.s3_helpers import new_locked_bucket, s3_store
from .fakes import WrappedStore
from .helpers import Uploaded, sealed_file


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RestartableMoto:
    def __init__(self) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server: ThreadedMotoServer | None = None

    def start(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.stop()
        # moto's stop() leaves the listening socket open (connections would hang instead of
        # being refused, and the port could not be bound again); close it like a dead server.
        self._server._server.server_close()  # type: ignore[union-attr]
        self._server = None


@pytest.fixture
def moto_on_fixed_port() -> Iterator[RestartableMoto]:
    server = RestartableMoto()
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_s3_outage_spools_then_uploads_and_verifies(
    tmp_path: Path, moto_on_fixed_port: RestartableMoto
) -> None:
    moto = moto_on_fixed_port
    bucket = await trio.to_thread.run_sync(new_locked_bucket, moto.endpoint, "outage")
    s3 = await trio.to_thread.run_sync(
        lambda: s3_store(moto.endpoint, bucket, max_attempts=1, connect_timeout_s=1.0)
    )
    store = WrappedStore(s3)
    spool = Spool(tmp_path / "spool")
    uploaded = Uploaded()
    jobs: list[UploadJob] = []
    await trio.to_thread.run_sync(moto.stop)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            stats: UploaderStats = await nursery.start(
                lambda task_status: run_uploader(
                    spool,
                    store,
                    on_uploaded=uploaded,
                    backoff=Backoff(initial_s=0.02, max_s=0.2),
                    task_status=task_status,
                )
            )
            for index in range(5):
                source, job = sealed_file(tmp_path / "out", index, size=20_000 + index)
                await spool.enqueue(source, job)
                jobs.append(job)
            await stats.wait_until(lambda s: s.upload_failures >= 3)

            during = await spool.stats()
            assert during.pending_count == 5
            assert during.pending_bytes == sum(job.size for job in jobs)
            assert uploaded.results == []
            assert stats.upload_failures >= 3
            assert all(spooled.data_path.exists() for spooled in await spool.pending())

            await trio.to_thread.run_sync(moto.start)
            await stats.wait_until(lambda s: s.uploaded >= 5)
            nursery.cancel_scope.cancel()

        assert sorted(uploaded.keys) == sorted(job.object_key for job in jobs)
        assert (await spool.stats()).pending_count == 0
        assert list((tmp_path / "spool").iterdir()) == []
        for job, result in uploaded.results:
            info = await s3.head(job.object_key)
            assert info.sha256 == job.sha256
            assert info.size == job.size
            assert info.version_id == result.version_id
            assert info.lock_mode is LockMode.GOVERNANCE
            assert info.retain_until is not None
            assert info.retain_until >= job.retain_until
        assert sorted(await s3.list("recordings/")) == sorted(job.object_key for job in jobs)
