"""``LocalStore`` never overwrites, across processes: two real processes race on the same keys."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Barrier
from pathlib import Path

import trio

from recorder.errors import ObjectExists
from recorder.store.local import LocalStore

KEYS = 40


def _race(root: str, source_dir: str, writer: int, barrier: Barrier, results: str) -> None:
    """One process: put its own bytes under every key, starting together with the other."""
    store = LocalStore(Path(root))
    until = datetime.now(UTC) + timedelta(days=1)
    outcome: list[str] = []

    async def main() -> None:
        for index in range(KEYS):
            source = Path(source_dir) / f"w{writer}-{index}"
            sha = hashlib.sha256(source.read_bytes()).hexdigest()
            barrier.wait()  # both processes put key ``index`` at the same moment
            try:
                await store.put(f"rec/{index}/seg", source, sha256=sha, retain_until=until)
                outcome.append("won")
            except ObjectExists:
                outcome.append("conflict")

    trio.run(main)
    Path(results).write_text("\n".join(outcome))


async def test_two_processes_racing_on_one_key_leave_one_consistent_object(
    tmp_path: Path,
) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    for writer in (0, 1):
        for index in range(KEYS):
            (sources / f"w{writer}-{index}").write_bytes(os.urandom(64 * 1024))
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2, timeout=60)
    root = tmp_path / "store"
    processes = [
        context.Process(
            target=_race,
            args=(str(root), str(sources), writer, barrier, str(tmp_path / f"out{writer}")),
        )
        for writer in (0, 1)
    ]
    for process in processes:
        process.start()
    for process in processes:
        await trio.to_thread.run_sync(process.join, 120)
        assert process.exitcode == 0
    outcomes = [(tmp_path / f"out{w}").read_text().splitlines() for w in (0, 1)]
    store = LocalStore(root)
    for index in range(KEYS):
        key = f"rec/{index}/seg"
        # Exactly one writer created the object; the other was told it conflicts.
        assert sorted([outcomes[0][index], outcomes[1][index]]) == ["conflict", "won"], key
        winner = 0 if outcomes[0][index] == "won" else 1
        genuine = (sources / f"w{winner}-{index}").read_bytes()
        info = await store.head(key)
        assert info.sha256 == hashlib.sha256(genuine).hexdigest(), key
        async with store.open(key) as chunks:
            stored = b"".join([chunk async for chunk in chunks])
        assert stored == genuine, key
