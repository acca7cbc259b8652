"""Instructions per audio message of the full recording path, counted by callgrind.

Run: ``python -m recorder.bench.instructions [--codecs l16] [--modes full,bare]
[--engagements 1] [--seconds 2,8] [--speed 0.25]`` (or ``recorder bench instructions``). Needs
valgrind.

Wall-clock µs/msg (``bench fullpath``) moves with whatever else the host runs; the number of
instructions the measured process executes does not. Per codec and mode the measured side of
``bench fullpath`` (the same ``_measure``: real RTMS client over loopback WebSockets, capture,
encrypting spool sink, fsync checkpoints) runs in a process under ``valgrind --tool=callgrind``
while the simulator streams to it from a native child process (``--trace-children=no``). Two
runs of different lengths are made; their difference in instructions over their difference in
audio messages received is the cost per message, free of imports, connects, handshakes and
teardown, which both runs share. Only user-space instructions are counted: the kernel's part of
a read or a write is not (``bench fullpath`` sees it).

A paced stream brings one message per 20 ms; callgrind slows the client about fifty times, and
a client that lags reads several messages per wakeup and looks cheaper than it is. So the
simulator runs slowed down (``--speed``, scenario seconds per real second: 0.25 by default, one
message per 80 ms), the capture's checkpoint interval is stretched by the same factor (one
checkpoint per 50 messages, as at real speed), and ``wakeups`` prints the event loop's waits
(``epoll_wait`` calls) per message: about 1 when every message had a wakeup of its own, as on a
paced production stream; well below 1 means the run lagged and its figure flatters.

``--keep DIR`` keeps the callgrind output files (``callgrind_annotate`` reads them). ``--tls``
runs every socket over ``wss://`` as ``bench fullpath --tls`` does (a self-signed certificate
made for the run, trusted alone by the measured side): OpenSSL's instructions are user space,
so they are counted.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recorder.bench import fullpath
from recorder.testing.tls import SelfSignedCertificate

_TOTALS = re.compile(rb"^(?:summary|totals): (\d+)", re.MULTILINE)
#: callgrind's name compression: ``cfn=(id) name`` the first time, ``cfn=(id)`` after.
_CALLEE = re.compile(rb"^cfn=\((\d+)\)(?: (.*))?$")
_CALLS = re.compile(rb"^calls=(\d+)")


def _calls_to(out: bytes, name: bytes) -> int:
    """How many calls callgrind recorded to functions whose name ends with ``name``."""
    names: dict[bytes, bytes] = {}
    callee = b""
    total = 0
    for line in out.splitlines():
        if line.startswith(b"cfn="):
            match = _CALLEE.match(line)
            if match is not None:
                if match.group(2):
                    names[match.group(1)] = match.group(2)
                callee = names.get(match.group(1), b"")
        elif line.startswith(b"fn="):
            match = _CALLEE.match(b"c" + line)
            if match is not None and match.group(2):
                names[match.group(1)] = match.group(2)
        elif line.startswith(b"calls=") and callee.endswith(name):
            calls = _CALLS.match(line)
            total += int(calls.group(1)) if calls is not None else 0
    return total


def _inner(args: argparse.Namespace) -> int:
    """The process valgrind runs: the simulator as a native child, the measured side here."""
    import multiprocessing

    import trio

    spec = fullpath.RunSpec(
        codec=args.codec,
        engagements=args.engagements,
        seconds=args.inner_seconds,
        ramp_s=0.2,
        sim_speed=args.speed,
        checkpoint_s=1.0 / args.speed,
        pace_batch_frames=1,
        client_cpu=0,
        server_cpu=1,
        client_only=args.mode == "rtms",
        per_speaker=False,
        mode=args.mode,
        output=args.output,
        tls_cert_file=args.tls_cert or "",
        tls_key_file=args.tls_key or "",
        tls_ca_file=args.tls_cert or "",
    )
    fullpath._pin(spec.client_cpu)
    ctx = multiprocessing.get_context("spawn")
    sim_end, client_end = ctx.Pipe()
    simulator = ctx.Process(
        target=fullpath.simulator_main, args=(sim_end, spec.as_dict()), name="sim"
    )
    simulator.start()
    sim_end.close()
    try:
        outcome = trio.run(fullpath._measure, client_end, spec)
    finally:
        client_end.close()
        simulator.join(30)
        if simulator.is_alive():
            simulator.kill()
            simulator.join()
    Path(args.result).write_text(json.dumps(outcome), encoding="utf-8")
    return 0


def _counted(
    codec: str,
    mode: str,
    engagements: int,
    seconds: float,
    speed: float,
    output: str,
    out_dir: Path,
    certificate: SelfSignedCertificate | None = None,
) -> tuple[int, int, dict[str, Any]]:
    """Instructions and event-loop waits of one run under callgrind, and what the measured
    side reported (over TLS with ``certificate``)."""
    stem = f"{codec}-{mode}-{output}-{engagements}x{seconds:g}s"
    out_file, result = out_dir / f"callgrind.{stem}.out", out_dir / f"{stem}.json"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--trace-children=no",
        f"--callgrind-out-file={out_file}",
        sys.executable,
        "-m",
        "recorder.bench.instructions",
        "--inner",
        "--codec",
        codec,
        "--mode",
        mode,
        "--engagements",
        str(engagements),
        "--inner-seconds",
        str(seconds),
        "--speed",
        str(speed),
        "--output",
        output,
        "--result",
        str(result),
    ]
    if certificate is not None:
        command += [
            "--tls-cert",
            str(certificate.cert_file),
            "--tls-key",
            str(certificate.key_file),
        ]
    subprocess.run(  # noqa: S603 (valgrind running our own interpreter and module)
        command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    out = out_file.read_bytes()
    match = _TOTALS.search(out)
    if match is None:
        raise RuntimeError(f"no totals in {out_file}")
    outcome: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
    if "error" in outcome:
        raise RuntimeError(f"{stem}: {outcome['error']}")
    return int(match.group(1)), _calls_to(out, b"epoll_wait"), outcome


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recorder bench instructions", description=__doc__)
    parser.add_argument("--codecs", default="l16", help="comma-separated: l16,g711,opus")
    parser.add_argument(
        "--modes", default="full,bare", help="comma-separated: full, rtms (client alone), bare"
    )
    parser.add_argument("--engagements", type=int, default=1)
    parser.add_argument(
        "--seconds", default="2,8", help="scenario seconds of the short and the long run"
    )
    parser.add_argument("--speed", type=float, default=0.25, help="the simulator's speed")
    parser.add_argument("--keep", type=Path, help="keep callgrind's output files here")
    parser.add_argument(
        "--output",
        default="service",
        choices=sorted(fullpath.OUTPUTS),
        help="what the capture writes (as bench fullpath --output)",
    )
    parser.add_argument(
        "--tls", action="store_true", help="every socket over wss:// (as bench fullpath --tls)"
    )
    # The process run under valgrind (internal).
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--codec", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--inner-seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--tls-cert", help=argparse.SUPPRESS)
    parser.add_argument("--tls-key", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inner:
        return _inner(args)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed", file=sys.stderr)
        return 2
    short, long = (float(s) for s in args.seconds.split(","))
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rtms-instructions-") as tmp:
        out_dir = args.keep or Path(tmp)
        certificate = SelfSignedCertificate.create(Path(tmp) / "tls") if args.tls else None
        print(
            f"{'codec':<6} {'mode':<6} {'Ir/msg':>9} {'x bare':>7} {'wakeups':>8} "
            f"{'msgs':>7} {'lost':>5}  (runs of {short:g} and {long:g} scenario s at speed "
            f"{args.speed:g}, {args.engagements} engagement(s); output {args.output}: "
            f"{fullpath.OUTPUTS[args.output]}{'; over TLS' if args.tls else ''})"
        )
        for codec in args.codecs.split(","):
            bare: float | None = None
            rows = []
            for mode in args.modes.split(","):
                runs = [
                    _counted(
                        codec,
                        mode,
                        args.engagements,
                        seconds,
                        args.speed,
                        args.output,
                        out_dir,
                        certificate,
                    )
                    for seconds in (short, long)
                ]
                (ir_short, waits_short, out_short), (ir_long, waits_long, out_long) = runs
                msgs = out_long["msgs"] - out_short["msgs"]
                per_msg = (ir_long - ir_short) / msgs if msgs > 0 else float("nan")
                wakeups = (waits_long - waits_short) / msgs if msgs > 0 else float("nan")
                lost = out_long["sim"].get("frames_sent", 0) - out_long["msgs"]
                if mode == "bare":
                    bare = per_msg
                rows.append((mode, per_msg, wakeups, msgs, lost))
            for mode, per_msg, wakeups, msgs, lost in rows:
                ratio = f"{per_msg / bare:.2f}" if bare else "-"
                print(
                    f"{codec:<6} {mode:<6} {per_msg:>9.0f} {ratio:>7} {wakeups:>8.2f} "
                    f"{msgs:>7} {lost:>5}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
