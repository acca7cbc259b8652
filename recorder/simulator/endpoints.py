"""The signaling and media endpoints of one engagement: handshakes, requests, keep-alives.

Rule 1: each accepted WebSocket is served by one handler task (started by ``server``) that runs
the handshake, then a reader loop and a keep-alive loop in its own nursery. When the socket
ends, the handler tells the engagement whether the *client* broke it (an interruption) or the
server did (``closed_by_server``: a fault step, a stop, a kick).

Rule 2: handshake verdicts come from the pure ``handshake`` module; the profile decides how a
rejection looks on the wire (status table, or the mock's ``reason`` only).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import trio

from recorder.errors import RemoteProtocolError
from recorder.rtms.messages import (
    DataHandshakeResponse,
    EventSubscription,
    EventType,
    EventUpdate,
    MsgType,
    SessionState,
    StopReason,
    StreamState,
    decode_object,
)
from recorder.simulator._codecs import encode_program_track
from recorder.simulator.connections import Connection
from recorder.simulator.engagement import Engagement
from recorder.simulator.faults import V2_ANSWER_FIELDS
from recorder.simulator.handshake import check_common, check_media
from recorder.simulator.media import SocketAudio
from recorder.simulator.profiles import DuplicatePolicy, Status
from recorder.simulator.program import FRAME_MS

logger = logging.getLogger(__name__)

#: Encoding a track is CPU work in a thread; a few at once keep the trio thread responsive.
_ENCODE_LIMITER = trio.CapacityLimiter(2)


async def _reject(
    eng: Engagement, conn: Connection, status: Status, *, msg_type: int, where: str
) -> None:
    code, reason = eng.profile.code(status)
    msg: dict[str, Any] = {"msg_type": msg_type, "protocol_version": 1, "reason": reason}
    if eng.profile.failure_status_code:
        msg.update({"status_code": code, "sequence": 0})
    await conn.send(msg)
    eng.stats.rejected[(where, code if eng.profile.failure_status_code else None)] += 1
    eng.changed()
    conn.closed_by_server = True
    await conn.close(1000)


async def _first_frame(eng: Engagement, conn: Connection) -> tuple[bool, dict[str, Any] | None]:
    with trio.move_on_after(eng.scaled(eng.options.handshake_timeout_s)):
        return await conn.receive_first()
    conn.closed_by_server = True
    await conn.close(1000)
    return False, None


# --- signaling -------------------------------------------------------------------------------


async def serve_signaling(eng: Engagement, conn: Connection) -> None:
    received, obj = await _first_frame(eng, conn)
    if not received:
        return
    status = check_common(obj, MsgType.SIGNALING_HAND_SHAKE_REQ, eng.expected)
    if status is Status.OK and eng.stopping:
        status = Status.UNKNOWN_STREAM
    if status is Status.OK:
        status = eng.refusals.next_refusal("signaling") or status
    live = [c for c in eng.signaling if not c.closed]
    if status is Status.OK and live:
        policy = eng.profile.duplicate_policy
        if policy is DuplicatePolicy.REJECT_NEW:
            status = Status.DUPLICATE_SIGNAL_REQUEST
        elif policy is DuplicatePolicy.KICK_OLD:
            for old in live:
                old.closed_by_server = True
                eng.signaling.remove(old)
                await old.close(1000, "kicked by a new connection")
                eng.stats.kicked += 1
    if status is not Status.OK:
        await _reject(
            eng, conn, status, msg_type=MsgType.SIGNALING_HAND_SHAKE_RESP, where="signaling"
        )
        return
    assert obj is not None
    if not eng.buffer_decided:
        eng.buffer_decided = True
        if obj.get("buffer_data") is False:
            eng.feed.drop_buffer()
    eng.signaling.append(conn)
    stats = eng.stats
    stats.signaling_accepted += 1
    stats.signaling_open += 1
    stats.signaling_max_open = max(stats.signaling_max_open, stats.signaling_open)
    try:
        await conn.send(
            {
                "msg_type": MsgType.SIGNALING_HAND_SHAKE_RESP,
                "protocol_version": 1,
                "sequence": 0,
                "status_code": 0,
                "reason": "",
                "media_server": {"server_urls": eng.media_server_urls()},
                **(V2_ANSWER_FIELDS if eng.scenario.faults.v2_answer else {}),
            }
        )
        await eng.send_event(
            EventUpdate(EventType.FIRST_PACKET_TIMESTAMP, eng.feed.first_buffered_timestamp_ms()),
            automatic=True,
        )
        eng.connected.set()
        eng.note_reconnected(media=False)
        eng.changed()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_keepalive_loop, eng, conn)
            await _signaling_reader(eng, conn)
            nursery.cancel_scope.cancel()
    finally:
        stats.signaling_open -= 1
        if conn in eng.signaling:
            eng.signaling.remove(conn)
        eng.changed()
    if not conn.closed_by_server and not eng.stopping and not eng.signaling:
        # The client broke signaling: Zoom interrupts both sockets and sends the webhook.
        await eng.signaling_interrupted(StopReason.SIGNAL_CONNECTION_INTERRUPTED)
    elif conn.keepalive_failed and not eng.stopping:
        if eng.profile.keepalive_failure_grace:
            await eng.signaling_interrupted(StopReason.KEEP_ALIVE_TIMEOUT)
        else:
            await eng.stop(StopReason.KEEP_ALIVE_TIMEOUT)


async def _signaling_reader(eng: Engagement, conn: Connection) -> None:
    while True:
        obj = await conn.receive()
        if obj is None:
            return
        msg_type = obj.get("msg_type")
        if type(msg_type) is int:
            eng.stats.client_messages[msg_type] += 1
        if msg_type == MsgType.KEEP_ALIVE_RESP:
            _answer_keepalive(eng, conn, obj)
        elif msg_type == MsgType.CLIENT_READY_ACK:
            await _ready_ack(eng, obj)
        elif msg_type == MsgType.EVENT_SUBSCRIPTION:
            _subscribe(eng, obj)
        elif msg_type == MsgType.SESSION_STATE_REQ:
            state = SessionState.PAUSED if eng.paused else SessionState.STARTED
            await conn.send(
                {
                    "msg_type": MsgType.SESSION_STATE_RESP,
                    "rtms_session_id": obj.get("rtms_session_id", eng.session_id),
                    "state": state,
                    "timestamp": eng.now_ms(),
                }
            )
        elif msg_type == MsgType.STREAM_STATE_REQ:
            stream_state = StreamState.PAUSED if eng.paused else StreamState.ACTIVE
            await conn.send(
                {
                    "msg_type": MsgType.STREAM_STATE_RESP,
                    "rtms_stream_id": eng.scenario.rtms_stream_id,
                    "state": stream_state,
                    "timestamp": eng.now_ms(),
                }
            )
        elif msg_type == MsgType.STREAM_CLOSE_REQ:
            await conn.send(
                {
                    "msg_type": MsgType.STREAM_CLOSE_RESP,
                    "rtms_stream_id": eng.scenario.rtms_stream_id,
                    "status_code": 0,
                    "reason": "OK",
                    "timestamp": eng.now_ms(),
                }
            )
            await eng.stop(StopReason.RECEIVER_REQUEST_CLOSE)
            return
        elif msg_type == MsgType.VIDEO_SUBSCRIPTION_REQ:
            await _video_subscription(eng, conn, obj)
        # Anything else (unknown types, garbage) is ignored, as Zoom does not answer it.


def _subscribe(eng: Engagement, obj: Mapping[str, Any]) -> None:
    try:
        message = decode_object(dict(obj))
    except RemoteProtocolError:
        logger.info("ignored a malformed EVENT_SUBSCRIPTION")
        eng.stats.invalid_subscriptions += 1
        eng.changed()
        return
    if not isinstance(message, EventSubscription):
        return
    for event_type, subscribe in message.events:
        if subscribe:
            eng.subscribed.add(event_type)
        else:
            eng.subscribed.discard(event_type)
    eng.changed()


async def _ready_ack(eng: Engagement, obj: Mapping[str, Any]) -> None:
    stream_id = obj.get("rtms_stream_id")
    pending = [c for c in eng.unacked if not c.closed]
    if (stream_id is not None and stream_id != eng.scenario.rtms_stream_id) or not pending:
        # Zoom reports INVALID_CLIENT_READY_ACK (41) in a message type the docs do not name;
        # the simulator counts it instead of inventing one.
        eng.stats.invalid_ready_acks += 1
        eng.changed()
        return
    conn = pending[0]
    eng.unacked.remove(conn)
    eng.stats.ready_acks += 1
    await _start_streaming(eng, conn)


async def _start_streaming(eng: Engagement, conn: Connection) -> None:
    conn.ready.set()
    if "transcript" in conn.media:
        eng.feed.transcript_sockets.append(conn)
    if conn.audio is not None:
        await eng.feed.attach_audio(conn, conn.audio)
    eng.note_reconnected(media=True)
    eng.changed()


async def _video_subscription(eng: Engagement, conn: Connection, obj: Mapping[str, Any]) -> None:
    user_id = obj.get("user_id")
    subscribe = obj.get("subscribe", True) is not False
    previous = eng.video_subscribed_user
    if subscribe and previous is not None and previous == user_id:
        status = Status.DUPLICATE_VIDEO_SUBSCRIPTION
    else:
        status = Status.OK
        eng.video_subscribed_user = user_id if subscribe else None
        eng.video.subscribed_user = eng.video_subscribed_user
    code, reason = eng.profile.code(status)
    await conn.send(
        {
            "msg_type": MsgType.VIDEO_SUBSCRIPTION_RESP,
            "user_id": user_id,
            "status_code": code,
            "reason": reason or "OK",
            "timestamp": eng.now_ms(),
        }
    )


# --- keep-alive ------------------------------------------------------------------------------


def _answer_keepalive(eng: Engagement, conn: Connection, obj: Mapping[str, Any]) -> None:
    latency = conn.keepalive.answer(obj, now=trio.current_time())
    if latency is not None:
        eng.stats.keepalives_answered += 1
        eng.stats.keepalive_latencies_s.append(latency)
        eng.changed()


async def _keepalive_loop(eng: Engagement, conn: Connection) -> None:
    """KEEP_ALIVE_REQ every interval; ``misses`` unanswered in a row break the socket.

    A stalled consumer (its TCP window full) cannot even be sent a request: a send that does not
    finish within one interval is abandoned and counts as unanswered, so a stall is detected and
    broken like silence. An abandoned send may leave a partial frame; the socket is dead by then.
    """
    profile = eng.profile
    interval = eng.scaled(profile.keepalive_interval_s)
    next_at = trio.current_time() + interval
    while True:
        await trio.sleep_until(next_at)
        # Woken late, this process itself was stalled (a starved test process runs the client
        # too): firing the missed ticks back to back would count each request, sent a moment
        # before (or abandoned at once, its deadline long past), as unanswered, and cut a
        # healthy client. Every request gets at least half an interval to be answered.
        next_at = max(next_at + interval, trio.current_time() + interval / 2)
        if conn.closed:
            return
        suppressed = (
            profile.keepalive_suppressed_while_streaming
            and conn.kind != "signaling"
            and trio.current_time() - conn.last_media_at < interval
        )
        missed = conn.keepalive.count_misses()
        if missed:
            eng.stats.keepalives_missed += missed
            eng.changed()
        if conn.keepalive.consecutive_misses >= profile.keepalive_misses:
            logger.info(
                "%s socket of %s: %d keep-alives unanswered",
                conn.kind,
                eng.scenario.name,
                profile.keepalive_misses,
            )
            conn.keepalive_failed = True
            conn.closed_by_server = True
            await conn.close(1000 if conn.kind == "signaling" else 1011)
            return
        if suppressed:
            continue
        request = conn.keepalive.next_request(
            now=trio.current_time(),
            timestamp_ms=eng.now_ms(),
            with_sequence=profile.keepalive_sequence,
            with_timestamp=profile.keepalive_timestamp,
        )
        sent = False
        with trio.move_on_at(next_at):
            sent = await conn.send(request)
        if sent:
            eng.stats.keepalives_sent += 1
            eng.changed()
        elif not conn.closed:
            eng.stats.keepalive_sends_stalled += 1
            eng.changed()


# --- media -----------------------------------------------------------------------------------


async def serve_media(eng: Engagement, conn: Connection) -> None:
    received, obj = await _first_frame(eng, conn)
    if not received:
        return
    open_media = [c for c in eng.media if not c.closed]
    verdict = check_media(
        obj,
        eng.expected,
        url_kind=conn.kind,
        offered=eng.scenario.media,
        open_kinds={k for c in open_media for k in c.media},
        unified_open=any(c.kind == "all" for c in open_media),
        check_signature=eng.profile.validate_media_signature,
    )
    status = verdict.status
    if status is Status.OK and eng.stopping:
        status = Status.UNKNOWN_STREAM
    if status is Status.OK:
        status = eng.refusals.next_refusal(conn.kind) or status
    if status is not Status.OK:
        await _reject(eng, conn, status, msg_type=MsgType.DATA_HAND_SHAKE_RESP, where="media")
        return
    assert verdict.params is not None
    conn.media = verdict.kinds
    audio_params = verdict.params.audio
    if audio_params is not None:
        payloads = {}
        for track in eng.program.tracks:
            if eng.options.encode_in_thread:
                payloads[track.name] = await trio.to_thread.run_sync(
                    encode_program_track, track, audio_params, limiter=_ENCODE_LIMITER
                )
            else:
                payloads[track.name] = encode_program_track(track, audio_params)
        conn.audio = SocketAudio(
            params=audio_params,
            payloads=payloads,
            frames_per_packet=audio_params.send_rate // FRAME_MS,
        )
    if verdict.params.video is not None or verdict.params.deskshare is not None:
        await eng.video.prepare(
            conn,
            verdict.kinds,
            {"video": verdict.params.video, "deskshare": verdict.params.deskshare},
            now_ms=eng.feed.timestamp_ms(eng.feed.next_frame),
        )
    eng.media.append(conn)
    eng.unacked.append(conn)
    stats = eng.stats
    stats.media_accepted += 1
    stats.media_open += 1
    stats.media_max_open = max(stats.media_max_open, stats.media_open)
    try:
        if eng.profile.sends_media_handshake_resp:
            response = DataHandshakeResponse(status_code=0, media_params=verdict.params).to_wire()
            await conn.send(response)
        else:
            # Zoom's mock sends no msg 4 and needs no ready ack: it just streams.
            eng.unacked.remove(conn)
            await _start_streaming(eng, conn)
        eng.changed()
        async with trio.open_nursery() as nursery:
            if eng.profile.keepalive_on_media:
                nursery.start_soon(_keepalive_loop, eng, conn)
            await _media_reader(eng, conn)
            nursery.cancel_scope.cancel()
    finally:
        stats.media_open -= 1
        eng.feed.detach(conn)
        eng.video.detach(conn)
        if conn in eng.media:
            eng.media.remove(conn)
        if conn in eng.unacked:
            eng.unacked.remove(conn)
        eng.changed()
    if eng.stopping or conn.generation != eng.generation:
        return
    if conn.keepalive_failed:
        await eng.media_interrupted(StopReason.KEEP_ALIVE_TIMEOUT)
    elif not conn.closed_by_server:
        await eng.media_interrupted(StopReason.DATA_CONNECTION_INTERRUPTED)


async def _media_reader(eng: Engagement, conn: Connection) -> None:
    while True:
        obj = await conn.receive()
        if obj is None:
            return
        if obj.get("msg_type") == MsgType.KEEP_ALIVE_RESP:
            _answer_keepalive(eng, conn, obj)
