"""A deliberately minimal RTMS client for the simulator's tests: raw trio-websocket plus the
message codec, no recorder client logic, so the tests see exactly what the simulator sends."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from recorder.rtms.messages import (
    AudioParams,
    DataHandshakeRequest,
    MediaParams,
    SignalingHandshakeRequest,
    encode,
)
from recorder.simulator import Target

BIG = 16 * 2**20


def signaling_request(target: Target, **overrides: Any) -> dict[str, Any]:
    msg = SignalingHandshakeRequest(
        rtms_stream_id=target.rtms_stream_id,
        signature=target.signature,
        instance_id=target.instance_id,
        instance_key=target.id_key,
    ).to_wire()
    msg.update(overrides)
    return {k: v for k, v in msg.items() if v is not _DROP}


def media_request(
    target: Target, media_type: int, params: MediaParams | None = None, **overrides: Any
) -> dict[str, Any]:
    msg = DataHandshakeRequest(
        rtms_stream_id=target.rtms_stream_id,
        signature=target.signature,
        instance_id=target.instance_id,
        instance_key=target.id_key,
        media_type=media_type,
        media_params=params,
    ).to_wire()
    msg.update(overrides)
    return {k: v for k, v in msg.items() if v is not _DROP}


class _Drop:
    pass


#: Use as an override value to remove a field from a request.
_DROP: Any = _Drop()
DROP = _DROP


async def recv(ws: WebSocketConnection) -> dict[str, Any]:
    data = await ws.get_message()
    obj = json.loads(data)
    assert isinstance(obj, dict)
    return obj


async def send(ws: WebSocketConnection, msg: dict[str, Any]) -> None:
    await ws.send_message(json.dumps(msg, separators=(",", ":")))


@asynccontextmanager
async def signaling(
    target: Target,
    url: str | None = None,
    *,
    ssl_context: ssl.SSLContext | None = None,
    **overrides: Any,
) -> AsyncIterator[tuple[WebSocketConnection, dict[str, Any]]]:
    """Open signaling (over TLS with ``ssl_context``) and handshake; yields (ws, msg 2)."""
    async with open_websocket_url(
        url or target.server_urls, ssl_context, max_message_size=BIG
    ) as ws:
        await send(ws, signaling_request(target, **overrides))
        response = await recv(ws)
        yield ws, response


@dataclass
class Received:
    """What a reader collected from one socket."""

    audio: list[dict[str, Any]] = field(default_factory=list)
    transcripts: list[dict[str, Any]] = field(default_factory=list)
    chats: list[dict[str, Any]] = field(default_factory=list)
    other: list[dict[str, Any]] = field(default_factory=list)
    keepalives: int = 0
    close_code: int | None = None

    def payloads(
        self, track_key: str | None = None, value: object = None
    ) -> list[tuple[int, bytes]]:
        out = []
        for msg in self.audio:
            content = msg["content"]
            if track_key is not None and content.get(track_key) != value:
                continue
            out.append((content["timestamp"], base64.b64decode(content["data"])))
        return out


async def read_all(
    ws: WebSocketConnection, into: Received, *, answer_keepalive: bool = True
) -> None:
    """Read until the socket closes, answering keep-alives; sort what arrives."""
    while True:
        try:
            data = await ws.get_message()
        except ConnectionClosed as exc:
            into.close_code = exc.reason.code
            return
        try:
            obj = json.loads(data)
        except ValueError:
            into.other.append({"raw": data})
            continue
        if not isinstance(obj, dict):
            into.other.append({"raw": data})
            continue
        msg_type = obj.get("msg_type")
        if msg_type == 12:
            into.keepalives += 1
            if answer_keepalive:
                reply = {k: obj[k] for k in ("sequence", "timestamp") if k in obj}
                await send(ws, {"msg_type": 13, **reply})
        elif msg_type == 14:
            into.audio.append(obj)
        elif msg_type == 17:
            into.transcripts.append(obj)
        elif msg_type == 18:
            into.chats.append(obj)
        else:
            into.other.append(obj)


@asynccontextmanager
async def media(
    target: Target, url: str, media_type: int, params: MediaParams | None = None, **overrides: Any
) -> AsyncIterator[tuple[WebSocketConnection, dict[str, Any]]]:
    async with open_websocket_url(url, max_message_size=BIG) as ws:
        await send(ws, media_request(target, media_type, params, **overrides))
        response = await recv(ws)
        yield ws, response


def audio_params(**kw: int) -> MediaParams:
    return MediaParams(audio=AudioParams(**kw))


__all__ = [
    "DROP",
    "Received",
    "audio_params",
    "encode",
    "media",
    "read_all",
    "recv",
    "send",
    "signaling",
]


async def join_audio(
    target: Target,
    *,
    media_type: int = 1,
    kind: str = "audio",
    params: MediaParams | None = None,
    signaling_url: str | None = None,
    subscribe: list[int] | None = None,
) -> tuple[Received, Received]:
    """Signaling + one media socket + CLIENT_READY_ACK; read both until the server closes them."""
    sig_got, media_got = Received(), Received()
    async with signaling(target, signaling_url) as (sig, resp):
        assert resp["status_code"] == 0, resp
        if subscribe:
            events = [{"event_type": e, "subscribe": True} for e in subscribe]
            await send(sig, {"msg_type": 5, "events": events})
        url = resp["media_server"]["server_urls"][kind]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all, sig, sig_got)
            async with media(target, url, media_type, params) as (ws, ok):
                assert ok["status_code"] == 0, ok
                await send(sig, {"msg_type": 7, "rtms_stream_id": target.rtms_stream_id})
                await read_all(ws, media_got)
    return sig_got, media_got
