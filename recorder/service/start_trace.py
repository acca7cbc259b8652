"""When each engagement passed each step of its start: the trace ``bench workers burst`` reads.

Off unless the environment names a directory in ``RECORDER_START_TRACE`` (only the bench sets
it). Then every process of the tree appends ``<unix s> <stage> <rtms_stream_id>`` lines to its
own file there (``<pid>.trace``), and the bench lines them up with what the simulator saw to say
where the seconds between a webhook and its first recorded frame go. Stream ids and stage names
only: never a payload, a key or a signature. The clock is the wall clock because the lines of
several processes are compared; a bench on one host shares it.

Stages, in the order an engagement passes them (``STAGES``): the ingress verified the webhook
(``received``) and committed it with its stream row (``queued``, the 200 follows); a worker
claimed the stream (``claimed``); its recording row and hold rules are written (``recording``);
the RTMS client starts connecting (``connecting``); the recording key is ready (``key``); the
capture saw the first audio packet (``first_packet``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Final, TextIO

#: The environment variable naming the trace directory.
ENV: Final = "RECORDER_START_TRACE"
STAGES: Final = ("received", "queued", "claimed", "recording", "connecting", "key", "first_packet")

#: Read once: the service's environment does not change under it.
_DIRECTORY: Final = os.environ.get(ENV, "")
_out: TextIO | None = None
_pid: int | None = None


def _open(directory: str) -> TextIO:
    global _out, _pid
    pid = os.getpid()
    if _out is None or _pid != pid:
        # Line-buffered: a line is one write(2) on O_APPEND, whole even if the process dies.
        _out = (Path(directory) / f"{pid}.trace").open("a", encoding="ascii", buffering=1)
        _pid = pid
    return _out


def mark(stage: str, stream_id: str | None) -> None:
    """Note that ``stream_id`` reached ``stage`` now (a no-op unless the trace is on)."""
    if stream_id is None or not _DIRECTORY:
        return
    _open(_DIRECTORY).write(f"{time.time():.6f} {stage} {stream_id}\n")


def read(directory: Path) -> dict[str, dict[str, float]]:
    """Every trace file in ``directory``: stream id -> stage -> the first time it was reached."""
    seen: dict[str, dict[str, float]] = {}
    for path in sorted(directory.glob("*.trace")):
        for line in path.read_text(encoding="ascii").splitlines():
            parts = line.split(" ")
            if len(parts) != 3:
                continue
            at, stage, stream_id = float(parts[0]), parts[1], parts[2]
            stages = seen.setdefault(stream_id, {})
            stages[stage] = min(at, stages.get(stage, at))
    return seen
