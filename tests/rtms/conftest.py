"""A small scripted RTMS server on real loopback WebSockets, for the client tests.

It speaks the documented protocol just enough (handshakes with signature checks, server URLs,
CLIENT_READY_ACK, close) and lets each test drive the live sockets itself: send frames, drop
connections, reject handshakes. Counters say how many signaling sockets were ever open at once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    serve_websocket,
)

from recorder.rtms.signature import verify_handshake_signature

CLIENT_ID = "test_client_id"
CLIENT_SECRET = "test_client_secret"
INSTANCE_KEYS = ("meeting_uuid", "webinar_uuid", "session_id", "engagement_id")


@dataclass
class Peer:
    """One accepted socket and everything the client sent on it."""

    ws: WebSocketConnection
    kind: str  # "signaling" or the media name ("audio", "all", ...)
    received: list[dict[str, Any]] = field(default_factory=list)
    ready: trio.Event = field(default_factory=trio.Event)
    closed: bool = False

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        data = json.dumps(frame) if isinstance(frame, dict) else frame
        try:
            await self.ws.send_message(data)
        except ConnectionClosed:
            self.closed = True

    async def drop(self) -> None:
        """Close abruptly (what the server does to an interrupted socket)."""
        self.closed = True
        await self.ws.aclose(code=1011)


class ScriptedRtms:
    def __init__(self) -> None:
        self.port = 0
        self.media_names = ("audio", "video", "transcript", "chat", "all")
        self.signaling: list[Peer] = []
        self.media: list[Peer] = []
        self.open_signaling = 0
        self.max_open_signaling = 0
        #: Status codes (and reasons) to answer the next signaling handshakes with.
        self.signaling_rejections: list[tuple[int | None, str]] = []
        self.media_rejections: list[tuple[int | None, str]] = []
        #: Per media socket: a (status_code, reason) to refuse every handshake with, or None.
        self.media_refusal: Callable[[Peer], tuple[int, str] | None] | None = None
        #: Fields added to the successful signaling answer (a V2 server adds its own).
        self.signaling_answer_extra: dict[str, Any] = {}
        #: Frames sent instead of the answer to the next signaling handshakes (then closed).
        self.signaling_junk: list[str | bytes] = []
        #: Confirmed media_params override for msg 4 (None = echo the request).
        self.confirm_params: dict[str, Any] | None = None
        self.send_first_packet = True
        self.on_media_ready: Callable[[Peer], Any] | None = None
        self._changed = trio.Event()

    def url(self, path: str = "signaling") -> str:
        return f"ws://127.0.0.1:{self.port}/{path}"

    def server_urls(self) -> dict[str, str]:
        return {name: self.url(f"media/{name}") for name in self.media_names}

    def _poke(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._changed.wait()

    def live_media(self, kind: str | None = None) -> list[Peer]:
        return [p for p in self.media if not p.closed and (kind is None or p.kind == kind)]

    def live_signaling(self) -> list[Peer]:
        return [p for p in self.signaling if not p.closed]

    async def handler(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        path = request.path
        if path.endswith("/signaling"):
            await self._signaling(Peer(ws, "signaling"))
        elif "/media/" in path:
            await self._media(Peer(ws, path.rsplit("/", 1)[1]))
        else:
            await ws.aclose(code=1008)

    def _signature_ok(self, msg: dict[str, Any]) -> bool:
        instance = next((msg[k] for k in INSTANCE_KEYS if k in msg), "")
        return verify_handshake_signature(
            msg.get("signature", ""),
            CLIENT_ID,
            CLIENT_SECRET,
            instance,
            msg.get("rtms_stream_id", ""),
        )

    async def _receive(self, peer: Peer) -> dict[str, Any] | None:
        try:
            data = await peer.ws.get_message()
        except ConnectionClosed:
            return None
        msg = json.loads(data)
        peer.received.append(msg)
        self._poke()
        return msg

    async def _signaling(self, peer: Peer) -> None:
        self.signaling.append(peer)
        self.open_signaling += 1
        self.max_open_signaling = max(self.max_open_signaling, self.open_signaling)
        self._poke()
        try:
            while (msg := await self._receive(peer)) is not None:
                kind = msg.get("msg_type")
                if kind == 1:
                    if not self._signature_ok(msg):
                        await peer.send(
                            {"msg_type": 2, "status_code": 3, "reason": "invalid signature"}
                        )
                        continue
                    if self.signaling_junk:
                        await peer.send(self.signaling_junk.pop(0))
                        await peer.ws.aclose()
                        return
                    if self.signaling_rejections:
                        code, reason = self.signaling_rejections.pop(0)
                        await peer.send({"msg_type": 2, "status_code": code, "reason": reason})
                        await peer.ws.aclose()
                        return
                    await peer.send(
                        {
                            "msg_type": 2,
                            "protocol_version": 1,
                            "sequence": 0,
                            "status_code": 0,
                            "reason": "",
                            "media_server": {"server_urls": self.server_urls()},
                            **self.signaling_answer_extra,
                        }
                    )
                    if self.send_first_packet:
                        await peer.send(
                            {"msg_type": 6, "event": {"event_type": 1, "timestamp": 1000}}
                        )
                elif kind == 7:
                    for media in self.live_media():
                        if media.ws and not media.ready.is_set():
                            media.ready.set()
                            if self.on_media_ready is not None:
                                self.on_media_ready(media)
                    self._poke()
                elif kind == 21:
                    await peer.send(
                        {
                            "msg_type": 22,
                            "rtms_stream_id": msg.get("rtms_stream_id"),
                            "status_code": 0,
                            "reason": "OK",
                            "timestamp": 9,
                        }
                    )
                    await peer.send({"msg_type": 8, "state": 4, "reason": 20, "timestamp": 9})
        finally:
            peer.closed = True
            self.open_signaling -= 1
            self._poke()

    async def _media(self, peer: Peer) -> None:
        self.media.append(peer)
        self._poke()
        try:
            while (msg := await self._receive(peer)) is not None:
                if msg.get("msg_type") != 3:
                    continue
                if not self._signature_ok(msg):
                    await peer.send(
                        {"msg_type": 4, "status_code": 3, "reason": "invalid signature"}
                    )
                    continue
                refusal = None if self.media_refusal is None else self.media_refusal(peer)
                if refusal is None and self.media_rejections:
                    refusal = self.media_rejections.pop(0)
                if refusal is not None:
                    code, reason = refusal
                    await peer.send({"msg_type": 4, "status_code": code, "reason": reason})
                    continue
                params = (
                    self.confirm_params
                    if self.confirm_params is not None
                    else msg.get("media_params", {})
                )
                await peer.send(
                    {
                        "msg_type": 4,
                        "protocol_version": 1,
                        "status_code": 0,
                        "reason": "",
                        "sequence": 0,
                        "payload_encrypted": False,
                        "media_params": params,
                    }
                )
        finally:
            peer.closed = True
            self._poke()


@asynccontextmanager
async def run_scripted_rtms() -> AsyncIterator[ScriptedRtms]:
    server = ScriptedRtms()
    async with trio.open_nursery() as nursery:
        ws_server = await nursery.start(
            lambda task_status: serve_websocket(
                server.handler, "127.0.0.1", 0, ssl_context=None, task_status=task_status
            )
        )
        server.port = ws_server.port
        yield server
        nursery.cancel_scope.cancel()


@pytest.fixture
async def rtms_server() -> AsyncIterator[ScriptedRtms]:
    async with run_scripted_rtms() as server:
        yield server


@pytest.fixture
async def rtms_server_b() -> AsyncIterator[ScriptedRtms]:
    """A second server, the failover target."""
    async with run_scripted_rtms() as server:
        yield server
