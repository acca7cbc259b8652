"""The last messages of a stream survive the peer's close, however the peer closes.

A server ends a stream with its final STREAM_STATE/SESSION_STATE and its close frame. A client
lagging behind under load reads all of it in one go, often behind a KEEP_ALIVE_REQ it still
owes an answer. The driver has parsed the close by the time the pump answers that request, so
the answer fails (ConnectionClosed), and the socket must still deliver the tail it already
holds. Worse still when the server closed its TCP socket after its bounded close handshake
timed out (the simulator does after 2 s, as any real server must): our late write makes the
peer's kernel answer with an RST, and the next write fails on the transport; what came before
the reset is still readable (the kernel keeps what it received). A failed write must not end
the socket before it is read.

Real parts: the pump and the signaling connection of the client, both socket drivers, over
loopback TCP against a hand-written wsproto server that ends the stream patiently (reads our
close answer), with a FIN without waiting, or with an RST (SO_LINGER 0).
"""

from __future__ import annotations

import functools
import json
import socket
import struct
from typing import Any

import pytest
import trio
import trio.lowlevel
from trio_websocket import ConnectionClosed
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Request, TextMessage

from recorder.rtms._direct import DirectWebSocket, connect_direct
from recorder.rtms._protocol_events import ConnectionEnded, ConnState, ProtocolEvent
from recorder.rtms._socket import close_ws, connect, pump
from recorder.rtms.client import ClientConfig
from recorder.rtms.messages import (
    KeepAliveRequest,
    SessionState,
    SessionStateUpdate,
    StreamState,
    StreamStateUpdate,
)
from recorder.rtms.protocol import SignalingConnection, StreamTerminated
from recorder.rtms.signature import handshake_signature

STREAM = "609340fb2a7946909659956c8aa9250c"
MEETING = "4444AAAiAAAAAiAiAiiAii=="
MEETING_ENDED = 6


def _tail() -> list[dict[str, Any]]:
    """Two keep-alive requests owed an answer, then the end of the stream."""
    return [
        KeepAliveRequest(timestamp=1).to_wire(),
        KeepAliveRequest(timestamp=2).to_wire(),
        {**StreamStateUpdate(state=StreamState.TERMINATED, timestamp_ms=5).to_wire(), "reason": 6},
        SessionStateUpdate(
            state=SessionState.STOPPED, stop_reason=MEETING_ENDED, timestamp_ms=6
        ).to_wire(),
    ]


async def _serve_and_end(stream: trio.SocketStream, *, end: str, ended: trio.Event) -> None:
    ws = WSConnection(ConnectionType.SERVER)
    handshake: dict[str, Any] | None = None
    while handshake is None:
        data = await stream.receive_some(4096)
        assert data, "the client went away during the handshake"
        ws.receive_data(data)
        for event in ws.events():
            if isinstance(event, Request):
                await stream.send_all(ws.send(AcceptConnection()))
            elif isinstance(event, TextMessage):
                handshake = json.loads(event.data)
    assert handshake["msg_type"] == 1
    answer = {"msg_type": 2, "status_code": 0, "reason": "", "media_server": {"server_urls": {}}}
    wire = ws.send(TextMessage(data=json.dumps(answer)))
    for msg in _tail():
        wire += ws.send(TextMessage(data=json.dumps(msg)))
    wire += ws.send(CloseConnection(code=1000))
    await stream.send_all(wire)
    if end == "graceful":
        # A patient server: it reads until our close answer, then closes. The tail is at risk
        # even so: the driver parses the close with the tail, before the pump answers the
        # keep-alives queued ahead of it, and those answers then fail.
        ended.set()
        while not any(isinstance(e, CloseConnection) for e in ws.events()):
            data = await stream.receive_some(4096)
            if not data:
                break
            ws.receive_data(data)
    elif end == "rst":
        # SO_LINGER 0: close() sends an RST at once.
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # "fin": no waiting for the client's close answer (its close-handshake timeout ran out):
    # the client's next write meets a closed socket, and the peer's kernel answers with an RST.
    await stream.aclose()
    ended.set()


@pytest.mark.parametrize("single_task", [True, False], ids=["direct", "reader-task"])
@pytest.mark.parametrize("end", ["graceful", "fin", "rst"])
async def test_a_lagging_client_reads_the_final_states_however_the_peer_closes(
    single_task: bool, end: str
) -> None:
    ended = trio.Event()
    config = ClientConfig(allow_insecure_loopback=True, single_task_sockets=single_task)
    conn = SignalingConnection(
        rtms_stream_id=STREAM,
        instance_id=MEETING,
        instance_key="meeting_uuid",
        signature=handshake_signature("cid", "secret", MEETING, STREAM),
    )
    seen: list[ProtocolEvent] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(
                functools.partial(trio.serve_tcp, host="127.0.0.1"),
                functools.partial(_serve_and_end, end=end, ended=ended),
                0,
            )
            port = listener.socket.getsockname()[1]
            ws = await connect(nursery, f"ws://127.0.0.1:{port}/signaling", config, media=False)
            conn.initiate(trio.current_time())
            await pump(ws, conn, seen.extend, 5.0, until_open=True)
            assert conn.state is ConnState.OPEN
            # The client is busy elsewhere while the server sends the tail and closes.
            await ended.wait()
            await pump(ws, conn, seen.extend, 5.0)
            await close_ws(ws, 1.0)
            nursery.cancel_scope.cancel()
    terminated = [e for e in seen if isinstance(e, StreamTerminated)]
    assert [(e.reason, e.source) for e in terminated] == [
        (MEETING_ENDED, "stream"),
        (MEETING_ENDED, "session"),
    ]
    # The socket's end is reported once, after the tail.
    [end_index] = [i for i, e in enumerate(seen) if isinstance(e, ConnectionEnded)]
    assert end_index > seen.index(terminated[-1])
    assert conn.state is ConnState.CLOSED


# --- the direct driver on its own ----------------------------------------------------------------


async def _serve_tail_then(
    stream: trio.SocketStream, *, messages: list[str], extra: bytes, ended: trio.Event
) -> None:
    """Accept, send ``messages`` (and ``extra`` raw frames) in one write, then RST."""
    ws = WSConnection(ConnectionType.SERVER)
    while True:
        data = await stream.receive_some(4096)
        assert data
        ws.receive_data(data)
        if any(isinstance(e, Request) for e in ws.events()):
            break
    await stream.send_all(ws.send(AcceptConnection()))
    await ended.wait()  # the test's "client" is connected and about to lag
    wire = b"".join(ws.send(TextMessage(data=m)) for m in messages) + extra
    await stream.send_all(wire)
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await stream.aclose()


async def test_the_direct_driver_reads_what_the_kernel_holds_after_a_send_failed() -> None:
    # 40 messages of 1 kB (within the kernel's buffers, so the peer's write completes), read
    # 4 kB at a time: most of it is still in the kernel when the first answer fails.
    messages = [f"{i:04d}" + "x" * 1000 for i in range(40)]
    go = trio.Event()
    got: list[str | bytes] = []
    failed_sends = 0
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(
                functools.partial(trio.serve_tcp, host="127.0.0.1"),
                functools.partial(_serve_tail_then, messages=messages, extra=b"", ended=go),
                0,
            )
            port = listener.socket.getsockname()[1]
            ws = await connect_direct(
                f"ws://127.0.0.1:{port}/signaling",
                None,
                max_message_size=65536,
                receive_buffer_size=4096,
            )
            go.set()
            # Wait until the reset is in: a send fails (not a timing guess: retried until so).
            while True:
                try:
                    await ws.send_message("answer")
                except ConnectionClosed:
                    failed_sends += 1
                    break
                await trio.lowlevel.checkpoint()
            while True:
                try:
                    got.append(await ws.get_message())
                except ConnectionClosed:
                    break
            await ws.aclose()
            nursery.cancel_scope.cancel()
    assert failed_sends == 1
    assert got == messages


class _CancelOnFirstSend(trio.abc.Stream):
    """A real socket stream whose first send after ``arm`` is where a cancellation lands
    (as the pump's watchdog timer can, at any checkpoint)."""

    def __init__(self, inner: trio.SocketStream) -> None:
        self._inner = inner
        self.scope: trio.CancelScope | None = None

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        scope, self.scope = self.scope, None
        if scope is not None:
            scope.cancel()
            await trio.lowlevel.checkpoint()
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_a_cancel_while_answering_a_ping_loses_none_of_the_messages_read_with_it() -> None:
    messages = ["before", "after 1", "after 2"]
    opened = trio.Event()

    async def serve(stream: trio.SocketStream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        while not any(isinstance(e, Request) for e in ws.events()):
            data = await stream.receive_some(4096)
            assert data
            ws.receive_data(data)
        await stream.send_all(ws.send(AcceptConnection()))
        await opened.wait()  # not in the same read as the upgrade's answer
        wire = ws.send(TextMessage(data=messages[0])) + ws.send(Ping(b"?"))
        wire += b"".join(ws.send(TextMessage(data=m)) for m in messages[1:])
        await stream.send_all(wire)  # one read on the client side: message, ping, messages
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(
                functools.partial(trio.serve_tcp, host="127.0.0.1"), serve, 0
            )
            port = listener.socket.getsockname()[1]
            stream = _CancelOnFirstSend(await trio.open_tcp_stream("127.0.0.1", port))
            ws = DirectWebSocket(
                stream,
                host=f"127.0.0.1:{port}",
                path="/signaling",
                max_message_size=65536,
                receive_buffer_size=65536,
            )
            await ws.open()
            opened.set()
            with trio.CancelScope() as scope:
                stream.scope = scope
                await ws.get_message()  # the pong's send is cancelled
            assert scope.cancelled_caught
            got = [await ws.get_message() for _ in messages]
            await ws._close_stream()
            nursery.cancel_scope.cancel()
    assert got == messages
