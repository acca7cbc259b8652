"""Invariant 3 across real processes: N recorder workers on one catalog never share a stream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import trio

from tests.catalog.support import T0, CatalogTarget

STREAMS = 100
REPO = Path(__file__).resolve().parents[2]

# Each worker opens its own catalog, says "ready", waits for "go" on stdin so that all of them
# start claiming at the same moment, then claims every stream in order and reports what it won.
_WORKER = """
import json, sys
from recorder.catalog import open_catalog
url, owner, streams, now_ms = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
catalog = open_catalog(url, now_ms=now_ms)
print("ready", flush=True)
sys.stdin.readline()
won = [catalog.try_claim(f"proc-{n}", owner, 15_000, now_ms) is not None for n in range(streams)]
catalog.close()
print(json.dumps(won), flush=True)
"""


async def _read_line(stream: trio.abc.ReceiveStream, buffer: bytearray) -> bytes:
    while b"\n" not in buffer:
        chunk = await stream.receive_some()
        if not chunk:
            raise AssertionError(f"worker closed its output early: {bytes(buffer)!r}")
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line


async def test_worker_processes_racing_for_streams_get_one_owner_each(
    target: CatalogTarget,
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    owners = ["worker-1", "worker-2", "worker-3"]
    results: dict[str, list[bool]] = {}
    with trio.fail_after(60):
        processes = [
            await trio.lowlevel.open_process(
                [sys.executable, "-c", _WORKER, target.url, owner, str(STREAMS), str(T0)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                cwd=REPO,
            )
            for owner in owners
        ]
        buffers = [bytearray() for _ in processes]
        try:
            for process, buffer in zip(processes, buffers, strict=True):
                assert process.stdout is not None
                assert await _read_line(process.stdout, buffer) == b"ready"
            for process in processes:
                assert process.stdin is not None
                await process.stdin.send_all(b"go\n")
            for owner, process, buffer in zip(owners, processes, buffers, strict=True):
                assert process.stdout is not None
                results[owner] = json.loads(await _read_line(process.stdout, buffer))
                assert await process.wait() == 0
        finally:
            for process in processes:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    per_stream = list(zip(*(results[owner] for owner in owners), strict=True))
    assert len(per_stream) == STREAMS
    assert all(sum(claims) == 1 for claims in per_stream), per_stream
