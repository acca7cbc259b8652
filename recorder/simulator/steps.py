"""Scripted steps: what each ``Action`` of a scenario does to a running engagement.

Rule: a step only *asks* the engagement (``drop_media``, ``stop``, ``send_event``...) or sends
frames on its sockets; state changes stay in ``engagement``. Steps that could wait on a client
(an oversized frame it will not read) or on a delay (a Zoom-style retry) are spawned, so the
timeline never stalls behind them.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import trio

from recorder.products import Product
from recorder.rtms.messages import EventType, EventUpdate, Participant, StopReason
from recorder.simulator.scenario import Action, Step

if TYPE_CHECKING:
    from recorder.simulator.connections import Connection
    from recorder.simulator.engagement import Engagement

#: Frames of garbage the ``garbage`` step can send (rtms-protocol §12.4 edge cases).
GARBAGE_FRAMES: Final[Mapping[str, tuple[str | bytes, ...]]] = {
    "non_json": ("this is not json {",),
    "truncated_json": ('{"msg_type":14,"content":{"user_id":0,"data":"AAAA',),
    "wrong_types": ('{"msg_type":"14","content":"oops"}', '{"msg_type":6,"event":[1,2]}'),
    "unknown_type": ('{"msg_type":99,"foo":"bar"}',),
    "meta_data_audio": ('{"msg_type":23,"content":{}}',),
    "binary_junk": (b"\x00\xff\xfe\x80 not json",),
}


async def run_step(eng: Engagement, step: Step) -> None:
    """Do what ``step`` says to ``eng`` (see the action table in ``scenario``)."""
    action = step.action
    if action is Action.DROP_MEDIA:
        await eng.drop_media(step.arg_opt_str("media"), lose_s=step.arg_float("lose_s", 0.0))
    elif action is Action.DROP_SIGNALING:
        await eng.drop_signaling()
    elif action is Action.FAILOVER:
        await eng.failover()
    elif action is Action.PAUSE:
        await eng.pause()
    elif action is Action.RESUME:
        await eng.resume()
    elif action is Action.STOP:
        await eng.stop(
            step.arg_int("reason", StopReason.HOST_TRIGGERED),
            webhook_first=step.arg_bool("webhook_first", False),
            session_stop_reason=step.arg_int("session_stop_reason", step.arg_int("reason", 1)),
        )
    elif action is Action.GARBAGE:
        await send_garbage(
            eng, step.arg_str("kind", "all"), socket=step.arg_str("socket", "signaling")
        )
    elif action is Action.OVERSIZED_FRAME:
        # A client that refuses the frame stops reading it; the send may then hang until the
        # client gives up the socket, so it must not hold the timeline.
        eng.spawn(
            partial(
                send_oversized,
                eng,
                step.arg_int("bytes", 2 * 2**20),
                socket=step.arg_str("socket", "media"),
            )
        )
        await trio.lowlevel.checkpoint()
    elif action is Action.DUPLICATE_WEBHOOK:
        await eng.resend_webhook(step.arg_str("event", "started"), as_retry=False)
    elif action is Action.RETRY_WEBHOOK:
        # The retry waits for its (compressed) delay; the timeline does not.
        eng.spawn(partial(eng.resend_webhook, step.arg_str("event", "started"), as_retry=True))
    elif action in (Action.PARTICIPANT_JOIN, Action.PARTICIPANT_LEAVE, Action.ACTIVE_SPEAKER):
        await participant_event(eng, step)
    elif action is Action.ZCC_EVENT:
        await zcc_event(eng, step)
    elif action is Action.TRANSCRIPT:
        now = eng.now_ms()
        await eng.feed.send_transcript_text(
            step.arg_str("text", ""),
            user_id=step.arg_opt_str("user_id"),
            user_name=step.arg_opt_str("user_name"),
            channel_id=step.arg_opt_str("channel_id"),
            start_ms=now,
            end_ms=now,
        )
    elif action is Action.CHAT:
        await send_chat(eng, step)
    elif action is Action.LIFECYCLE_WEBHOOK:
        name = step.arg_str("event", "start_failed")  # checked by scenario.validate
        await eng.post_lifecycle(f"rtms.{name}", eng.lifecycle_payload(step.arg_opt_str("reason")))
    elif action is Action.TIMESTAMP_FAULT:
        eng.feed.break_timestamps(step.arg_str("kind", "seconds"), step.arg_int("frames", 1))


async def participant_event(eng: Engagement, step: Step) -> None:
    user_id = step.arg_str("user_id", "16790000")
    user_name = step.args.get("user_name")
    name = None if user_name is None else str(user_name)
    if step.action is Action.ACTIVE_SPEAKER:
        event = EventUpdate(
            EventType.ACTIVE_SPEAKER_CHANGE, eng.now_ms(), user_id=user_id, user_name=name
        )
    else:
        event_type = (
            EventType.PARTICIPANT_JOIN
            if step.action is Action.PARTICIPANT_JOIN
            else EventType.PARTICIPANT_LEAVE
        )
        participant = Participant(
            user_id, name if event_type == EventType.PARTICIPANT_JOIN else None
        )
        event = EventUpdate(event_type, eng.now_ms(), participants=(participant,))
    await eng.send_event(event)


async def zcc_event(eng: Engagement, step: Step) -> None:
    """A voice-call event: Contact Center (``event_type``, with its queue) or Zoom Phone
    (``event_code``, no queue: ``Engagement.send_event``)."""
    channel_id = step.arg_str("channel_id", eng.scenario.speakers[0].channel_id or "")
    speaker = next(
        (s for s in eng.scenario.speakers if s.channel_id == channel_id),
        eng.scenario.speakers[0],
    )
    info = {
        "channel_id": channel_id,
        "participant_mode": speaker.participant_mode or "caller",
        "user_id": speaker.user_id,
        "display_name": speaker.user_name,
    }
    if eng.scenario.product is Product.CONTACT_CENTER:
        info |= {"queue_id": "sim-queue-01", "queue_name": "Trading Desk"}
    event = EventUpdate(
        step.arg_int("event_type", 8),
        eng.now_ms(),
        participant_info=info,
        timestamp_key="event_ts",
    )
    await eng.send_event(event)


async def send_chat(eng: Engagement, step: Step) -> None:
    user_id = step.arg_str("user_id", eng.scenario.speakers[0].user_id)
    content: dict[str, Any] = {
        "user_id": int(user_id) if user_id.isdigit() else user_id,
        "user_name": step.arg_str("user_name", eng.scenario.speakers[0].user_name),
        "timestamp": eng.now_ms(),
        "data": step.arg_str("text", ""),
    }
    for conn in [c for c in eng.media if "chat" in c.media and c.ready.is_set()]:
        if await conn.send({"msg_type": 18, "content": content}):
            eng.stats.chats_sent += 1


def _targets(eng: Engagement, socket: str) -> list[Connection]:
    return list(eng.signaling) if socket == "signaling" else list(eng.media)


async def send_garbage(eng: Engagement, kind: str, *, socket: str) -> None:
    kinds = list(GARBAGE_FRAMES) if kind == "all" else [kind]
    for name in kinds:
        for frame in GARBAGE_FRAMES.get(name, ()):
            for conn in _targets(eng, socket):
                if await conn.send_raw(frame):
                    eng.stats.garbage_sent += 1


async def send_oversized(eng: Engagement, size: int, *, socket: str) -> None:
    """A frame larger than trio-websocket's default 1 MiB limit (a video keyframe's size)."""
    filler = "A" * size
    frame = (
        '{"msg_type":15,"content":{"user_id":0,"data":"'
        + filler
        + '","timestamp":'
        + str(eng.now_ms())
        + "}}"
    )
    for conn in _targets(eng, socket):
        if await conn.send_raw(frame):
            eng.stats.garbage_sent += 1
