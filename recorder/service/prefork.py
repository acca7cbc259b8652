"""``recorder serve --workers N``: the parent of N worker processes (trio uses one core each).

Why a parent process rather than only a systemd template unit: one unit, one configuration and
one port for operators; the parent owns the listening socket, so a worker's crash or restart
never closes the port nor drops the connections queued on it (with separate ``SO_REUSEPORT``
sockets the kernel resets what sat in a dying worker's queue), and an idle worker takes the
next connection instead of a hash picking a busy one. The template unit ``ops/recorder@.service``
(one unit per worker, ``serve --worker-index %i``, each binding with ``SO_REUSEPORT``) is shipped
too, for hosts that want systemd to supervise each worker itself.

Rules:

1. The parent binds and listens, then opens the catalog once (migrations and key set-up happen
   before any worker starts, not raced by N of them), and starts each worker as
   ``recorder serve --worker-index I --listen-fd FD --status-fd FD``. Workers inherit the socket
   (``recorder.service.workers`` rule 2) and talk to the parent over a pipe: ``READY=1``,
   ``WATCHDOG=1``, ``STOPPING=1`` lines, as they would to systemd.
2. The parent tells systemd READY once every worker is ready, and pings systemd's watchdog only
   while no ready worker is stale. A worker whose pings stop for ``liveness_stale_s`` is wedged:
   the parent SIGKILLs it, and, as for any worker that exits, starts it again after
   ``restart_delay_s``, doubling to ``restart_max_s`` while it keeps failing. Its streams are
   reclaimed by the restart (same state directory, same owner id) or taken by the other workers
   once its leases lapse, whichever comes first.
3. SIGTERM or SIGINT: STOPPING to systemd, SIGTERM to every worker (each drains as a single
   ``serve`` does), and SIGKILL to what still runs ``drain_timeout_s`` + ``STOP_MARGIN_S`` later.
4. Workers start with ``MALLOC_ARENA_MAX`` = ``WORKER_MALLOC_ARENA_MAX`` unless the operator set
   it: glibc otherwise gives each thread that allocates (catalog hops, segment I/O) an arena of
   its own, up to 8 per core, and each keeps what it once held (``recorder bench workers
   memory`` measures the difference), and with ``OPENBLAS_NUM_THREADS`` and ``OMP_NUM_THREADS``
   = ``WORKER_BLAS_THREADS``: numpy's OpenBLAS otherwise starts a thread per core when the
   resamplers import it, N workers on N cores then hold N x (N - 1) idle BLAS threads, and the
   resamplers' products are far too small to gain from them. OpenBLAS reads the value once, when
   numpy loads; workers are exec'd afresh (never forked from the parent), so it is in their
   environment before anything imports numpy.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import trio

from recorder.config import Config
from recorder.errors import ConfigError
from recorder.service.components import open_components
from recorder.service.systemd import SystemdNotifier

logger = logging.getLogger(__name__)

#: Beyond the drain timeout, how long workers get to exit before SIGKILL.
STOP_MARGIN_S: Final = 15.0
#: A worker that ran this long before exiting is restarted after the first delay again.
HEALTHY_RUN_S: Final = 60.0
#: How often the parent looks at its workers' pings.
TICK_S: Final = 1.0
LISTEN_BACKLOG: Final = 1024
#: Variables a worker must not inherit: systemd's are the parent's alone.
_PARENT_ONLY_ENV: Final = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS")
#: Rule 4: glibc malloc arenas per worker (the trio thread and its few worker threads).
WORKER_MALLOC_ARENA_MAX: Final = 2
#: Rule 4: BLAS threads per worker (OpenBLAS, or an OpenMP build of it or another BLAS).
WORKER_BLAS_THREADS: Final = 1
WORKER_ENV_DEFAULTS: Final = {
    "MALLOC_ARENA_MAX": str(WORKER_MALLOC_ARENA_MAX),
    "OPENBLAS_NUM_THREADS": str(WORKER_BLAS_THREADS),
    "OMP_NUM_THREADS": str(WORKER_BLAS_THREADS),
}


def worker_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """A worker's environment: the parent's without systemd's variables (rule 1), with
    malloc arenas and BLAS threads bounded unless the operator chose a value (rule 4)."""
    env = {k: v for k, v in environ.items() if k not in _PARENT_ONLY_ENV}
    for name, value in WORKER_ENV_DEFAULTS.items():
        env.setdefault(name, value)
    return env


def open_listener(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """The ingress socket every worker accepts on (inheritable). ``ConfigError`` if taken.

    ``reuse_port``: for a worker started on its own (``ops/recorder@.service``), which binds
    its own socket beside its siblings' (``SO_REUSEPORT``: the kernel spreads connections).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"[service] listen_host/listen_port: cannot listen on {host}:{port}: {exc.strerror}"
        ) from exc
    sock.set_inheritable(True)
    return sock


@dataclass(slots=True)
class WorkerState:
    index: int
    pid: int | None = None
    ready: bool = False
    #: trio.current_time() of the last WATCHDOG (or READY) line.
    last_ping: float = -math.inf
    starts: int = 0
    exits: list[int] = field(default_factory=list)
    process: trio.Process | None = None


class Prefork:
    """The parent: starts, watches and restarts ``count`` workers (module rules)."""

    def __init__(
        self,
        config: Config,
        count: int,
        *,
        notifier: SystemdNotifier | None = None,
        log_level: str | None = None,
    ) -> None:
        if count < 1:
            raise ConfigError(f"--workers must be at least 1, got {count}")
        self.config = config
        self.count = count
        self.notifier = notifier or SystemdNotifier.from_environ()
        self._log_level = log_level
        self.workers = [WorkerState(i) for i in range(count)]
        self.stopping = False
        self._ready_sent = False
        self.port: int | None = None

    def _command(self, index: int, listen_fd: int, status_fd: int) -> list[str]:
        cmd = [sys.executable, "-m", "recorder"]
        if self._log_level:
            cmd += ["--log-level", self._log_level]
        cmd.append("serve")
        if self.config.source is not None:
            cmd += ["--config", str(self.config.source)]
        cmd += ["--worker-index", str(index), "--listen-fd", str(listen_fd)]
        cmd += ["--status-fd", str(status_fd)]
        return cmd

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> int:
        service = self.config.service
        listener = open_listener(service.listen_host, service.listen_port)
        self.port = int(listener.getsockname()[1])
        try:
            # Rule 1: migrate the catalog and set up keys once, before any worker races to.
            async with open_components(self.config):
                pass
            async with trio.open_nursery() as nursery:
                for worker in self.workers:
                    nursery.start_soon(self._keep_running, worker, listener.fileno())
                nursery.start_soon(self._watch)
                logger.info("workers starting count=%d port=%d", self.count, self.port)
                task_status.started(self.port)
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for signum in signals:
                        logger.info("signal %s: stopping the workers", signal.Signals(signum).name)
                        break
                    # Still receiving (and ignoring) while the workers drain: a second signal
                    # must not kill the parent and orphan them.
                    await self.stop()
                nursery.cancel_scope.cancel()
        finally:
            listener.close()
        return 0

    async def stop(self) -> None:
        """Rule 3: drain every worker, SIGKILL what overstays."""
        self.stopping = True
        self.notifier.stopping(status="draining workers")
        for worker in self.workers:
            _signal(worker, signal.SIGTERM)
        with trio.move_on_after(self.config.service.drain_timeout_s + STOP_MARGIN_S):
            for worker in self.workers:
                if worker.process is not None:
                    await worker.process.wait()
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                logger.error("worker %d did not stop in time: killed", worker.index)
                _signal(worker, signal.SIGKILL)
                await worker.process.wait()
        for worker in self.workers:
            if worker.process is not None:
                logger.info("worker %d stopped code=%s", worker.index, worker.process.returncode)

    async def _keep_running(self, worker: WorkerState, listen_fd: int) -> None:
        settings = self.config.workers
        delay = settings.restart_delay_s
        env = worker_environ(os.environ)
        while not self._stopped():
            read_fd, write_fd = os.pipe()
            try:
                process = await trio.lowlevel.open_process(
                    self._command(worker.index, listen_fd, write_fd),
                    pass_fds=(listen_fd, write_fd),
                    env=env,
                )
            finally:
                os.close(write_fd)
            worker.process = process
            worker.pid = process.pid
            worker.starts += 1
            worker.ready = False
            started = trio.current_time()
            logger.info("worker %d started pid=%d", worker.index, process.pid)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_status, worker, read_fd)
                code = await process.wait()
                nursery.cancel_scope.cancel()
            worker.ready = False
            worker.exits.append(code)
            if self._stopped():
                return  # ``stop`` reports it
            if trio.current_time() - started >= HEALTHY_RUN_S:
                delay = settings.restart_delay_s
            logger.error(
                "worker %d exited code=%d: starting it again in %.1f s", worker.index, code, delay
            )
            await trio.sleep(delay)
            delay = min(max(delay * 2, settings.restart_delay_s), settings.restart_max_s)

    def _stopped(self) -> bool:
        # A method, not the attribute: it changes while this task awaits.
        return self.stopping

    async def _read_status(self, worker: WorkerState, read_fd: int) -> None:
        stream = trio.lowlevel.FdStream(read_fd)
        buffer = b""
        async with stream:
            while True:
                data = await stream.receive_some(4096)
                if not data:
                    return
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    self._on_status(worker, line.decode("utf-8", "replace"))
                # A worker only ever sends short lines; anything else is cut off, not hoarded.
                buffer = buffer[-1024:]

    def _on_status(self, worker: WorkerState, line: str) -> None:
        if line == "READY=1":
            worker.ready = True
            worker.last_ping = trio.current_time()
            logger.info("worker %d ready", worker.index)
        elif line == "WATCHDOG=1":
            worker.last_ping = trio.current_time()

    async def _watch(self) -> None:
        """Rule 2: READY once all are ready; watchdog only while none is stale; kill the wedged."""
        stale_s = self.config.service.liveness_stale_s
        interval = min(self.notifier.ping_interval_s or TICK_S, TICK_S)
        while True:
            now = trio.current_time()
            ready = [w for w in self.workers if w.ready]
            if not self._ready_sent and len(ready) == self.count:
                self._ready_sent = True
                self.notifier.ready(status=f"{self.count} workers on port {self.port}")
                logger.info("all %d workers ready port=%s", self.count, self.port)
            stale = [w for w in ready if now - w.last_ping > stale_s]
            for worker in stale:
                logger.error(
                    "worker %d sent no watchdog ping for %.0f s: killed (it is restarted)",
                    worker.index,
                    now - worker.last_ping,
                )
                worker.ready = False
                _signal(worker, signal.SIGKILL)
            if not stale and not self.stopping:
                self.notifier.watchdog()
            await trio.sleep(interval)


def _signal(worker: WorkerState, signum: int) -> None:
    process = worker.process
    if process is not None and process.returncode is None:
        process.send_signal(signum)


async def serve_workers(config: Config, count: int, *, log_level: str | None = None) -> int:
    """``recorder serve --workers N``: run until SIGTERM or SIGINT. Returns the exit code."""
    return await Prefork(config, count, log_level=log_level).run()


def serve_command(
    config: Config,
    *,
    workers: int | None,
    worker_index: int | None = None,
    listen_fd: int | None = None,
    status_fd: int | None = None,
    log_level: str | None = None,
) -> int:
    """``recorder serve``: one process, the parent of ``--workers N``, or one of its workers."""
    from recorder.service.app import serve
    from recorder.service.workers import WorkerRole, worker_config

    if worker_index is not None:
        own_socket = None
        if listen_fd is None:
            # A worker of its own unit (ops/recorder@.service): no parent, its own socket.
            service = config.service
            own_socket = open_listener(service.listen_host, service.listen_port, reuse_port=True)
            listen_fd = own_socket.fileno()
        role = WorkerRole(worker_index, listen_fd=listen_fd, status_fd=status_fd)
        try:
            return trio.run(serve, worker_config(config, worker_index), role)
        finally:
            if own_socket is not None:
                own_socket.close()
    count = config.workers.count if workers is None else workers
    if workers is None and count <= 1:
        return trio.run(serve, config)
    return trio.run(functools.partial(serve_workers, config, count, log_level=log_level))
