"""A tiny HTTP/1.1 webhook receiver (h11 over a trio socket) for the simulator's tests."""

from __future__ import annotations

import h11
import trio


async def http_server(
    received: list[tuple[dict[str, str], bytes]],
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A tiny HTTP/1.1 server (h11) that answers 200 and keeps what it got."""

    async def handle(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        headers: dict[str, str] = {}
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        received.append((headers, body))
        reply = conn.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
        end = conn.send(h11.EndOfMessage())
        await stream.send_all(reply + end)
        await stream.aclose()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)
