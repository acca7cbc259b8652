"""One task per socket: trio-websocket's connection, driven by the task that reads it.

trio-websocket 0.12.2 (pinned) reads every socket in a background task that parses frames with
wsproto and hands each message through a memory channel to ``get_message()``: per 20 ms frame
that is the reader's wakeup, its channel send, and the reader of the channel's wakeup, before
our pump sees the message. ``DirectWebSocket`` is a subclass that starts no reader task:
``get_message()`` itself receives bytes, feeds the connection's own wsproto state and returns
the next complete message, answering WebSocket pings and the peer's close inline, in the same
task. Everything else (sending, the close frame, the message size limit, the handshake's
request and the rejection of a refused upgrade) is trio-websocket's own code, reused through
the subclass; the private parts it relies on are those of the exact pinned version, which
``tests/rtms/test_direct.py`` checks (it fails loudly if the installed version is another).

What changes with one task: the close handshake is completed by whoever closes (``aclose``
reads until the peer's close frame, bounded by the caller's deadline), and failures of the
transport or of the peer's framing surface as ``ConnectionClosed`` from ``get_message()`` in the
socket's own task, so they end only that socket.
"""

from __future__ import annotations

import collections
import contextlib
import os
import ssl
from typing import Final, cast

import trio
import wsproto.utilities
from trio_websocket import CloseReason, ConnectionClosed, WebSocketConnection
from trio_websocket._impl import _url_to_host
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    TextMessage,
)

from recorder.rtms._frames import split_read

#: The trio-websocket release whose private attributes this module relies on.
PINNED_TRIO_WEBSOCKET: Final = "0.12.2"
_ABNORMAL: Final = 1006
_TOO_BIG: Final = 1009
#: What trio's ``SocketStream.receive_some`` reads when not told (its ``DEFAULT_RECEIVE_SIZE``).
_DEFAULT_READ: Final = 65536


class DirectWebSocket(WebSocketConnection):
    """A client ``WebSocketConnection`` without a reader task (see the module docstring).

    One task at a time may call ``get_message()`` (as with any trio stream's receive side);
    sends may come from any task, serialised by trio-websocket's own lock.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        host: str,
        path: str,
        max_message_size: int,
        receive_buffer_size: int | None,
    ) -> None:
        super().__init__(
            stream,
            WSConnection(ConnectionType.CLIENT),
            host=host,
            path=path,
            message_queue_size=0,
            max_message_size=max_message_size,
            receive_buffer_size=receive_buffer_size,
        )
        #: Complete messages parsed from bytes already received, in order.
        self._ready: collections.deque[str | bytes] = collections.deque()
        #: True while a task waits in ``receive_some`` (a second receiver would be a bug).
        self._receiving = False
        #: The socket can give no more bytes (EOF, transport failure, protocol error).
        self._ended = False
        #: We closed (``aclose``): nothing more is delivered.
        self._closed_locally = False
        #: The TCP socket under a plain (not TLS) stream, read directly (``read_when_ready``).
        self._plain_socket = stream.socket if type(stream) is trio.SocketStream else None
        self._read_size = receive_buffer_size or _DEFAULT_READ

    # --- opening --------------------------------------------------------------------------

    async def open(self) -> None:
        """Send the upgrade request and read until the server accepts it.

        Raises ``ConnectionRejected`` (a ``HandshakeError``) for a refused upgrade and
        ``ConnectionClosed`` when the transport ends first. Messages that arrive in the same
        read as the acceptance are kept for ``get_message()``.
        """
        request = self._initial_request
        assert request is not None
        await self._send(request)
        while not self._open_handshake.is_set():
            if self._ended:
                raise ConnectionClosed(self._close_reason or CloseReason(_ABNORMAL, None))
            await self._receive_once()

    # --- receiving ------------------------------------------------------------------------

    async def get_message(self) -> str | bytes:
        """The next message; ``ConnectionClosed`` once the connection is closed and every
        message received before the peer's close has been returned.

        A failed *send* (the peer reset the connection: trio-websocket records a 1006 close)
        does not stop reading: the bytes the kernel received before the reset are still
        delivered, then the transport's end (EOF or the reset) ends the socket.
        """
        ready = self._ready
        while not ready:
            if self._ended or self._closed_locally:
                raise ConnectionClosed(self._close_reason or CloseReason(_ABNORMAL, None))
            await self._receive_once()
        return ready.popleft()

    async def _receive_once(self) -> None:
        """One ``receive_some`` and everything wsproto makes of it."""
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this socket")
        self._receiving = True
        data: bytes | bytearray
        try:
            if self._plain_socket is not None:
                data = await read_when_ready(self._plain_socket, self._read_size)
            else:
                data = await self._stream.receive_some(self._receive_buffer_size)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            data = b""
        finally:
            self._receiving = False
        if not data:
            self._ended = True
            if self._wsproto.state is not ConnectionState.CLOSED:
                await self._abort_web_socket()
            self._close_handshake.set()
            return
        later = data if type(data) is bytes else bytes(data)
        while later:
            if self._ended or self._wsproto.state is ConnectionState.CLOSED:
                return  # a close or an error in an earlier chunk: nothing more is parsed
            # Whole data frames are parsed by ``_frames``; wsproto gets the rest (see there).
            chunk, later = split_read(
                self._wsproto,
                later,
                self._max_message_size,
                self._ready.append,
                parts_pending=bool(self._message_parts),
            )
            if not chunk:
                continue
            try:
                self._wsproto.receive_data(chunk)
            except wsproto.utilities.RemoteProtocolError as err:
                # Broken framing: say so with wsproto's close frame, then end. During the
                # upgrade wsproto's hint is a server's HTTP rejection, which a client cannot
                # send (trio-websocket's reader task crashes trying): the socket just ends.
                if err.event_hint is not None and self._open_handshake.is_set():
                    with contextlib.suppress(
                        ConnectionClosed, wsproto.utilities.LocalProtocolError
                    ):
                        await self._send(err.event_hint)
                await self._end_transport()
                return
            await self._handle_events()

    async def _handle_events(self) -> None:
        """Everything wsproto parsed from one read. Messages and the peer's close are recorded
        before any answer (pong, close) is sent: a send is a checkpoint, and a cancellation
        there (the pump's watchdog timer) must not drop the events parsed after it."""
        answers: list[Ping | CloseConnection] = []
        try:
            for event in self._wsproto.events():
                if isinstance(event, TextMessage | BytesMessage):
                    if not self._take_part(event):
                        answers.clear()  # our 1009 close is the last frame we send
                        await self._too_big()
                        return
                elif isinstance(event, Ping):
                    answers.append(event)
                elif isinstance(event, CloseConnection):
                    self._on_close(event)
                    if self._wsproto.state is ConnectionState.REMOTE_CLOSING:
                        answers.append(event)
                else:
                    await self._handle_handshake_event(event)
        finally:
            for answer in answers:
                # A pong, or our answer to the peer's close (trio-websocket's own behaviour).
                with contextlib.suppress(ConnectionClosed, wsproto.utilities.LocalProtocolError):
                    await self._send(answer.response())

    async def _handle_handshake_event(self, event: object) -> None:
        """The upgrade's answer (and pongs, which we never ask for)."""
        if isinstance(event, AcceptConnection):
            await self._handle_accept_connection_event(event)
        elif isinstance(event, RejectConnection):
            await self._handle_reject_connection_event(event)  # raises without a body
        elif isinstance(event, RejectData):
            await self._handle_reject_data_event(event)  # raises once the body is in
        elif isinstance(event, Pong):
            await self._handle_pong_event(event)

    async def _too_big(self) -> None:
        """Close with 1009 after a message over the size limit (nothing more is delivered)."""
        reason = f"Exceeded maximum message size: {self._max_message_size} bytes"
        self._message_size = 0
        self._message_parts = []
        self._close_reason = CloseReason(_TOO_BIG, reason)
        self._ready.clear()
        self._ended = True
        self._close_handshake.set()
        with contextlib.suppress(ConnectionClosed):
            await self._send(CloseConnection(code=_TOO_BIG, reason=reason))

    def _take_part(self, event: TextMessage | BytesMessage) -> bool:
        """Add one frame's data; False when the message is over the size limit."""
        self._message_size += len(event.data)
        if self._message_size > self._max_message_size:
            return False
        data: str | bytes = event.data if isinstance(event.data, str) else bytes(event.data)
        if event.message_finished and not self._message_parts:
            # The common case: a message in one frame.
            self._message_size = 0
            self._ready.append(data)
            return True
        self._message_parts.append(data)
        if event.message_finished:
            parts = self._message_parts
            message: str | bytes
            if isinstance(event, BytesMessage):
                message = b"".join(cast("list[bytes]", parts))
            else:
                message = "".join(cast("list[str]", parts))
            self._message_size = 0
            self._message_parts = []
            self._ready.append(message)
        return True

    def _on_close(self, event: CloseConnection) -> None:
        """Record the peer's close (the caller answers it when the peer closed first)."""
        if self._wsproto.state is ConnectionState.REMOTE_CLOSING or self._close_reason is None:
            self._close_reason = CloseReason(event.code, event.reason or None)
        self._ended = True
        self._close_handshake.set()

    async def _end_transport(self) -> None:
        self._ended = True
        await self._close_stream()
        if self._close_reason is None:
            self._close_reason = CloseReason(_ABNORMAL, None)
        self._close_handshake.set()

    # --- closing --------------------------------------------------------------------------

    async def _aclose(self, code: int, reason: str | None) -> None:
        """Send our close frame and read until the peer's (the caller bounds how long)."""
        self._closed_locally = True
        if self._close_reason is not None:
            await self._close_stream()
            return
        self._ready.clear()
        try:
            if self._wsproto.state is ConnectionState.OPEN:
                self._close_reason = CloseReason(1000, None)
                await self._send(CloseConnection(code=code, reason=reason))
                while not self._close_handshake.is_set() and not self._ended:
                    if self._receiving:
                        # Another task reads (it sees the peer's close and sets the event).
                        await self._close_handshake.wait()
                    else:
                        await self._receive_once()
                        self._ready.clear()  # messages after our close are not delivered
        except ConnectionClosed:
            pass
        finally:
            self._ended = True
            await self._close_stream()


async def read_when_ready(sock: trio.socket.SocketType, max_bytes: int) -> bytes:
    """One read of a TCP socket: wait until it is readable, then read.

    ``SocketStream.receive_some`` tries the read first and waits only when it fails: on a paced
    stream, where the socket is empty whenever we come back to it, every message then costs a
    failed ``recv`` system call and a ``BlockingIOError`` raised and caught in Python. When data
    is already there (a lagging socket) waiting first costs one epoll registration more; both
    yield to the scheduler once per read either way. Raises what ``wait_readable`` raises for a
    socket closed meanwhile (``ClosedResourceError``) and ``OSError`` for a broken connection;
    b"" at the peer's end.
    """
    while True:
        await trio.lowlevel.wait_readable(sock)
        try:
            return os.read(sock.fileno(), max_bytes)
        except BlockingIOError:
            continue  # readiness was spurious: wait again


class ReadWhenReady(trio.abc.HalfCloseableStream):
    """A TCP stream whose reads are ``read_when_ready``: the transport under a TLS media
    socket's ``SSLStream``. The SSL stream asks its transport for bytes only when the records
    it holds cannot complete a read, so waiting first never holds back data it already has;
    each paced message then costs no failed ``recv``, as on a plain socket. Everything else is
    the wrapped stream's."""

    def __init__(self, inner: trio.SocketStream) -> None:
        self._inner = inner
        self.socket = inner.socket

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await read_when_ready(self.socket, max_bytes or _DEFAULT_READ)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def aclose(self) -> None:
        await self._inner.aclose()


async def connect_direct(
    url: str,
    ssl_context: ssl.SSLContext | None,
    *,
    max_message_size: int,
    receive_buffer_size: int | None,
    tls_read_when_ready: bool = True,
) -> DirectWebSocket:
    """Open a client connection to ``url`` driven by the calling task (no reader task).

    A ``wss://`` socket's TLS stream reads from ``ReadWhenReady`` (or, with
    ``tls_read_when_ready`` False, from trio's own ``SocketStream``, for comparison).

    Raises what ``trio_websocket.connect_websocket_url`` raises: ``HandshakeError`` (including
    ``ConnectionRejected`` for a refused upgrade), ``ConnectionClosed``, or ``OSError``. The
    caller bounds the time (the handshake has no timeout of its own).
    """
    host, port, resource, use_ssl = _url_to_host(url, ssl_context)
    stream: trio.abc.Stream
    if use_ssl is False:
        stream = await trio.open_tcp_stream(host, port)
    else:
        context = ssl.create_default_context() if use_ssl is True else use_ssl
        # What ``trio.open_ssl_over_tcp_stream`` builds, over a transport that waits first.
        tcp = await trio.open_tcp_stream(host, port)
        transport = ReadWhenReady(tcp) if tls_read_when_ready else tcp
        stream = trio.SSLStream(transport, context, server_hostname=host, https_compatible=True)
    host_header = host if port in (80, 443) else f"{host}:{port}"
    ws = DirectWebSocket(
        stream,
        host=host_header,
        path=resource,
        max_message_size=max_message_size,
        receive_buffer_size=receive_buffer_size,
    )
    try:
        await ws.open()
    except BaseException:
        with trio.CancelScope(shield=True):
            await ws._close_stream()
        raise
    return ws


__all__ = [
    "PINNED_TRIO_WEBSOCKET",
    "DirectWebSocket",
    "ReadWhenReady",
    "connect_direct",
    "read_when_ready",
]
