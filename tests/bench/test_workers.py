"""``bench workers``: the arithmetic its scaling and memory figures rest on (the runs themselves
start whole process trees and are measured by hand, README Performance)."""

from __future__ import annotations

import argparse
import math

import pytest

from recorder.bench.workers import TreeResult, _tree_env


def run(workers: int, cpu_s: list[float], *, parent_s: float = 0.0) -> TreeResult:
    """A clean 20 s window in which the tree carried 1 500 messages/s."""
    r = TreeResult(workers, engagements=30, window_s=20.0, messages=30_000)
    r.cpu_s, r.parent_cpu_s = cpu_s, parent_s
    r.frames_sent = r.frames_recorded = 45_000
    return r


def test_capacity_is_the_carried_rate_scaled_to_a_full_core_per_worker() -> None:
    one = run(1, [2.0])  # 10 % of a core at 1 500 msgs/s
    assert one.capacity_msgs_s == pytest.approx(15_000)
    assert one.tree_us_per_msg == pytest.approx(2.0 * 1e6 / 30_000)
    # Two workers, evenly loaded, same cost per message: twice the capacity.
    assert run(2, [1.0, 1.0]).capacity_msgs_s == pytest.approx(2 * 15_000)


def test_the_busiest_worker_and_the_parent_limit_capacity() -> None:
    # One trio loop uses one core at most: a 3:1 split saturates the busy worker first.
    lopsided = run(2, [3.0, 1.0])
    assert lopsided.capacity_msgs_s == pytest.approx(1_500 / 0.15)
    # The parent's CPU is the tree's too: it takes from the N cores the workers share.
    with_parent = run(2, [1.0, 1.0], parent_s=2.0)
    assert with_parent.capacity_msgs_s == pytest.approx(1_500 * 2 / 0.2)
    assert with_parent.tree_us_per_msg == pytest.approx(4.0 * 1e6 / 30_000)
    assert math.isnan(TreeResult(1, 30).capacity_msgs_s)


def test_a_run_is_clean_only_with_nothing_lost_answered_and_ended() -> None:
    assert run(1, [1.0]).clean
    lost = run(1, [1.0])
    lost.frames_recorded -= 1
    missed = run(1, [1.0])
    missed.keepalives_missed = 1
    open_ = run(1, [1.0])
    open_.unfinished = 1
    assert not any(r.clean for r in (lost, missed, open_))


def test_the_tree_environment_takes_arena_max_and_named_variables() -> None:
    args = argparse.Namespace(arena_max="16", env=["MALLOC_MMAP_THRESHOLD_=524288"])
    assert _tree_env(args) == {"MALLOC_ARENA_MAX": "16", "MALLOC_MMAP_THRESHOLD_": "524288"}
    assert _tree_env(argparse.Namespace(arena_max=None, env=[])) == {}
    with pytest.raises(SystemExit, match=r"NAME=VALUE.*'MALLOC_ARENA_MAX'"):
        _tree_env(argparse.Namespace(arena_max=None, env=["MALLOC_ARENA_MAX"]))
