"""Per-message CPU cost of reading one RTMS audio frame off the wire, by frame shape.

Run: ``python -m recorder.bench.wire [--messages 20000] [--rounds 5]`` (or ``recorder bench wire``).

What is measured: ``MediaConnection.receive_message`` on an open media socket for one msg 14
frame of 20 ms L16 16 kHz mono (640 bytes, base64) and ``events()`` to take the packet, i.e. the
client's whole sans-IO hot path: JSON, base64, validation, one ``AudioPacket``. Shapes:

* ``documented``: exactly the documented fields (the one-pass msgspec path);
* ``unknown fields``: the same plus fields no RTMS version documents (still the one-pass path
  since unknown fields are skipped; before, every such frame took the tolerant path);
* ``tolerant path``: the tolerant decoder alone (``load_object`` + ``binary_content``), what
  every frame the one-pass decoder cannot take costs;
* ``RTP G.711``: a ``content_type`` 1 frame (the RTP header is removed per packet).

The WebSocket frame that carries such a message is measured apart, one frame per read as a
paced stream brings it: through wsproto (what trio-websocket does, and what the one-task driver
did before), and through ``recorder.rtms._frames.take_frames`` (the one-task driver now, while
wsproto sits on a frame boundary).

CPU time is ``time.process_time`` per message, median over rounds.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import struct
import sys
import time
from collections.abc import Callable, Sequence

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request

from recorder.rtms import messages as m
from recorder.rtms._frames import at_frame_boundary, take_frames
from recorder.rtms.protocol import MediaConnection

_PCM = bytes(range(256)) * 2 + bytes(128)  # 640 bytes: 20 ms of L16 16 kHz mono


def _frame(payload: bytes, *, unknown: bool = False) -> str:
    content: dict[str, object] = {
        "user_id": 16778240,
        "user_name": "Alice Trader",
        "data": base64.b64encode(payload).decode("ascii"),
        "length": len(payload),
        "timestamp": 1_763_726_400_000,
    }
    frame: dict[str, object] = {"msg_type": 14, "content": content}
    if unknown:
        content["audio_level"] = -31
        frame = {"msg_type": 14, "zoom_future": {"v": 2, "tags": ["x"]}, "content": content}
    return json.dumps(frame, separators=(",", ":"))


def _open(audio: m.AudioParams) -> MediaConnection:
    conn = MediaConnection(
        rtms_stream_id="bench",
        instance_id="bench",
        instance_key="meeting_uuid",
        signature="0" * 64,
        media_type=1,
        media_params=m.MediaParams(audio=audio),
    )
    conn.initiate(0.0)
    conn.data_to_send()
    answer = {"msg_type": 4, "status_code": 0, "media_params": {"audio": _params(audio)}}
    conn.receive_message(json.dumps(answer))
    conn.events()
    return conn


def _params(audio: m.AudioParams) -> dict[str, int]:
    return {
        "content_type": audio.content_type,
        "codec": audio.codec,
        "sample_rate": audio.sample_rate,
        "channel": audio.channel,
        "data_opt": audio.data_opt,
        "send_rate": audio.send_rate,
    }


def _through_connection(frame: str, audio: m.AudioParams) -> Callable[[int], None]:
    conn = _open(audio)

    def run(count: int) -> None:
        receive, events = conn.receive_message, conn.events
        for _ in range(count):
            receive(frame)
            events()

    return run


def _tolerant(frame: str) -> Callable[[int], None]:
    def run(count: int) -> None:
        for _ in range(count):
            obj = m.load_object(frame)
            m.binary_content(obj["content"], "14")

    return run


def _ws_client() -> WSConnection:
    """A wsproto client connection after an in-memory upgrade."""
    client, server = WSConnection(ConnectionType.CLIENT), WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="bench", target="/media")))
    list(server.events())
    client.receive_data(server.send(AcceptConnection()))
    list(client.events())
    return client


def _server_frame(text: str) -> bytes:
    """One unmasked text frame, as the RTMS server sends it."""
    payload = text.encode("utf-8")
    size = len(payload)
    head = bytes([0x81, size]) if size < 126 else bytes([0x81, 126]) + size.to_bytes(2, "big")
    return head + payload


def _frames_wsproto(wire: bytes) -> Callable[[int], None]:
    ws = _ws_client()

    def run(count: int) -> None:
        receive, events = ws.receive_data, ws.events
        for _ in range(count):
            receive(wire)
            for _event in events():
                pass

    return run


def _frames_direct(wire: bytes) -> Callable[[int], None]:
    ws = _ws_client()
    ready: list[str | bytes] = []

    def run(count: int) -> None:
        append = ready.append
        for _ in range(count):
            if at_frame_boundary(ws):
                take_frames(wire, 1 << 20, append)
            ready.clear()

    return run


def _rtp_packet(payload: bytes) -> bytes:
    return struct.pack("!BBHII", 0x80, 8, 1, 160, 0xDEADBEEF) + payload


def _measure(run: Callable[[int], None], messages: int, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.process_time()
        run(messages)
        samples.append((time.process_time() - start) / messages)
    return statistics.median(samples)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recorder bench wire", description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    l16 = m.AudioParams()
    g711_rtp = m.AudioParams(content_type=1, codec=2, sample_rate=0)
    cases = [
        ("documented", _through_connection(_frame(_PCM), l16)),
        ("unknown fields", _through_connection(_frame(_PCM, unknown=True), l16)),
        ("tolerant path", _tolerant(_frame(_PCM, unknown=True))),
        ("RTP G.711", _through_connection(_frame(_rtp_packet(_PCM[:160])), g711_rtp)),
    ]
    baseline: float | None = None
    print(f"{'frame shape':<16} {'us/msg':>8} {'x documented':>13}")
    for label, run in cases:
        run(min(1000, args.messages))  # warm up
        cost = _measure(run, args.messages, args.rounds)
        baseline = baseline or cost
        print(f"{label:<16} {cost * 1e6:>8.2f} {cost / baseline:>13.2f}")
    wire = _server_frame(_frame(_PCM))
    framings = [("wsproto", _frames_wsproto(wire)), ("take_frames", _frames_direct(wire))]
    reference: float | None = None
    print(f"\n{'frame parsing':<16} {'us/frame':>8} {'x wsproto':>13}  ({len(wire)}-byte frame)")
    for label, run in framings:
        run(min(1000, args.messages))
        cost = _measure(run, args.messages, args.rounds)
        reference = reference or cost
        print(f"{label:<16} {cost * 1e6:>8.2f} {cost / reference:>13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
