"""One conformance suite for every ``ObjectStore`` (trio's ``check_two_way_stream`` idea).

``CHECKS`` lists async checks taking a ``StoreHarness`` and a scratch directory. A test module
parametrizes over (store kind x check). Stores with an injectable clock set ``advance`` so a
retention can lapse without waiting; for real-time stores (S3) those steps are left out.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from recorder.errors import DigestMismatch, ObjectExists, ObjectLocked, ObjectNotFound
from recorder.store.base import LockMode, ObjectStore


@dataclass
class StoreHarness:
    store: ObjectStore
    #: Moves the store's clock forward; ``None`` when the store runs on real time.
    advance: Callable[[timedelta], None] | None = None


Check = Callable[[StoreHarness, Path], Awaitable[None]]

ODD_KEY = "recordings/meeting/4444AAAiAAAAAiAiAiiAii==/a+b c/../000001.seg"


def write_source(directory: Path, data: bytes, name: str = "source.bin") -> tuple[Path, str]:
    path = directory / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


async def read_all(store: ObjectStore, key: str) -> bytes:
    out = bytearray()
    async with store.open(key) as chunks:
        async for chunk in chunks:
            out += chunk
    return bytes(out)


def in_one_day() -> datetime:
    return datetime.now(UTC) + timedelta(days=1, microseconds=1234)


async def check_round_trip(h: StoreHarness, tmp: Path) -> None:
    data = os.urandom(300_000)
    source, digest = write_source(tmp, data)
    with trio.fail_after(20):
        result = await h.store.put(
            ODD_KEY, source, sha256=digest, retain_until=in_one_day(), metadata={"track": "mixed"}
        )
        assert (result.key, result.size, result.sha256) == (ODD_KEY, len(data), digest)
        info = await h.store.head(ODD_KEY)
        assert (info.size, info.sha256, info.version_id) == (len(data), digest, result.version_id)
        assert info.metadata.get("track") == "mixed"
        back = await read_all(h.store, ODD_KEY)
        assert back == data
        assert await h.store.list("recordings/meeting/") == [ODD_KEY]
        assert await h.store.list("other/") == []


async def check_missing_object(h: StoreHarness, tmp: Path) -> None:
    with trio.fail_after(10), pytest.raises(ObjectNotFound):
        await h.store.head("no/such/key")


async def check_retain_until_read_back(h: StoreHarness, tmp: Path) -> None:
    source, digest = write_source(tmp, b"locked evidence")
    asked = in_one_day()
    with trio.fail_after(10):
        await h.store.put("k/locked", source, sha256=digest, retain_until=asked)
        info = await h.store.head("k/locked")
    assert info.lock_mode is LockMode.COMPLIANCE
    assert info.retain_until is not None
    # Whole seconds, rounded up: never earlier than asked, at most one second later.
    assert asked <= info.retain_until < asked + timedelta(seconds=1)


async def check_locked_delete_refused(h: StoreHarness, tmp: Path) -> None:
    source, digest = write_source(tmp, b"cannot delete me")
    with trio.fail_after(10):
        await h.store.put("k/locked", source, sha256=digest, retain_until=in_one_day())
        with pytest.raises(ObjectLocked):
            await h.store.delete("k/locked")
        assert (await h.store.head("k/locked")).sha256 == digest


async def check_legal_hold_blocks_delete(h: StoreHarness, tmp: Path) -> None:
    source, digest = write_source(tmp, b"held for a matter")
    with trio.fail_after(10):
        await h.store.put("k/held", source, sha256=digest, retain_until=None, legal_hold=True)
        assert (await h.store.head("k/held")).legal_hold
        with pytest.raises(ObjectLocked):
            await h.store.delete("k/held")
        await h.store.set_legal_hold("k/held", False)
        assert not (await h.store.head("k/held")).legal_hold
        await h.store.delete("k/held")
        with pytest.raises(ObjectNotFound):
            await h.store.head("k/held")


async def check_legal_hold_outlives_retention(h: StoreHarness, tmp: Path) -> None:
    if h.advance is None:
        pytest.skip("store runs on real time; covered by check_legal_hold_blocks_delete")
    source, digest = write_source(tmp, b"retention lapses, hold stays")
    with trio.fail_after(10):
        until = datetime.now(UTC) + timedelta(hours=1)
        await h.store.put("k/both", source, sha256=digest, retain_until=until, legal_hold=True)
        h.advance(timedelta(hours=2))
        with pytest.raises(ObjectLocked):
            await h.store.delete("k/both")
        await h.store.set_legal_hold("k/both", False)
        await h.store.delete("k/both")
        assert await h.store.list("k/") == []


async def check_retention_only_extended(h: StoreHarness, tmp: Path) -> None:
    source, digest = write_source(tmp, b"extend me")
    first = in_one_day()
    with trio.fail_after(10):
        await h.store.put("k/ext", source, sha256=digest, retain_until=first)
        before = (await h.store.head("k/ext")).retain_until
        assert before is not None
        later = before + timedelta(days=30)
        await h.store.extend_retention("k/ext", later)
        assert (await h.store.head("k/ext")).retain_until == later
        with pytest.raises(ObjectLocked):
            await h.store.extend_retention("k/ext", first)
        assert (await h.store.head("k/ext")).retain_until == later


async def check_idempotent_reput(h: StoreHarness, tmp: Path) -> None:
    source, digest = write_source(tmp, b"same bytes twice")
    with trio.fail_after(10):
        first = await h.store.put("k/same", source, sha256=digest, retain_until=in_one_day())
        again = await h.store.put("k/same", source, sha256=digest, retain_until=in_one_day())
        assert again == first
        assert await h.store.list("k/") == ["k/same"]


async def check_conflicting_reput_refused(h: StoreHarness, tmp: Path) -> None:
    source, digest = write_source(tmp, b"the original", "a.bin")
    other, other_digest = write_source(tmp, b"an impostor!", "b.bin")
    with trio.fail_after(10):
        await h.store.put("k/once", source, sha256=digest, retain_until=in_one_day())
        with pytest.raises(ObjectExists):
            await h.store.put("k/once", other, sha256=other_digest, retain_until=in_one_day())
        assert (await h.store.head("k/once")).sha256 == digest
        assert await read_all(h.store, "k/once") == b"the original"


async def check_wrong_digest_refused(h: StoreHarness, tmp: Path) -> None:
    source, _digest = write_source(tmp, b"bytes that do not match")
    with trio.fail_after(10):
        with pytest.raises(DigestMismatch):
            await h.store.put("k/bad", source, sha256="0" * 64, retain_until=in_one_day())
        with pytest.raises(ObjectNotFound):
            await h.store.head("k/bad")


CHECKS: list[Check] = [
    check_round_trip,
    check_missing_object,
    check_retain_until_read_back,
    check_locked_delete_refused,
    check_legal_hold_blocks_delete,
    check_legal_hold_outlives_retention,
    check_retention_only_extended,
    check_idempotent_reput,
    check_conflicting_reput_refused,
    check_wrong_digest_refused,
]
