"""The last messages of a stream survive a peer that closes its TCP socket early.

Under overload the client lags seconds behind its sockets. A server that ends a stream sends
the final STREAM_STATE/SESSION_STATE and its close frame, waits a bounded time for our close
answer, then closes its TCP socket (the simulator does so after 2 s, as any real server must).
From then on the first thing we write (a keep-alive answer still owed for a request queued
before the tail, a CLIENT_READY_ACK, our close answer) makes the peer's kernel answer with an
RST, and the next write fails. The tail is still readable (the kernel keeps what it received;
the reader-task driver holds it in its channel): a failed write must not end the socket
before it is read.

Real parts: the pump and the signaling connection of the client, both socket drivers, over
loopback TCP against a hand-written wsproto server that ends the stream like that, with a FIN
(then an RST for our late write) or straight away with an RST (SO_LINGER 0).
"""

from __future__ import annotations

import functools
import json
import socket
import struct
from typing import Any

import pytest
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

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


async def _serve_and_end_early(
    stream: trio.SocketStream, *, abort: bool, ended: trio.Event
) -> None:
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
    if abort:
        # SO_LINGER 0: close() sends an RST at once.
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # No waiting for the client's close answer (its close-handshake timeout ran out): the
    # client's next write meets a closed socket, and the peer's kernel answers with an RST.
    await stream.aclose()
    ended.set()


@pytest.mark.parametrize("single_task", [True, False], ids=["direct", "reader-task"])
@pytest.mark.parametrize("abort", [False, True], ids=["fin", "rst"])
async def test_a_lagging_client_reads_the_final_states_after_the_peer_closed_its_socket(
    single_task: bool, abort: bool
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
                functools.partial(_serve_and_end_early, abort=abort, ended=ended),
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
