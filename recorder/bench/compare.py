"""Two source trees, one benchmark, in alternation: ``recorder bench compare --tree A --tree B
--figure REGEX [--pairs 3] -- export --rounds 4``.

Why: on this machine kind a VM's state moves a benchmark by up to 2x within minutes (the export
bench of one unchanged tree read 270, 382 and 525 MB/s in one hour), so a change measured after
its base looks better or worse by whatever the VM did in between. Run in alternation, A then B
then A then B, both see the same states; only the figures of one pair are compared with each
other.

Each run is ``python -m recorder bench ARGS...`` in a fresh process, in the tree and with
``PYTHONPATH`` set to it (the same interpreter and installed packages, that tree's
``recorder``). ``--figure`` is a regular expression whose first group is the number to compare,
searched in each run's output (its last match counts); the summary prints every run's figure,
each tree's median and the median of the B/A ratios of the pairs.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def figure_of(output: str, pattern: re.Pattern[str]) -> float | None:
    """The first group of the last match of ``pattern`` in ``output``, as a number."""
    found = pattern.findall(output)
    if not found:
        return None
    last = found[-1]
    return float(last[0] if isinstance(last, tuple) else last)


def run_once(tree: Path, bench: Sequence[str], *, timeout_s: float) -> str:
    """One benchmark run of ``tree``'s ``recorder``; its output, or a ``RuntimeError``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(  # noqa: S603 (our own interpreter and module, in a tree given)
        [sys.executable, "-m", "recorder", "bench", *bench],
        # ``-m`` puts the working directory first on the path: run in the tree, so that a
        # checkout in the caller's directory is not the one measured.
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{tree}: bench exited {done.returncode}: {' | '.join(tail)}")
    return done.stdout


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="recorder bench compare", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--tree", type=Path, action="append", required=True, help="twice: A, B")
    parser.add_argument("--figure", required=True, help="regex; its first group is the number")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    parser.add_argument("bench", nargs=argparse.REMAINDER, help="-- the benchmark and its options")
    args = parser.parse_args(argv)
    bench = args.bench[1:] if args.bench[:1] == ["--"] else args.bench
    if len(args.tree) != 2 or not bench:
        parser.error("give two --tree and the benchmark after --")
    for tree in args.tree:
        if not (tree / "recorder" / "__init__.py").is_file():
            parser.error(f"{tree} holds no recorder package")
    try:
        pattern = re.compile(args.figure)
    except re.error as exc:
        parser.error(f"--figure: {exc}")
    a, b = (tree.resolve() for tree in args.tree)
    print(f"bench {' '.join(bench)}: A = {a}, B = {b}, {args.pairs} pairs, A then B")
    # By name, not by path: a tree compared with itself (the noise floor) is two columns.
    figures: dict[str, list[float]] = {"A": [], "B": []}
    ratios: list[float] = []
    for pair in range(1, args.pairs + 1):
        for name, tree in (("A", a), ("B", b)):
            try:
                output = run_once(tree, bench, timeout_s=args.timeout)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                print(f"pair {pair} {name}: failed: {exc}", file=sys.stderr)
                return 1
            value = figure_of(output, pattern)
            if value is None:
                print(f"pair {pair} {name}: --figure matched nothing in:", file=sys.stderr)
                print(output, file=sys.stderr)
                return 1
            figures[name].append(value)
            print(f"pair {pair} {name}: {value:g}", flush=True)
        if figures["A"][-1]:
            ratios.append(figures["B"][-1] / figures["A"][-1])
            print(f"pair {pair} B/A: {ratios[-1]:.3f}", flush=True)
    print(
        "; ".join(
            f"median {name} {statistics.median(values):g} ({', '.join(f'{v:g}' for v in values)})"
            for name, values in figures.items()
        )
    )
    if ratios:
        print(
            f"B/A per pair: {', '.join(f'{r:.3f}' for r in ratios)}; "
            f"median {statistics.median(ratios):.3f} (B ahead in "
            f"{sum(r > 1 for r in ratios)} of {len(ratios)} pairs, for a figure where more is "
            "better)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
