"""The wsproto-free frame parser (``recorder.rtms._frames``) against wsproto alone.

Both sides are a real wsproto client connection after a real (in-memory) upgrade, fed the same
bytes in the same reads: one only through wsproto, the other as ``DirectWebSocket`` does it
(``take_frames`` first while ``at_frame_boundary``, wsproto for the rest). Whatever the bytes,
the messages, pings, the peer's close and the protocol error (close code and text) must be the
same, in the same order, and the read where parsing stops must be the same.
"""

from __future__ import annotations

import struct
from importlib.metadata import version

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

from recorder.rtms._frames import (
    PINNED_WSPROTO,
    at_frame_boundary,
    frame_remainder,
    split_read,
    take_frames,
)

LIMIT = 400


def test_installed_wsproto_is_the_pinned_version_this_parser_was_written_for() -> None:
    installed = version("wsproto")
    assert installed == PINNED_WSPROTO, (
        f"wsproto {installed} is installed, but recorder/rtms/_frames.py reads the private "
        f"parser state of {PINNED_WSPROTO} (connection._state/_events/_proto, the frame and "
        "message decoders): re-read wsproto/frame_protocol.py, adapt, then move the pin"
    )
    ws = open_client()
    assert at_frame_boundary(ws)
    assert frame_remainder(ws) is None


def open_client() -> WSConnection:
    client = WSConnection(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="example.com", target="/media")))
    assert any(isinstance(event, Request) for event in server.events())
    client.receive_data(server.send(AcceptConnection()))
    assert any(isinstance(event, AcceptConnection) for event in client.events())
    return client


Outcome = list[tuple[str, object]]


class Reader:
    """What ``DirectWebSocket`` makes of the reads: messages (fragments joined, the size limit
    applied as trio-websocket does), pings, pongs, the peer's close, or the error that ends it."""

    def __init__(self, *, fast: bool) -> None:
        self.ws = open_client()
        self.fast = fast
        self.out: Outcome = []
        self.parts: list[str | bytes] = []
        self.size = 0
        self.ended = False
        #: Bytes the fast reader left to wsproto.
        self.wsproto_bytes = 0

    def message(self, data: str | bytes) -> None:
        self.out.append(("message", data))

    def feed(self, data: bytes) -> None:
        later = data
        while later and not self.ended:
            if self.fast:  # as DirectWebSocket._receive_once does
                chunk, later = split_read(
                    self.ws, later, LIMIT, self.message, parts_pending=bool(self.parts)
                )
                self.wsproto_bytes += len(chunk)
            else:
                chunk, later = later, b""
            if chunk:
                self.wsproto(chunk)

    def wsproto(self, data: bytes) -> None:
        try:
            self.ws.receive_data(data)
            for event in self.ws.events():
                self.event(event)
                if self.ended:
                    return
        except RemoteProtocolError as exc:
            hint = exc.event_hint
            code = hint.code if isinstance(hint, CloseConnection) else None
            self.out.append(("error", (str(exc), code)))
            self.ended = True

    def event(self, event: object) -> None:
        if isinstance(event, TextMessage | BytesMessage):
            self.size += len(event.data)
            if self.size > LIMIT:
                self.out.append(("too big", self.size))
                self.ended = True
                return
            self.parts.append(event.data)
            if event.message_finished:
                joiner: str | bytes = "" if isinstance(event, TextMessage) else b""
                self.out.append(("message", joiner.join(self.parts)))  # type: ignore[arg-type]
                self.parts, self.size = [], 0
        elif isinstance(event, Ping | Pong):
            self.out.append((type(event).__name__, bytes(event.payload)))
        elif isinstance(event, CloseConnection):
            self.out.append(("close", (event.code, event.reason)))
            self.ended = True
        else:
            self.out.append(("other", repr(event)))


def both(wire: bytes, cuts: list[int]) -> tuple[Outcome, Outcome]:
    slow, fast = readers(wire, cuts)
    return slow.out, fast.out


def readers(wire: bytes, cuts: list[int]) -> tuple[Reader, Reader]:
    slow, fast = Reader(fast=False), Reader(fast=True)
    offset, turn = 0, 0
    while offset < len(wire):
        size = cuts[turn % len(cuts)] if cuts else len(wire)
        for reader in (slow, fast):
            reader.feed(wire[offset : offset + size])
        offset, turn = offset + size, turn + 1
    return slow, fast


def header(first: int, length: int, *, mask: bool = False, form: str = "short") -> bytes:
    flag = 0x80 if mask else 0
    if form == "short":
        return bytes([first, flag | length])
    if form == "16":
        return bytes([first, flag | 126]) + struct.pack("!H", length)
    return bytes([first, flag | 127]) + struct.pack("!Q", length)


# Frames of every shape a peer could send, well-formed or not.
_texts = st.text(max_size=300).map(lambda t: t.encode("utf-8"))
_payloads = st.one_of(_texts, st.binary(max_size=300))


@st.composite
def frame(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(
            ["text", "binary", "fragment", "continuation", "ping", "close", "odd", "junk"]
        )
    )
    if kind == "junk":
        return draw(st.binary(max_size=12))
    payload = draw(_payloads)
    if kind == "text":
        first = 0x81
    elif kind == "binary":
        first = 0x82
    elif kind == "fragment":
        first = draw(st.sampled_from([0x01, 0x02]))
    elif kind == "continuation":
        first = draw(st.sampled_from([0x00, 0x80]))
    elif kind == "ping":
        first, payload = 0x89, payload[:125]
    elif kind == "close":
        code = draw(st.sampled_from([1000, 1001, 1002, 999, 1005, 3000, 5000]))
        first, payload = 0x88, struct.pack("!H", code) + payload[:60]
    else:  # reserved bits, reserved opcodes, a bad first byte of any kind
        first = draw(st.integers(min_value=0, max_value=255))
    length = len(payload)
    forms = ["short"] if length < 126 else ["16", "64"]
    forms += ["16", "64"]  # non-minimal lengths: errors either way
    form = draw(st.sampled_from(forms))
    mask = draw(st.booleans()) if kind == "odd" else False
    if form == "short" and length >= 126:
        form = "16"
    body = payload
    if mask:
        body = b"\x00\x00\x00\x00" + payload
    return header(first, length, mask=mask, form=form) + body


@settings(max_examples=400, deadline=None)
@given(
    frames=st.lists(frame(), min_size=1, max_size=10),
    cuts=st.lists(st.integers(min_value=1, max_value=700), max_size=12),
)
def test_any_bytes_in_any_reads_give_what_wsproto_alone_gives(
    frames: list[bytes], cuts: list[int]
) -> None:
    slow, fast = both(b"".join(frames), cuts)
    assert fast == slow


@settings(max_examples=400, deadline=None)
@given(
    frames=st.lists(
        st.one_of(
            frame(),
            # RTMS audio-sized text frames around the 16-bit-length and size-limit edges,
            # valid UTF-8 or not: the single-frame shortcut at the top of take_frames.
            st.tuples(
                st.one_of(
                    st.sampled_from([125, 126, 127, LIMIT - 1, LIMIT, LIMIT + 1, LIMIT + 2]),
                    st.integers(min_value=120, max_value=LIMIT + 5),
                ),
                st.sampled_from([b"a", b"\xff", b"\xc3"]),
            ).map(
                lambda shape: header(0x81, shape[0], form="16") + b"a" * (shape[0] - 1) + shape[1]
            ),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_one_frame_per_read_gives_what_wsproto_alone_gives(frames: list[bytes]) -> None:
    """A paced stream: every read is exactly one frame, whatever its shape."""
    slow, fast = Reader(fast=False), Reader(fast=True)
    for one in frames:
        for reader in (slow, fast):
            reader.feed(one)
    assert fast.out == slow.out


@settings(max_examples=200, deadline=None)
@given(wire=st.binary(max_size=600), cuts=st.lists(st.integers(1, 200), max_size=8))
def test_arbitrary_bytes_give_what_wsproto_alone_gives(wire: bytes, cuts: list[int]) -> None:
    slow, fast = both(wire, cuts)
    assert fast == slow


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (header(0x81, 2) + b"hi" + header(0x82, 3) + b"\x00\x01\x02", ["hi", b"\x00\x01\x02"]),
        (header(0x81, 300, form="16") + b"x" * 300, ["x" * 300]),
        (header(0x81, 0), [""]),
    ],
)
def test_whole_frames_are_taken_in_one_pass(wire: bytes, expected: list[str | bytes]) -> None:
    got: list[str | bytes] = []
    assert take_frames(wire, LIMIT, got.append) == len(wire)
    assert got == expected


@pytest.mark.parametrize(
    "tail",
    [
        header(0x81, 5) + b"cut",  # cut by the read
        header(0x81, 2) + b"\xff\xfe",  # not UTF-8
        header(0x81, 10, form="16") + b"x" * 10,  # a non-minimal 16-bit length
        header(0x81, 200, form="64") + b"x" * 200,  # an 8-byte length
        header(0x81, 1, mask=True) + b"\x00\x00\x00\x00x",  # masked by the server
        header(0xC1, 1) + b"x",  # RSV1 without an extension
        header(0x01, 1) + b"x",  # a fragment
        header(0x89, 0),  # a ping
        header(0x82, LIMIT + 1, form="16") + b"x" * (LIMIT + 1),  # over the size limit
        b"\x81",  # one byte of a header
    ],
)
def test_it_stops_at_the_first_frame_it_is_not_sure_of(tail: bytes) -> None:
    got: list[str | bytes] = []
    lead = header(0x81, 3) + b"one"
    assert take_frames(lead + tail, LIMIT, got.append) == len(lead)
    assert got == ["one"]


def test_wsproto_in_the_middle_of_a_frame_or_message_keeps_the_bytes() -> None:
    ws = open_client()
    assert at_frame_boundary(ws)
    ws.receive_data(header(0x81, 5) + b"par")  # a frame cut by the read
    list(ws.events())
    assert not at_frame_boundary(ws)
    ws.receive_data(b"ts")
    assert [e.data for e in ws.events() if isinstance(e, TextMessage)] == ["ts"]
    assert at_frame_boundary(ws)
    ws.receive_data(header(0x01, 1) + b"a")  # a fragmented message under way
    list(ws.events())
    assert not at_frame_boundary(ws)
    ws.receive_data(header(0x80, 1) + b"b")
    list(ws.events())
    assert at_frame_boundary(ws)
    ws.receive_data(header(0x88, 2) + struct.pack("!H", 1000))
    list(ws.events())
    assert not at_frame_boundary(ws)  # the peer closed


def test_a_connection_still_upgrading_is_never_at_a_frame_boundary() -> None:
    client = WSConnection(ConnectionType.CLIENT)
    client.send(Request(host="example.com", target="/media"))
    assert not at_frame_boundary(client)


def test_reads_that_end_inside_frames_leave_wsproto_only_the_rest_of_each_frame() -> None:
    # A lagging socket: its 64 KiB reads of ~1 KB frames end inside a frame nearly every time.
    messages = [f'{{"msg_type":14,"content":{{"data":"{n:04d}{"A" * 300}"}}}}' for n in range(200)]
    wire = b"".join(header(0x81, len(m), form="16") + m.encode() for m in messages)
    slow, fast = readers(wire, [1021])
    assert fast.out == slow.out == [("message", m) for m in messages]
    # wsproto saw the tail of each cut frame (at most one a read), not the frames after it.
    reads = -(-len(wire) // 1021)
    assert 0 < fast.wsproto_bytes < reads * (300 + 40)


def test_frame_remainder_is_what_wsproto_needs_to_finish_a_data_frame() -> None:
    ws = open_client()
    assert frame_remainder(ws) is None  # at a boundary
    ws.receive_data(header(0x82, 10) + b"abc")
    list(ws.events())
    assert frame_remainder(ws) == 7
    ws.receive_data(b"defghij")
    list(ws.events())
    assert frame_remainder(ws) is None
    assert at_frame_boundary(ws)
    ws.receive_data(b"\x89")  # one byte of a ping's header
    assert frame_remainder(ws) is None
