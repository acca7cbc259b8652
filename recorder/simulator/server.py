"""The simulator's WebSocket server: one trio-websocket listener on loopback, routed by path.

Rule: the URL path names the engagement, its generation and the endpoint:
``/rtms/<token>/<generation>/signaling`` and ``/rtms/<token>/<generation>/media/<kind>``. A failover
bumps the generation, so old URLs stop working (HTTP 404 on upgrade) exactly like a dead server.
Handler tasks never raise into the listener: one broken client never takes down the others.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from typing import Final

import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, WebSocketServer, serve_websocket

from recorder.simulator.connections import Connection
from recorder.simulator.endpoints import serve_media, serve_signaling
from recorder.simulator.engagement import Engagement

logger = logging.getLogger(__name__)

MEDIA_KINDS: Final = frozenset({"audio", "video", "deskshare", "transcript", "chat", "all"})
#: Bound on the WebSocket opening handshake and on the close after a handler returns.
CONNECT_TIMEOUT_S: Final = 10.0
DISCONNECT_TIMEOUT_S: Final = 2.0


class RtmsServer:
    """Accepts RTMS sockets for every registered engagement."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        binary_frames: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._host = host
        self._port = port
        #: Serve ``wss://`` with this server context (None: plain ``ws://``).
        self._ssl_context = ssl_context
        self._binary = binary_frames
        self._engagements: dict[str, Engagement] = {}
        self._server: WebSocketServer | None = None
        self._bound_port: int | None = None

    @property
    def base_url(self) -> str:
        assert self._bound_port is not None, "server not started"
        scheme = "ws" if self._ssl_context is None else "wss"
        return f"{scheme}://{self._host}:{self._bound_port}"

    def register(self, engagement: Engagement) -> None:
        self._engagements[engagement.token] = engagement

    def unregister(self, engagement: Engagement) -> None:
        self._engagements.pop(engagement.token, None)

    async def run(
        self, *, task_status: trio.TaskStatus[RtmsServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio.open_nursery() as nursery:
            self._server = await nursery.start(
                lambda task_status: serve_websocket(
                    self._handle,
                    self._host,
                    self._port,
                    self._ssl_context,
                    connect_timeout=CONNECT_TIMEOUT_S,
                    disconnect_timeout=DISCONNECT_TIMEOUT_S,
                    task_status=task_status,
                )
            )
            self._bound_port = self._server.port
            task_status.started(self)

    def _route(self, path: str) -> tuple[Engagement, int, str] | None:
        parts = path.split("?", 1)[0].strip("/").split("/")
        if len(parts) < 4 or parts[0] != "rtms" or not parts[2].isdigit():
            return None
        engagement = self._engagements.get(parts[1])
        if engagement is None:
            return None
        generation = int(parts[2])
        if parts[3:] == ["signaling"]:
            return engagement, generation, "signaling"
        if len(parts) == 5 and parts[3] == "media" and parts[4] in MEDIA_KINDS:
            return engagement, generation, parts[4]
        return None

    async def _handle(self, request: WebSocketRequest) -> None:
        route = self._route(request.path)
        if route is None or route[0].generation != route[1] or route[0].stopped.is_set():
            # A dead or unknown endpoint: the upgrade is refused like a gone server.
            with contextlib.suppress(ConnectionClosed):
                await request.reject(404)
            return
        engagement, generation, kind = route
        try:
            ws = await request.accept()
        except ConnectionClosed:
            return
        conn = Connection(ws, kind=kind, generation=generation, binary=self._binary)
        try:
            if kind == "signaling":
                await serve_signaling(engagement, conn)
            else:
                await serve_media(engagement, conn)
        except ConnectionClosed:
            conn.mark_closed()
        except Exception:
            # A bug triggered by one client must not take the listener (and every other
            # engagement) down; it is logged with the endpoint only, never the frames.
            logger.exception("simulator handler failed on a %s socket", kind)
            engagement.stats.handler_errors += 1
            engagement.changed()
        finally:
            await conn.close(1000)
