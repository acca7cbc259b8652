"""``trio_clock_ms``: the run's clock in ms, read without trio's ``current_time`` call when the
run uses trio's own ``SystemClock`` (once per audio packet), and through it otherwise."""

from __future__ import annotations

import time

import trio
import trio.testing

from recorder.capture.pipeline import trio_clock_ms


def test_system_clock_is_still_its_offset_plus_perf_counter() -> None:
    """What the shortcut relies on, under the pinned trio: fails if SystemClock changes."""
    clock = trio._core._run.SystemClock()
    first = clock.offset + time.perf_counter()
    read = clock.current_time()
    last = clock.offset + time.perf_counter()
    assert first <= read <= last
    offset = clock.offset
    clock.current_time()
    assert clock.offset == offset


def test_the_default_clock_is_read_in_ms_between_two_reads_of_it() -> None:
    async def main() -> tuple[int, int, int, bool]:
        clock = trio.lowlevel.current_clock()
        read = trio_clock_ms()
        before = int(clock.current_time() * 1000)
        value = read()
        await trio.sleep(0.01)
        later = read()
        after = int(clock.current_time() * 1000)
        assert before <= value <= later <= after
        return value, later, after, type(clock) is trio._core._run.SystemClock

    value, later, _, system = trio.run(main)
    assert system  # the shortcut was the branch taken
    assert later - value >= 10


def test_a_mock_clock_is_read_through_its_own_current_time() -> None:
    async def main() -> list[int]:
        read = trio_clock_ms()
        clock = trio.lowlevel.current_clock()
        assert isinstance(clock, trio.testing.MockClock)
        values = [read()]
        clock.jump(1.5)
        values.append(read())
        return values

    start, jumped = trio.run(main, clock=trio.testing.MockClock())
    assert jumped - start == 1500
