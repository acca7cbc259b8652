"""One worker of ``recorder serve --workers N``: what makes it a worker, and its claim loop.

Rules:

1. A worker is a whole ``recorder serve`` (ingress, supervisor, uploader) with its OWN state
   directory (``<state_dir>/workers/<i>``: instance id and lock, spool, journals, partial
   segments), so a restarted worker reclaims its own leases and recovers its own ``.part``
   files. Everything shared stays where the configuration puts it: catalog, store, keys,
   policies.
2. The ingress socket is the parent's (``recorder.service.prefork``), inherited: every worker
   accepts on the same listening socket, so a webhook reaches whichever worker is free, and
   the port stays open while one worker restarts.
3. Streams are spread by the catalog's work queue (``recorder.catalog._workqueue``), not by
   which worker a webhook reached: the claim loop claims this worker's fair share of the
   waiting streams while it has room (``max_engagements``), at once when a webhook or a
   finished engagement wakes it, else every ``claim_interval_s``. A claim is a lease claim, so
   one owner per stream holds exactly as before (invariant 3).
5. A webhook about a stream reaches any worker; the row it commits reaches the owner: the loop
   also reads, each round, this worker's streams whose newest webhook is newer than any it has
   seen, and hands a stop or a failover to the engagement (the lease keeper's row watch does the
   same at each renew; whichever comes first acts, the other finds it done).
4. The loop's look is a cheap read; it writes (heartbeat plus claim) only when something waits
   or the heartbeat is due: every ``claim_grace_s / 2`` while the worker has room (a worker
   whose heartbeat is older than the grace is left out of the split, so the others take its
   share), every third of the lease ttl (at most 5 s) when it is full.
6. Workers on one host wake each other: each listens on a datagram socket in its own state
   directory (``WAKE_SOCKET``). A round that leaves streams waiting (the fair share gave them to
   others, or this worker is full) pokes every sibling's socket, so a webhook that reached the
   "wrong" worker is claimed by the right one at once instead of at its next poll. Only a
   round this worker started itself pokes (never one a poke started: two workers that each
   think the rest is the other's would poke each other for ever); a lost poke costs one
   ``claim_interval_s``, which stays the bound (and the only path between hosts).
"""

from __future__ import annotations

import logging
import math
import os
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

import trio

from recorder.catalog._workqueue import MAX_CLAIM_BATCH
from recorder.catalog.base import StreamState
from recorder.config import Config
from recorder.errors import RecorderError
from recorder.service import start_trace
from recorder.service.lease_keeper import MAX_RENEW_INTERVAL_S
from recorder.service.systemd import SystemdNotifier

if TYPE_CHECKING:
    from recorder.service.supervisor import Supervisor

logger = logging.getLogger(__name__)

#: Bound on handing the worker row back at shutdown (the row lapses on its own anyway).
RETIRE_TIMEOUT_S: Final = 2.0
#: Where worker states live under the configured state directory.
WORKERS_DIR: Final = "workers"
#: Each worker's wake-up socket, in its own state directory (rule 6).
WAKE_SOCKET: Final = "claim-wake.sock"


@dataclass(frozen=True, slots=True)
class WorkQueueSettings:
    max_engagements: int
    claim_interval_s: float = 0.25
    grace_s: float = 1.0
    #: This worker's wake-up socket; its siblings' are ``WAKE_SOCKET`` in the directories
    #: beside its own (rule 6). None: polling only.
    wake_socket: Path | None = None


@dataclass(frozen=True, slots=True)
class WorkerRole:
    """What the parent told this worker process (hidden ``serve`` options)."""

    index: int
    #: The parent's listening socket, inherited.
    listen_fd: int | None = None
    #: Where READY / WATCHDOG / STOPPING go (a pipe to the parent), instead of systemd.
    status_fd: int | None = None


def worker_state_dir(state_dir: Path, index: int) -> Path:
    return state_dir / WORKERS_DIR / str(index)


def worker_config(config: Config, index: int) -> Config:
    """``config`` for worker ``index``: its own state directory and spool (rule 1)."""
    if index < 0:
        raise ValueError(f"worker index must be >= 0, got {index}")
    storage = config.storage
    own = worker_state_dir(storage.state_dir, index)
    spool = (
        own / "spool"
        if storage.spool_dir == storage.state_dir / "spool"
        else storage.spool_dir / f"worker-{index}"
    )
    return replace(config, storage=replace(storage, state_dir=own, spool_dir=spool))


def worker_indexes(state_dir: Path) -> list[int]:
    """Every worker that ever ran on ``state_dir`` (each left its state directory), in order."""
    try:
        entries = list((state_dir / WORKERS_DIR).iterdir())
    except FileNotFoundError:
        return []
    return sorted(int(e.name) for e in entries if e.name.isdigit() and e.is_dir())


def worker_spool_dirs(config: Config) -> list[tuple[int, Path]]:
    """(index, spool directory) of every worker of ``config``'s tree (``recorder spool``), so an
    operator sees a stopped or retired worker's spool too, not only the running ones'."""
    return [
        (index, worker_config(config, index).storage.spool_dir)
        for index in worker_indexes(config.storage.state_dir)
    ]


class ParentNotifier(SystemdNotifier):
    """The service's sd_notify calls, sent to the parent over a pipe, one line each.

    The parent forwards READY once every worker is ready and feeds systemd's watchdog only
    while every worker pings (``recorder.service.prefork``).
    """

    def __init__(self, fd: int, *, ping_interval_s: float) -> None:
        super().__init__(None, watchdog_interval=ping_interval_s * 2)
        self._fd: int | None = fd
        os.set_blocking(fd, False)

    @property
    def enabled(self) -> bool:
        return self._fd is not None

    def notify(self, *assignments: str) -> bool:
        if self._fd is None:
            return True
        try:
            os.write(self._fd, "".join(f"{a}\n" for a in assignments).encode("utf-8"))
        except BlockingIOError:
            return False  # the parent is behind; the next ping will do
        except OSError:
            # The parent is gone: nobody to tell any more.
            self.close()
            return False
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class ClaimLoop:
    """Rule 3: claim this worker's share of the waiting streams while it has room."""

    def __init__(self, supervisor: Supervisor, settings: WorkQueueSettings) -> None:
        self._sup = supervisor
        self.settings = settings
        self._wake = trio.Event()
        #: The next round was asked for by a sibling's poke (rule 6).
        self._poked = False
        self._next_heartbeat = -math.inf
        #: Newest webhook ``event_ts`` of this worker's streams already looked at.
        self._seen_event_ts = 0
        #: Streams this loop claimed, for status and tests.
        self.claimed = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            if self.settings.wake_socket is not None:
                await nursery.start(self._listen, self.settings.wake_socket)
            await self._rounds()
            nursery.cancel_scope.cancel()

    async def _rounds(self) -> None:
        while True:
            # A wake that arrives while we look is kept for the next round.
            self._wake = trio.Event()
            poked, self._poked = self._poked, False
            more = False
            if self._sup.accepting():
                try:
                    more = await self._round(may_poke=not poked)
                except RecorderError as exc:
                    logger.warning("work queue: claim failed: %s", exc)
            if self._sup.engagements:
                try:
                    await self._follow_rows()
                except RecorderError as exc:
                    logger.warning("work queue: stream rows not read: %s", exc)
            if more:
                await trio.lowlevel.checkpoint()
                continue
            with trio.move_on_after(self.settings.claim_interval_s):
                await self._wake.wait()

    async def _listen(
        self, path: Path, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Rule 6: a datagram on ``path`` is a sibling's poke."""
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        with sock:
            try:
                # A socket file left by an earlier run of this worker is ours to replace.
                _remove(path)
                await sock.bind(str(path))
                os.chmod(path, 0o600)
            except OSError as exc:
                logger.warning(
                    "work queue: no wake-up socket (%s): claiming every %.2f s",
                    exc.strerror or exc,
                    self.settings.claim_interval_s,
                )
                task_status.started()
                return
            task_status.started()
            try:
                while True:
                    await sock.recv(16)
                    self._poked = True
                    self._wake.set()
            finally:
                _remove(path)

    def _poke_siblings(self) -> None:
        """Rule 6: wake every other worker of this host (best effort, never blocks)."""
        own = self.settings.wake_socket
        if own is None:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            for path in own.parent.parent.glob(f"*/{WAKE_SOCKET}"):
                if path == own:
                    continue
                try:
                    sock.sendto(b"w", str(path))
                except OSError:
                    # Gone (a stopped sibling's stale file) or its queue is full (it is woken
                    # already): either way nothing to do.
                    continue

    async def _round(self, *, may_poke: bool = True) -> bool:
        """One look (and claim); True when more may be waiting for us right now.

        ``may_poke``: this round was not started by a sibling's poke (rule 6)."""
        sup = self._sup
        catalog = sup.c.catalog
        owner = sup.settings.owner
        ttl_ms = int(sup.settings.lease_ttl_s * 1000)
        capacity = self.settings.max_engagements
        now = trio.current_time()
        heartbeat_due = now >= self._next_heartbeat
        room = capacity - sup.active
        exclude = sorted(sup.backing_off())
        if room <= 0:
            if heartbeat_due:
                await catalog.heartbeat_worker(owner, capacity, ttl_ms)
                self._next_heartbeat = now + self._heartbeat_s(room)
            if may_poke and await catalog.waiting_work(exclude):
                self._poke_siblings()
            return False
        if not heartbeat_due and not await catalog.waiting_work(exclude):
            return False
        result = await catalog.claim_work(
            owner,
            capacity,
            sup.active,
            ttl_ms,
            grace_ms=int(self.settings.grace_s * 1000),
            exclude=exclude,
        )
        self._next_heartbeat = now + self._heartbeat_s(room)
        from recorder.service.supervisor import spec_from_row

        for claimed in result.claimed:
            spec = spec_from_row(claimed.row)
            if spec is None or not sup.accepting():
                await catalog.release(claimed.lease)
                continue
            self.claimed += 1
            start_trace.mark("claimed", spec.rtms_stream_id)
            sup.launch_soon(spec, claimed.lease)
        if result.claimed:
            logger.info(
                "work queue: claimed %d of %d waiting (active %d of %d)",
                len(result.claimed),
                result.waiting,
                sup.active,
                capacity,
            )
        if may_poke and result.waiting > len(result.claimed):
            self._poke_siblings()
        return len(result.claimed) >= MAX_CLAIM_BATCH

    async def _follow_rows(self) -> None:
        """Rule 5: a failover ``rtms_started`` or an ``rtms_stopped`` that another worker's
        ingress committed reaches the owning engagement within a claim interval, not only at
        its next lease renew (up to 5 s)."""
        sup = self._sup
        rows = await sup.c.catalog.owned_streams_changed(sup.settings.owner, self._seen_event_ts)
        for row in rows:
            self._seen_event_ts = max(self._seen_event_ts, row.last_event_ts_ms)
            engagement = sup.engagements.get(row.rtms_stream_id)
            if engagement is None or engagement.stream is None:
                continue
            if row.state is StreamState.STOPPED:
                engagement.stream.stopped(None)
            elif row.server_urls:
                # Acts only on a newer rtms_started than the engagement has acted on.
                await engagement.failover(row.server_urls_ts_ms, row.server_urls)

    def _heartbeat_s(self, room: int) -> float:
        """How long the last heartbeat lasts: with room, half the grace (so this worker keeps
        its place in the split, rule 4 of the work queue); full, a third of the lease ttl."""
        every = min(self._sup.settings.lease_ttl_s / 3, MAX_RENEW_INTERVAL_S)
        return min(every, self.settings.grace_s / 2) if room > 0 else every

    async def retire(self) -> None:
        """Leave the fleet's live workers (shutdown): the others stop counting on us."""
        with trio.CancelScope(shield=True), trio.move_on_after(RETIRE_TIMEOUT_S):
            try:
                await self._sup.c.catalog.retire_worker(self._sup.settings.owner)
            except RecorderError as exc:
                logger.warning("work queue: worker row not removed (it lapses): %s", exc)


def _remove(path: Path) -> None:
    """A (tiny, local) socket file: removed in the loop, no thread hop."""
    path.unlink(missing_ok=True)
