"""The one-task WebSocket driver (``recorder.rtms._direct``) against real peers.

Peers: trio-websocket's own server over loopback TCP (what the simulator uses), and, for
byte-level hostility (arbitrary TCP segmentation, broken framing) and for a peer that resets
or drops the TCP connection mid-stream (plain and TLS), a wsproto server written by hand over a
real loopback socket.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio_websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    WebSocketRequest,
    serve_websocket,
)
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Message, Request, TextMessage

from recorder.errors import ConnectionLost, UpgradeRefused
from recorder.rtms import _direct
from recorder.rtms._direct import (
    PINNED_TRIO_WEBSOCKET,
    DirectWebSocket,
    ReadWhenReady,
    connect_direct,
)
from recorder.rtms._protocol_events import ConnectionEnded, MediaReady, ProtocolEvent
from recorder.rtms._socket import close_ws, connect, pump
from recorder.rtms.client import ClientConfig
from recorder.rtms.events import AudioPacket
from recorder.rtms.messages import AudioParams, MediaParams
from recorder.rtms.protocol import MediaConnection
from recorder.testing.tls import SelfSignedCertificate

LIMIT = 16 * 1024


def test_installed_trio_websocket_is_the_pinned_version_this_driver_was_written_for() -> None:
    installed = trio_websocket.__version__
    assert installed == PINNED_TRIO_WEBSOCKET, (
        f"trio-websocket {installed} is installed, but recorder/rtms/_direct.py drives the "
        f"private state of {PINNED_TRIO_WEBSOCKET} (_wsproto, _stream, _send, the handshake "
        "handlers): re-read trio_websocket/_impl.py, adapt DirectWebSocket, then move the pin"
    )
    impl = trio_websocket._impl
    connection = impl.WebSocketConnection
    for name in (
        "_send",
        "_close_stream",
        "_abort_web_socket",
        "_handle_accept_connection_event",
        "_handle_reject_connection_event",
        "_handle_reject_data_event",
        "_handle_pong_event",
    ):
        assert inspect.iscoroutinefunction(getattr(connection, name)), name
    init = inspect.signature(connection.__init__).parameters
    assert {"max_message_size", "receive_buffer_size", "message_queue_size"} <= set(init)
    assert callable(impl._url_to_host)
    source = inspect.getsource(connection.__init__)
    for attribute in (
        "self._wsproto",
        "self._stream ",
        "self._initial_request",
        "self._message_parts",
        "self._message_size",
        "self._open_handshake",
        "self._close_handshake",
        "self._receive_buffer_size",
        "self._max_message_size",
    ):
        assert attribute in source, attribute


# --- against trio-websocket's server ------------------------------------------------------------


Handler = Callable[[WebSocketConnection], Awaitable[None]]


@asynccontextmanager
async def ws_server(handler: Handler, *, reject: int | None = None) -> AsyncIterator[str]:
    async def serve(request: WebSocketRequest) -> None:
        if reject is not None:
            await request.reject(reject, body=b"gone")
            return
        ws = await request.accept()
        # The client may go away first: some tests do that on purpose.
        with contextlib.suppress(ConnectionClosed):
            await handler(ws)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, serve, "127.0.0.1", 0, None)
        yield f"ws://127.0.0.1:{server.port}/media/audio"
        nursery.cancel_scope.cancel()


async def open_direct(url: str, *, limit: int = LIMIT) -> DirectWebSocket:
    return await connect_direct(url, None, max_message_size=limit, receive_buffer_size=4096)


async def test_messages_in_order_fragmented_ones_joined_and_pings_answered_inline() -> None:
    server_done = trio.Event()
    pong_seen: list[bool] = []

    async def handler(ws: WebSocketConnection) -> None:
        for i in range(50):
            await ws.send_message(f"text {i}")
        await ws.send_message(b"\x00\x01binary")
        # A fragmented text message, in three frames.
        await ws._send(TextMessage(data="frag-", message_finished=False))
        await ws._send(TextMessage(data="ment-", message_finished=False))
        await ws._send(TextMessage(data="ed", message_finished=True))
        # ping() returns only once the client's pong came back (sent from get_message).
        await ws.ping(b"are you there")
        pong_seen.append(True)
        await ws.send_message("after ping")
        await server_done.wait()

    with trio.fail_after(10):
        async with ws_server(handler) as url:
            ws = await open_direct(url)
            got = [await ws.get_message() for _ in range(53)]
            assert got[:50] == [f"text {i}" for i in range(50)]
            assert got[50:] == [b"\x00\x01binary", "frag-ment-ed", "after ping"]
            assert pong_seen == [True]
            server_done.set()
            await ws.aclose()
            with pytest.raises(ConnectionClosed):
                await ws.get_message()


async def test_peer_close_delivers_what_came_before_then_closes_with_the_peers_code() -> None:
    closed_cleanly: list[bool] = []

    async def handler(ws: WebSocketConnection) -> None:
        await ws.send_message("last words")
        await ws.aclose(code=4000, reason="stream over")
        # trio-websocket's aclose waits for our answer to its close frame.
        closed_cleanly.append(True)

    with trio.fail_after(10):
        async with ws_server(handler) as url:
            ws = await open_direct(url)
            assert await ws.get_message() == "last words"
            with pytest.raises(ConnectionClosed) as info:
                await ws.get_message()
            assert info.value.reason is not None
            assert info.value.reason.code == 4000
            await trio.testing.wait_all_tasks_blocked()
            assert closed_cleanly == [True]
            await ws.aclose()  # idempotent after the peer's close


async def test_our_close_completes_the_handshake_and_the_peer_sees_1000() -> None:
    peer_saw: list[int | None] = []

    async def handler(ws: WebSocketConnection) -> None:
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed as exc:
            peer_saw.append(exc.reason.code if exc.reason else None)

    with trio.fail_after(10):
        async with ws_server(handler) as url:
            ws = await open_direct(url)
            await ws.send_message("hello")
            await ws.aclose()
            while not peer_saw:
                await trio.lowlevel.checkpoint()
                await trio.testing.wait_all_tasks_blocked()
            assert peer_saw == [1000]
            with pytest.raises(ConnectionClosed):
                await ws.send_message("too late")


async def test_an_oversized_message_closes_only_that_socket_with_1009() -> None:
    async def handler(ws: WebSocketConnection) -> None:
        await ws.send_message("x" * (LIMIT + 1))
        await ws.send_message("never read")
        with trio.move_on_after(5):
            while True:
                await ws.get_message()

    async def healthy(ws: WebSocketConnection) -> None:
        for i in range(5):
            await ws.send_message(f"ok {i}")
        with trio.move_on_after(5):
            await ws.get_message()

    with trio.fail_after(10):
        async with ws_server(handler) as bad_url, ws_server(healthy) as good_url:
            bad, good = await open_direct(bad_url), await open_direct(good_url)
            with pytest.raises(ConnectionClosed) as info:
                await bad.get_message()
            assert info.value.reason is not None
            assert info.value.reason.code == 1009
            assert [await good.get_message() for _ in range(5)] == [f"ok {i}" for i in range(5)]
            await bad.aclose()
            await good.aclose()


async def test_a_refused_upgrade_is_upgrade_refused_with_the_http_status() -> None:
    async def never(ws: WebSocketConnection) -> None:
        raise AssertionError("accepted")

    config = ClientConfig(
        allow_insecure_loopback=True, connect_timeout_s=5, single_task_sockets=True
    )
    with trio.fail_after(10):
        async with ws_server(never, reject=404) as url:
            with pytest.raises(ConnectionRejected):
                await open_direct(url)
            async with trio.open_nursery() as nursery:
                with pytest.raises(UpgradeRefused) as info:
                    await connect(nursery, url, config, media=True)
            assert info.value.http_status == 404


# --- a hand-written wsproto server over a real socket, for byte-level hostility -----------------


Script = Callable[[trio.SocketStream, WSConnection], Awaitable[None]]


@asynccontextmanager
async def raw_server(script: Script, *, upgrade: bool = True) -> AsyncIterator[str]:
    async def serve(stream: trio.SocketStream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        if upgrade:
            while True:
                data = await stream.receive_some(4096)
                if not data:
                    return
                ws.receive_data(data)
                if any(isinstance(e, Request) for e in ws.events()):
                    break
            await stream.send_all(ws.send(AcceptConnection()))
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await script(stream, ws)

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(
            functools.partial(trio.serve_tcp, host="127.0.0.1"), serve, 0
        )
        port = listener.socket.getsockname()[1]
        yield f"ws://127.0.0.1:{port}/media/audio"
        nursery.cancel_scope.cancel()


async def hold(stream: trio.SocketStream) -> None:
    with trio.move_on_after(5):
        while await stream.receive_some(4096):
            pass


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    messages=st.lists(
        st.one_of(st.text(max_size=300), st.binary(max_size=300)), min_size=1, max_size=12
    ),
    cuts=st.lists(st.integers(min_value=1, max_value=97), min_size=1, max_size=40),
    fragment=st.integers(min_value=1, max_value=64),
)
def test_any_tcp_segmentation_and_fragmentation_yields_the_same_messages(
    messages: list[str | bytes], cuts: list[int], fragment: int
) -> None:
    async def script(stream: trio.SocketStream, ws: WSConnection) -> None:
        wire = b""
        for message in messages:
            parts = [message[i : i + fragment] for i in range(0, len(message), fragment)] or [
                message
            ]
            for index, part in enumerate(parts):
                wire += ws.send(Message(data=part, message_finished=index == len(parts) - 1))
        offset, turn = 0, 0
        while offset < len(wire):
            size = cuts[turn % len(cuts)]
            await stream.send_all(wire[offset : offset + size])
            offset, turn = offset + size, turn + 1
        await hold(stream)

    async def main() -> None:
        with trio.fail_after(10):
            async with raw_server(script) as url:
                ws = await open_direct(url)
                got = [await ws.get_message() for _ in messages]
                assert got == messages
                await ws._close_stream()

    trio.run(main)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x83\x01x",  # reserved opcode 3
        b"\x81\x7f" + b"\xff" * 8,  # a 64-bit length with the top bit set
        b"\xc1\x01x",  # RSV1 without an extension
        b"\x81\x81\x00\x00\x00\x00x",  # a masked frame from the server
        b"\x01\x01a\x01\x01b",  # a new text message in the middle of one
    ],
)
async def test_broken_framing_ends_the_socket_with_a_close_code(garbage: bytes) -> None:
    async def script(stream: trio.SocketStream, ws: WSConnection) -> None:
        await stream.send_all(ws.send(TextMessage(data="before")) + garbage)
        await hold(stream)

    with trio.fail_after(10):
        async with raw_server(script) as url:
            ws = await open_direct(url)
            assert await ws.get_message() == "before"
            with pytest.raises(ConnectionClosed) as info:
                await ws.get_message()
            assert info.value.reason is not None
            assert info.value.reason.code in (1002, 1006, 1007)
            with trio.move_on_after(2):
                await ws.aclose()


async def test_an_http_answer_that_is_no_upgrade_and_a_silent_peer_are_connection_errors() -> None:
    async def teapot(stream: trio.SocketStream, ws: WSConnection) -> None:
        await stream.receive_some(4096)
        await stream.send_all(b"HTTP/1.1 418 I'm a teapot\r\ncontent-length: 0\r\n\r\n")
        await hold(stream)

    async def hang_up(stream: trio.SocketStream, ws: WSConnection) -> None:
        await stream.receive_some(4096)
        await stream.aclose()

    async def nonsense(stream: trio.SocketStream, ws: WSConnection) -> None:
        await stream.receive_some(4096)
        await stream.send_all(b"\x00\xffnot http at all\r\n\r\n")
        await hold(stream)

    config = ClientConfig(
        allow_insecure_loopback=True, connect_timeout_s=2, single_task_sockets=True
    )
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            async with raw_server(teapot, upgrade=False) as url:
                with pytest.raises(UpgradeRefused) as refused:
                    await connect(nursery, url, config, media=True)
                assert refused.value.http_status == 418
            for script in (hang_up, nonsense):
                async with raw_server(script, upgrade=False) as url:
                    with pytest.raises(ConnectionLost) as info:
                        await connect(nursery, url, config, media=True)
                    assert "failed" in str(info.value)


async def test_a_second_receiver_is_refused_not_interleaved() -> None:
    async def script(stream: trio.SocketStream, ws: WSConnection) -> None:
        await hold(stream)

    with trio.fail_after(10):
        async with raw_server(script) as url:
            ws = await open_direct(url)
            errors: list[BaseException] = []

            async def second() -> None:
                try:
                    await ws.get_message()
                except trio.BusyResourceError as exc:
                    errors.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(ws.get_message)
                await trio.testing.wait_all_tasks_blocked()
                await second()
                nursery.cancel_scope.cancel()
            assert len(errors) == 1
            await ws._close_stream()


def test_the_driver_starts_no_task_of_its_own() -> None:
    # No nursery anywhere in the driver's signatures: nothing outlives the calling task.
    for fn in (_direct.connect_direct, DirectWebSocket.__init__):
        params: dict[str, Any] = dict(inspect.signature(fn).parameters)
        assert not any("nursery" in name for name in params)


# --- the two read paths: a plain TCP socket read directly, TLS through the stream ---------------


def _self_signed(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh self-signed certificate for 127.0.0.1, and a client
    context that trusts exactly that certificate."""
    certificate = SelfSignedCertificate.create(directory)
    return certificate.server_context(), certificate.client_context()


async def test_tls_sockets_are_read_through_the_stream_with_the_same_messages(
    tmp_path: Path,
) -> None:
    server_context, client_context = _self_signed(tmp_path)
    messages: list[str | bytes] = [f"text {i}" for i in range(30)] + [b"\x00bin", "x" * 5000]

    async def serve(request: WebSocketRequest) -> None:
        ws = await request.accept()
        with contextlib.suppress(ConnectionClosed):
            for message in messages:
                await ws.send_message(message)
            await ws.ping(b"tls")  # answered inline by get_message()
            await ws.send_message("after ping")
            await trio.sleep_forever()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_websocket, serve, "127.0.0.1", 0, server_context)
            ws = await connect_direct(
                f"wss://127.0.0.1:{server.port}/media",
                client_context,
                max_message_size=LIMIT,
                receive_buffer_size=4096,
            )
            assert ws._plain_socket is None  # TLS: the SSL stream decrypts, so it is read
            # ... from a transport that waits for readability before each read.
            assert isinstance(ws._stream, trio.SSLStream)
            assert isinstance(ws._stream.transport_stream, ReadWhenReady)
            got = [await ws.get_message() for _ in range(len(messages) + 1)]
            assert got == [*messages, "after ping"]
            await ws.aclose()
            nursery.cancel_scope.cancel()


async def test_a_plain_socket_closed_under_a_waiting_reader_ends_the_connection() -> None:
    async def script(stream: trio.SocketStream, ws: WSConnection) -> None:
        await stream.send_all(ws.send(TextMessage(data="first")))
        await hold(stream)

    with trio.fail_after(10):
        async with raw_server(script) as url:
            ws = await open_direct(url)
            assert ws._plain_socket is not None  # plain TCP: read directly
            assert await ws.get_message() == "first"
            async with trio.open_nursery() as nursery:

                async def close_soon() -> None:
                    await trio.testing.wait_all_tasks_blocked()
                    await ws._close_stream()  # the reader waits on this very socket

                nursery.start_soon(close_soon)
                with pytest.raises(ConnectionClosed) as info:
                    await ws.get_message()
            assert info.value.reason is not None
            assert info.value.reason.code == 1006


async def test_a_tls_server_whose_certificate_is_not_trusted_is_refused(tmp_path: Path) -> None:
    """Certificates are verified on the wait-first transport as on trio's own: a server
    presenting a certificate the client does not trust gets no connection (the same test with
    the trusting context above connects)."""
    server_context, _ = _self_signed(tmp_path)
    (tmp_path / "other").mkdir()
    _, untrusting_client = _self_signed(tmp_path / "other")

    async def serve(request: WebSocketRequest) -> None:
        await request.accept()  # pragma: no cover (the client never completes the handshake)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_websocket, serve, "127.0.0.1", 0, server_context)
            # trio-websocket's send reports the failed TLS handshake as an abnormal close.
            with pytest.raises(ConnectionClosed) as refused:
                await connect_direct(
                    f"wss://127.0.0.1:{server.port}/media",
                    untrusting_client,
                    max_message_size=LIMIT,
                    receive_buffer_size=4096,
                )
            assert refused.value.reason.code == 1006
            nursery.cancel_scope.cancel()


# --- a peer that goes away mid-stream: both read paths, one contract ---------------------------


#: The two ways the peer leaves: a TCP reset (socket closed with SO_LINGER 0), and a TCP close
#: with no WebSocket close frame and (over TLS) no close_notify.
ENDINGS = ("reset", "abrupt_close")
#: How the client reads: plain TCP read directly, TLS through ``ReadWhenReady``, and TLS over
#: trio's own ``SocketStream`` (``ClientConfig.tls_read_when_ready`` False).
READ_PATHS = ("plain", "tls_read_when_ready", "tls_trio_transport")


@asynccontextmanager
async def leaving_server(
    read_path: str, ending: str, directory: Path, frames: list[str], leave: trio.Event
) -> AsyncIterator[tuple[str, ClientConfig]]:
    """A media server (TLS unless ``plain``): it accepts the upgrade and the media handshake,
    sends ``frames``, then, once ``leave`` is set, leaves by ``ending`` without a close frame.
    Yields its URL and a client config (TLS: trusting exactly its certificate)."""
    tls = None if read_path == "plain" else SelfSignedCertificate.create(directory)
    server_context = tls.server_context() if tls is not None else None

    async def serve(tcp: trio.SocketStream) -> None:
        stream: trio.abc.Stream = tcp
        if server_context is not None:
            stream = trio.SSLStream(tcp, server_context, server_side=True)
        ws = WSConnection(ConnectionType.SERVER)

        async def until(kind: type) -> None:
            while not any(isinstance(event, kind) for event in ws.events()):
                data = await stream.receive_some(4096)
                assert data, "the client went away"
                ws.receive_data(data)

        await until(Request)
        await stream.send_all(ws.send(AcceptConnection()))
        # Read the media handshake request: a socket closed with unread bytes would send a
        # reset where this test means an orderly TCP close.
        await until(TextMessage)
        answer = json.dumps({"msg_type": 4, "status_code": 0, "reason": ""})
        wire = b"".join(ws.send(TextMessage(data=text)) for text in [answer, *frames])
        await stream.send_all(wire)
        await leave.wait()
        if ending == "reset":
            tcp.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The TCP socket itself: no WebSocket close frame, no TLS close_notify.
        await tcp.aclose()

    config = ClientConfig(
        allow_insecure_loopback=True,
        connect_timeout_s=5,
        single_task_sockets=True,
        tls_read_when_ready=read_path != "tls_trio_transport",
        ssl_context=tls.client_context() if tls is not None else None,
    )
    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(
            functools.partial(trio.serve_tcp, host="127.0.0.1"), serve, 0
        )
        port = listener.socket.getsockname()[1]
        scheme = "ws" if tls is None else "wss"
        yield f"{scheme}://127.0.0.1:{port}/media/audio", config
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("ending", ENDINGS)
@pytest.mark.parametrize("while_waiting", [True, False], ids=["while_waiting", "data_queued"])
@pytest.mark.parametrize("read_path", READ_PATHS)
async def test_a_peer_leaving_mid_stream_is_a_lost_socket_after_every_packet_it_sent(
    tmp_path: Path, read_path: str, while_waiting: bool, ending: str
) -> None:
    """Whatever the read path, a media socket whose peer leaves mid-stream (while the reader
    waits for bytes, or before the reader came back for what the kernel already holds) yields
    one ``AudioPacket`` per frame sent, then ``ConnectionEnded("transport")``, the engine's
    lost socket; the driver under it says ``ConnectionClosed`` with 1006."""
    first_ms = 1_795_276_197_000
    timestamps = [first_ms + 20 * i for i in range(40)]
    frames = [
        json.dumps({"msg_type": 14, "content": {"user_id": 0, "data": "AAAAAA==", "timestamp": t}})
        for t in timestamps
    ]
    leave = trio.Event()
    if not while_waiting:
        leave.set()
    events: list[ProtocolEvent] = []
    with trio.fail_after(10):
        async with (
            leaving_server(read_path, ending, tmp_path, frames, leave) as (url, config),
            trio.open_nursery() as nursery,
        ):
            ws = await connect(nursery, url, config, media=True)
            assert isinstance(ws, DirectWebSocket)
            if read_path == "plain":
                assert ws._plain_socket is not None
            else:
                assert isinstance(ws._stream, trio.SSLStream)
                transport = ws._stream.transport_stream
                expected = (
                    ReadWhenReady if read_path == "tls_read_when_ready" else trio.SocketStream
                )
                assert type(transport) is expected
            conn = MediaConnection(
                rtms_stream_id="stream",
                instance_id="meeting",
                instance_key="meeting_uuid",
                signature="signature",
                media_type=1,
                media_params=MediaParams(audio=AudioParams()),
            )
            conn.initiate(trio.current_time())

            leaving = False

            def handle(new: list[ProtocolEvent]) -> None:
                nonlocal leaving
                events.extend(new)
                packets = sum(isinstance(event, AudioPacket) for event in events)
                if while_waiting and not leaving and packets == len(frames):
                    # The pump is about to wait for bytes that never come: leave now.
                    leaving = True
                    nursery.start_soon(_set_when_blocked, leave)

            await pump(ws, conn, handle, handshake_timeout_s=5)
            with pytest.raises(ConnectionClosed) as ended:
                await ws.get_message()
            assert ended.value.reason is not None
            assert ended.value.reason.code == 1006
            # Closing what the peer broke neither hangs nor raises.
            await close_ws(ws, 2)
    assert isinstance(events[0], MediaReady)
    packets = [event for event in events if isinstance(event, AudioPacket)]
    assert [packet.timestamp_ms for packet in packets] == timestamps
    assert all(packet.payload == b"\0\0\0\0" for packet in packets)
    assert events[-1] == ConnectionEnded("transport")
    assert len(events) == 1 + len(frames) + 1, events


async def _set_when_blocked(event: trio.Event) -> None:
    await trio.testing.wait_all_tasks_blocked()
    event.set()
