"""Socket I/O for the engine: connect (with the URL policy), pump frames, flush, close.

The protocol state lives in the sans-IO connections; these helpers only move frames between a
trio-websocket connection and one of them, and translate library errors at this boundary.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

import trio
import trio_websocket
import wsproto.utilities
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection

from recorder.errors import ConnectionLost, ConnectTimeout, UpgradeRefused
from recorder.rtms._direct import connect_direct
from recorder.rtms._protocol_events import ConnectionEnded, ConnState, ProtocolEvent
from recorder.rtms.protocol import _Connection
from recorder.rtms.urls import check_url

if TYPE_CHECKING:
    from recorder.rtms.client import ClientConfig


def _where(url: str) -> str:
    """Scheme and host of a URL for logs (never the path or query)."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}"
    except ValueError:
        return "<malformed url>"


#: What trio-websocket's reader task may raise: a refused upgrade (``ConnectionRejected`` is a
#: ``HandshakeError``), wsproto refusing a frame (e.g. one over the size limit while closing),
#: or the transport failing under it.
_READER_FAILURES: Final = (
    HandshakeError,
    wsproto.utilities.LocalProtocolError,
    wsproto.utilities.RemoteProtocolError,
    trio.BrokenResourceError,
    OSError,
)


class _ReaderNursery:
    """Hands trio-websocket the I/O nursery for its reader task, with the task's failures kept
    inside this socket.

    trio-websocket raises a refused upgrade (HTTP 404 for a stream that is gone) and some
    wsproto errors *in its reader task*; started straight in the I/O nursery they would cancel
    every socket of the stream, and the engagement with them. Here they end only this socket:
    its message channel closes (the reader's ``async with``), which readers see as a close.
    """

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self.failure: BaseException | None = None
        self.failed = trio.Event()

    def start_soon(
        self, fn: Callable[..., Awaitable[object]], *args: object, name: object = None
    ) -> None:
        async def contained() -> None:
            try:
                await fn(*args)
            except _READER_FAILURES as exc:
                self.failure = exc
                self.failed.set()

        self._nursery.start_soon(contained, name=name)


async def connect(
    io_nursery: trio.Nursery, url: str, config: ClientConfig, *, media: bool
) -> WebSocketConnection:
    """Connect. By default (``single_task_sockets``) the socket has no reader task: the task
    that pumps it reads it (``_direct``), and ``close_ws`` completes the closing handshake.
    Otherwise trio-websocket's reader task lives in the I/O nursery, outside the cancel scopes
    of the engine, so that a cancelled socket still completes its closing handshake."""
    check_url(
        url,
        allowed_hosts=config.allowed_hosts,
        allow_insecure_loopback=config.allow_insecure_loopback,
    )
    if config.single_task_sockets:
        return await _connect_direct(url, config, media=media)
    readers = _ReaderNursery(io_nursery)
    connected: list[WebSocketConnection] = []

    async def open_socket(race: trio.CancelScope) -> None:
        try:
            connected.append(
                await trio_websocket.connect_websocket_url(
                    readers,  # type: ignore[arg-type]  # duck-typed: only start_soon is used
                    url,
                    config.ssl_context,
                    message_queue_size=8,
                    max_message_size=config.max_message_size,
                    receive_buffer_size=config.media_receive_buffer if media else 16384,
                )
            )
        except (HandshakeError, OSError, ConnectionClosed) as exc:
            readers.failure = exc
        race.cancel()

    async def refused(race: trio.CancelScope) -> None:
        # A refused upgrade never sets the handshake event connect_websocket_url waits on.
        await readers.failed.wait()
        race.cancel()

    try:
        with trio.fail_after(config.connect_timeout_s):
            async with trio.open_nursery() as race:
                race.start_soon(open_socket, race.cancel_scope)
                race.start_soon(refused, race.cancel_scope)
    except trio.TooSlowError as exc:
        raise ConnectTimeout(f"connect to {_where(url)} timed out") from exc
    if not connected:
        failure = readers.failure
        if isinstance(failure, trio_websocket.ConnectionRejected):
            raise UpgradeRefused(
                f"connect to {_where(url)} failed: {_describe(failure)}", failure.status_code
            ) from failure
        raise ConnectionLost(f"connect to {_where(url)} failed: {_describe(failure)}") from failure
    return connected[0]


async def _connect_direct(url: str, config: ClientConfig, *, media: bool) -> WebSocketConnection:
    """Connect a socket driven by the task that reads it (``_direct``): no reader task, so a
    refused upgrade or a broken transport is raised here or ends ``get_message()`` in the
    socket's own task, never anyone else's."""
    try:
        with trio.fail_after(config.connect_timeout_s):
            return await connect_direct(
                url,
                config.ssl_context,
                max_message_size=config.max_message_size,
                receive_buffer_size=config.media_receive_buffer if media else 16384,
                tls_read_when_ready=config.tls_read_when_ready,
            )
    except trio.TooSlowError as exc:
        raise ConnectTimeout(f"connect to {_where(url)} timed out") from exc
    except trio_websocket.ConnectionRejected as exc:
        raise UpgradeRefused(
            f"connect to {_where(url)} failed: {_describe(exc)}", exc.status_code
        ) from exc
    except (HandshakeError, OSError, ConnectionClosed, *_READER_FAILURES) as exc:
        raise ConnectionLost(f"connect to {_where(url)} failed: {_describe(exc)}") from exc


def _describe(failure: BaseException | None) -> str:
    if isinstance(failure, trio_websocket.ConnectionRejected):
        return f"upgrade refused with HTTP {failure.status_code}"
    return type(failure).__name__


async def close_ws(ws: WebSocketConnection, timeout_s: float) -> None:
    """Close handshake (bounded, shielded), then make sure the TCP socket is gone."""
    with trio.CancelScope(shield=True) as scope:
        scope.deadline = trio.current_time() + timeout_s
        with contextlib.suppress(ConnectionClosed, OSError, trio.BrokenResourceError):
            await ws.aclose()
    # A peer that never answers the close (e.g. stuck sending an oversized frame) would keep
    # the TCP socket open. trio-websocket 0.12.2 (pinned) has no public abort; closing an
    # already closed stream is a no-op.
    with trio.CancelScope(shield=True):
        await ws._close_stream()


async def flush(ws: WebSocketConnection, conn: _Connection) -> None:
    """Send what ``conn`` has queued. A failed send drops the rest and does NOT end ``conn``.

    The peer ends a stream with its last messages and its close frame. A client lagging behind
    reads them in one go, often behind a keep-alive request it still has to answer; the driver
    has parsed the close by then, so that answer fails, and (worse) a peer whose bounded close
    handshake timed out has closed its TCP socket, so our late write meets an RST. What the
    peer sent before is still readable (the direct driver's queue, the reader-task driver's
    channel, the kernel's receive buffer), and it is the tail that matters: the final
    STREAM_STATE/SESSION_STATE. So the socket ends when *reading* ends (``pump`` sees
    ``ConnectionClosed`` after the last message; both drivers end reading once the transport
    is broken), never on a write.
    """
    for text in conn.data_to_send():
        try:
            await ws.send_message(text)
        except (ConnectionClosed, trio.BrokenResourceError, OSError):
            return


async def pump(
    ws: WebSocketConnection,
    conn: _Connection,
    handle: Callable[[list[ProtocolEvent]], None],
    handshake_timeout_s: float,
    *,
    until_open: bool = False,
) -> None:
    """Read frames into ``conn`` until it ends (or leaves HANDSHAKING, with ``until_open``).

    One cancel scope serves many messages, and its deadline is not touched per message (moving
    a trio deadline costs several µs): the connection's deadline only ever moves later (an
    inbound frame refreshes the watchdog, leaving HANDSHAKING drops the handshake timeout), so
    the scope is armed with the deadline of the moment and, when it fires, ``tick`` decides
    whether the connection really timed out; if not (frames came in meanwhile), it is re-armed.
    That costs one wakeup per watchdog period on a busy socket instead of two deadline moves
    per message. The scope is disarmed while replies are sent, so a send is never cut in half.
    """
    handshake_deadline = trio.current_time() + handshake_timeout_s
    # The run's clock itself: trio.current_time() is two Python calls more, once per message.
    current_time = trio.lowlevel.current_clock().current_time
    await flush(ws, conn)
    while True:
        with trio.CancelScope() as timer:
            armed = False
            while True:
                state = conn.state
                if state in _ENDED:
                    return
                handshaking = state is ConnState.HANDSHAKING
                if until_open and not handshaking:
                    return
                if not armed:
                    deadline = conn.deadline() or math.inf
                    if handshaking:
                        deadline = min(deadline, handshake_deadline)
                    timer.deadline = deadline
                    armed = True
                try:
                    data: str | bytes | None = await ws.get_message()
                except ConnectionClosed:
                    data = None
                conn.receive_message(data, now=current_time())
                handle(conn.events())
                if data is None or conn.has_data_to_send():
                    timer.deadline = math.inf
                    armed = False
                    await flush(ws, conn)
                    if data is None:
                        return
        now = current_time()
        if conn.state is ConnState.HANDSHAKING and now >= handshake_deadline:
            conn.close()
            handle([ConnectionEnded("handshake_timeout", during_handshake=True)])
            return
        conn.tick(now)
        handle(conn.events())
        await flush(ws, conn)


_ENDED = (ConnState.CLOSED, ConnState.ERROR)
