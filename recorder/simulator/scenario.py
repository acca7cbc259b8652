"""Scenarios are data: one simulated RTMS engagement, its media and its timed fault steps.

Rule: a scenario says *what happens*, never *how it is served*. The same frozen tree is built in
Python by tests and benchmarks, or loaded from a TOML/JSON file by ``recorder simulate``; the
server, the profile and the webhook sender decide how it looks on the wire.

File shape (TOML; JSON is the same tree)::

    name = "zcc-call"
    product = "contact_center"          # meeting | webinar | session | contact_center | phone
    duration_s = 20
    instance_id = "LjjdDBo5SkGneP8qY4SvuQ"   # optional; generated when absent
    media = ["audio", "transcript"]
    [audio]
    layout = "channels"                 # mixed | per_speaker | channels (ZCC, Phone)
    codec = 2                           # optional hint for the client: media_params values
    sample_rate = 0
    [[speakers]]
    user_id = "16778240"
    user_name = "Agent Smith"
    fixture = "speech_a"
    channel_id = "ch-agent"              # ZCC: one SIP channel per party
    participant_mode = "callee"
    # crowd = 300                       # per_speaker only: 300 more speakers, strictly in turn
    # utterance_s = 0.4                 # cut every utterance to this long (0: whole fixture)
    [[steps]]
    at_s = 5.0
    action = "drop_media"
    args = { media = "audio" }

Step actions and their ``args`` (all optional):

=================== ==========================================================================
``drop_media``      ``media``: close the media sockets carrying it (default all); EVENT_UPDATE
                    7 + STREAM_STATE 2/14; audio is buffered; reconnect within the media grace;
                    ``lose_s``: that many seconds from the drop on are lost, not buffered
``drop_signaling``  close every socket, ``*.rtms_interrupted``; reconnect within the grace
``failover``        new endpoint URLs, old ones refused; a new ``*.rtms_started`` (same stream
                    id, new ``event_ts``)
``pause``/``resume`` SESSION_STATE 3/4 + STREAM_STATE 5/6; no media while paused
``stop``            ``reason`` (1), ``session_stop_reason``, ``webhook_first`` (false)
``garbage``         ``kind`` (``all`` or one of GARBAGE_KINDS), ``socket`` (signaling|media)
``oversized_frame`` ``bytes`` (2 MiB), ``socket`` (media)
``duplicate_webhook`` / ``retry_webhook``  ``event`` (started|stopped|interrupted): same bytes
``participant_join`` / ``participant_leave`` / ``active_speaker``  ``user_id``, ``user_name``
``zcc_event``       ``event_type`` (8), ``channel_id``; a Zoom Phone call sends it as
                    ``event_code`` (12 hold, 13 resume, 18..21 transfer)
``lifecycle_webhook`` ``event`` (start_failed | concurrency_limited | concurrency_near_limit),
                    ``reason``: a signed ``rtms.<event>`` naming this engagement's ids
``transcript``      ``text``, ``user_id``, ``user_name``, ``channel_id``
``chat``            ``text``, ``user_id``, ``user_name``
``timestamp_fault`` ``kind`` (one of TIMESTAMP_FAULT_KINDS), ``frames`` (1): the next audio
                    packets sent carry a broken timestamp (the first replayed one, at 0 s)
=================== ==========================================================================

Steps run on the media timeline: a step at ``at_s`` runs before the frame at that time, so
scripted faults land on exact frame boundaries.
"""

from __future__ import annotations

import enum
import json
import secrets
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from recorder.errors import ConfigError
from recorder.products import INSTANCE_ID_KEYS
from recorder.products import Product as Product
from recorder.rtms.messages import AudioParams
from recorder.simulator.faults import Faults, faults_from_mapping
from recorder.simulator.handshake import confirm_audio
from recorder.simulator.profiles import Status
from recorder.simulator.video import VideoFeedSpec

#: Zoom carries at most three speakers per 20 ms in per-speaker mode (rtms-protocol §5.15).
MAX_SPEAKERS: Final = 3

#: The speech fixtures shipped in ``recorder/simulator/data`` and what each one says (the
#: transcript lines the simulator sends must match the audio, see data/make_speech.sh).
FIXTURE_TEXT: Final[Mapping[str, str]] = {
    "speech_a": (
        "Thank you for calling the trading desk. This call is recorded for compliance. "
        "How can I help you today?"
    ),
    "speech_b": (
        "I would like to sell two hundred shares of the index fund at the market price, please."
    ),
    "speech_c": (
        "Confirming the order: two hundred shares, sold at market. "
        "Is there anything else I can do for you?"
    ),
}


class AudioLayout(enum.StrEnum):
    #: One mixed track, ``user_id`` 0 (``data_opt`` 1).
    MIXED = "mixed"
    #: One packet sequence per speaker while they speak (``data_opt`` 2).
    PER_SPEAKER = "per_speaker"
    #: ZCC: one continuous track per SIP channel, tagged ``channel_id``.
    CHANNELS = "channels"


class Action(enum.StrEnum):
    """What a timed step does. ``args`` per action are listed in ``STEP_ARGS``."""

    DROP_MEDIA = "drop_media"
    DROP_SIGNALING = "drop_signaling"
    FAILOVER = "failover"
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    GARBAGE = "garbage"
    OVERSIZED_FRAME = "oversized_frame"
    DUPLICATE_WEBHOOK = "duplicate_webhook"
    RETRY_WEBHOOK = "retry_webhook"
    PARTICIPANT_JOIN = "participant_join"
    PARTICIPANT_LEAVE = "participant_leave"
    ACTIVE_SPEAKER = "active_speaker"
    ZCC_EVENT = "zcc_event"
    TRANSCRIPT = "transcript"
    CHAT = "chat"
    LIFECYCLE_WEBHOOK = "lifecycle_webhook"
    TIMESTAMP_FAULT = "timestamp_fault"


#: What the ``lifecycle_webhook`` step can send (``rtms.<name>``, rtms-protocol §8.1, §16).
LIFECYCLE_EVENTS: Final = frozenset(
    {"start_failed", "concurrency_limited", "concurrency_near_limit"}
)

#: Accepted argument names per action (anything else is a scenario error, caught at load time).
STEP_ARGS: Final[Mapping[Action, frozenset[str]]] = {
    Action.DROP_MEDIA: frozenset({"media", "lose_s"}),
    Action.DROP_SIGNALING: frozenset(),
    Action.FAILOVER: frozenset(),
    Action.PAUSE: frozenset({"actor"}),
    Action.RESUME: frozenset(),
    Action.STOP: frozenset({"reason", "webhook_first", "session_stop_reason"}),
    Action.GARBAGE: frozenset({"kind", "socket"}),
    Action.OVERSIZED_FRAME: frozenset({"bytes", "socket"}),
    Action.DUPLICATE_WEBHOOK: frozenset({"event"}),
    Action.RETRY_WEBHOOK: frozenset({"event"}),
    Action.PARTICIPANT_JOIN: frozenset({"user_id", "user_name"}),
    Action.PARTICIPANT_LEAVE: frozenset({"user_id"}),
    Action.ACTIVE_SPEAKER: frozenset({"user_id", "user_name"}),
    Action.ZCC_EVENT: frozenset({"event_type", "channel_id"}),
    Action.TRANSCRIPT: frozenset({"text", "user_id", "user_name", "channel_id"}),
    Action.CHAT: frozenset({"text", "user_id", "user_name"}),
    Action.LIFECYCLE_WEBHOOK: frozenset({"event", "reason"}),
    Action.TIMESTAMP_FAULT: frozenset({"kind", "frames"}),
}

#: Garbage frame kinds for ``Action.GARBAGE`` (``kind = "all"`` sends every one).
GARBAGE_KINDS: Final = (
    "non_json",
    "truncated_json",
    "wrong_types",
    "unknown_type",
    "meta_data_audio",
    "binary_junk",
)

#: Broken timestamps for ``Action.TIMESTAMP_FAULT``: what a buggy sender gets wrong.
TIMESTAMP_FAULT_KINDS: Final = (
    "seconds",
    "microseconds",
    "zero",
    "negative",
    "max_int64",
    "far_future",
)

ArgValue = str | int | float | bool


@dataclass(frozen=True, slots=True)
class Speaker:
    user_id: str
    user_name: str
    #: A speech fixture name from ``recorder/simulator/data`` (``speech_a``...).
    fixture: str
    #: ZCC only: the SIP channel this party speaks on.
    channel_id: str | None = None
    #: ZCC only: ``caller`` or ``callee``.
    participant_mode: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    at_s: float
    action: Action
    args: Mapping[str, ArgValue] = field(default_factory=dict)

    def arg_int(self, name: str, default: int) -> int:
        value = self.args.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ConfigError(f"step {self.action}: argument {name} must be an integer")
        return int(value)

    def arg_float(self, name: str, default: float) -> float:
        value = self.args.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"step {self.action}: argument {name} must be a number")
        return float(value)

    def arg_str(self, name: str, default: str) -> str:
        value = self.args.get(name, default)
        return str(value)

    def arg_opt_str(self, name: str) -> str | None:
        value = self.args.get(name)
        return None if value is None else str(value)

    def arg_bool(self, name: str, default: bool) -> bool:
        value = self.args.get(name, default)
        if not isinstance(value, bool):
            raise ConfigError(f"step {self.action}: argument {name} must be true or false")
        return value


@dataclass(frozen=True, slots=True)
class Scenario:
    """One simulated engagement. Every field has a sensible default except ``product``."""

    product: Product
    name: str = "engagement"
    #: meeting_uuid / webinar_uuid / session_id / engagement_id / call_id; may hold ``/``,
    #: ``+``, ``=``.
    #: Empty means "generate one".
    instance_id: str = ""
    #: Empty means "generate one".
    rtms_stream_id: str = ""
    #: The handshake's instance-id key when a client is expected to use another one than the
    #: product's (webinars and sessions are unsettled, rtms-protocol §14.1); empty = product key.
    handshake_id_key: str = ""
    #: OAuth client id/secret; for ``session`` these are the Video SDK key/secret.
    client_id: str = "sim_client_id"
    client_secret: str = "sim_client_secret"  # noqa: S105 (a simulator default, not a secret)
    #: Which media the app has scopes for: ``audio``, ``transcript``, ``chat``, ``video``.
    media: tuple[str, ...] = ("audio", "transcript")
    layout: AudioLayout = AudioLayout.MIXED
    speakers: tuple[Speaker, ...] = ()
    #: How long the engagement runs before it stops on its own (reason ``end_reason``).
    duration_s: float = 10.0
    #: Stop reason used when ``duration_s`` elapses without a ``stop`` step (6 MEETING_ENDED).
    end_reason: int = 6
    #: Pause between two utterances, so per-speaker silence is visible.
    utterance_gap_s: float = 0.5
    #: Cut every utterance to this many seconds (0: each speaker says their whole fixture).
    utterance_s: float = 0.0
    #: Per-speaker layout: this many generated speakers (``crowd-0001``...) speak after the
    #: listed ones, strictly in turn, each once per cycle: the speaker churn of a town hall
    #: (300 who each speak once must cost what three do once they are silent).
    crowd: int = 0
    #: The stream's t0: Unix milliseconds of the rtms_started moment; 0 = the wall clock at start.
    t0_ms: int = 0
    #: Push audio as fast as possible instead of pacing it (provokes backpressure).
    firehose: bool = False
    #: Media kinds (of ``media``) whose sockets must be streaming before the call's clock starts:
    #: frame 0, the first step and the first video frame wait until a ready media socket carries
    #: each of them. Zoom buffers audio for a late client but never video (rtms-protocol
    #: §5.15), so a test that checks video frame by frame (a drop at 2.4 s, a keyframe) names
    #: its kinds here instead of racing the client's connect, which takes seconds on a loaded
    #: host. Empty: the clock starts at ``rtms_started``, as Zoom's does.
    start_when_streaming: tuple[str, ...] = ()
    #: A hint for the client: the audio ``media_params`` this scenario is meant to be recorded
    #: with (wire values: codec, sample_rate, channel, data_opt, send_rate). The simulator serves
    #: whatever valid params the client asks for.
    audio_hint: Mapping[str, int] = field(default_factory=dict)
    steps: tuple[Step, ...] = ()
    #: Refused handshakes and odd frame shapes (``recorder.simulator.faults``).
    faults: Faults = field(default_factory=Faults)
    #: The H.264 test pattern streamed when ``media`` offers video / deskshare (``[video]``).
    video: VideoFeedSpec = field(default_factory=VideoFeedSpec)

    def audio_params(self) -> AudioParams:
        """``audio_hint`` as the client's audio ``media_params`` (WebSocket defaults elsewhere)."""
        return AudioParams(**self.audio_hint)

    def resolved(self) -> Scenario:
        """A copy with generated ids and default speakers filled in."""
        instance_id = self.instance_id or _generated_uuid()
        stream_id = self.rtms_stream_id or secrets.token_hex(16)
        speakers = self.speakers or (() if self.crowd else default_speakers(self.product))
        crowd = crowd_speakers(self.crowd)
        if crowd and speakers[-len(crowd) :] != crowd:
            # Idempotent: a resolved scenario already holds its crowd.
            speakers += crowd
        t0_ms = self.t0_ms or int(time.time() * 1000)
        return replace(
            self, instance_id=instance_id, rtms_stream_id=stream_id, speakers=speakers, t0_ms=t0_ms
        )


def _generated_uuid() -> str:
    # Zoom meeting UUIDs are base64 of 16 bytes; keep '/', '+', '=' possible on purpose.
    import base64

    return base64.b64encode(secrets.token_bytes(16)).decode("ascii")


def crowd_speakers(count: int) -> tuple[Speaker, ...]:
    """``count`` speakers with distinct ids and names, cycling through the speech fixtures."""
    fixtures = sorted(FIXTURE_TEXT)
    return tuple(
        Speaker(f"crowd-{n:04d}", f"Speaker {n}", fixtures[n % len(fixtures)])
        for n in range(1, count + 1)
    )


def default_speakers(product: Product) -> tuple[Speaker, ...]:
    if product is Product.PHONE:
        # The two legs of a call: whoever called and whoever answered.
        return (
            Speaker("caller-01", "Caller", "speech_b", channel_id="1", participant_mode="caller"),
            Speaker("callee-01", "Trader", "speech_a", channel_id="2", participant_mode="callee"),
        )
    if product is Product.CONTACT_CENTER:
        return (
            Speaker(
                "agent-01", "Agent", "speech_a", channel_id="ch-agent", participant_mode="callee"
            ),
            Speaker(
                "consumer-01",
                "Caller",
                "speech_b",
                channel_id="ch-caller",
                participant_mode="caller",
            ),
        )
    return (
        Speaker("16778240", "Alice Trader", "speech_a"),
        Speaker("16779264", "Bob Client", "speech_b"),
        Speaker("16780288", "Carol Desk", "speech_c"),
    )


# --- validation and loading -----------------------------------------------------------------

_MEDIA_NAMES: Final = frozenset({"audio", "video", "deskshare", "transcript", "chat"})


def validate(scenario: Scenario) -> Scenario:
    """Raise ``ConfigError`` naming the first problem; return the scenario unchanged."""
    if not scenario.media or not set(scenario.media) <= _MEDIA_NAMES:
        raise ConfigError(
            f"scenario {scenario.name}: media must be a subset of {sorted(_MEDIA_NAMES)}"
        )
    if scenario.product.is_voice_call and not set(scenario.media) <= {"audio", "transcript"}:
        raise ConfigError(
            f"scenario {scenario.name}: {scenario.product.value} offers audio and transcript only"
        )
    if scenario.handshake_id_key and scenario.handshake_id_key not in INSTANCE_ID_KEYS.values():
        raise ConfigError(
            f"scenario {scenario.name}: handshake_id_key must be one of "
            f"{sorted(INSTANCE_ID_KEYS.values())}"
        )
    if scenario.crowd < 0 or scenario.utterance_s < 0:
        raise ConfigError(f"scenario {scenario.name}: crowd and utterance_s cannot be negative")
    if scenario.crowd and (
        scenario.layout is not AudioLayout.PER_SPEAKER or scenario.utterance_gap_s < 0
    ):
        raise ConfigError(
            f"scenario {scenario.name}: a crowd speaks per speaker and strictly in turn "
            "(layout 'per_speaker', utterance_gap_s >= 0)"
        )
    if len(scenario.speakers) > MAX_SPEAKERS and not scenario.crowd:
        raise ConfigError(f"scenario {scenario.name}: at most {MAX_SPEAKERS} speakers")
    for speaker in scenario.speakers:
        if speaker.fixture not in FIXTURE_TEXT:
            raise ConfigError(
                f"scenario {scenario.name}: unknown speech fixture {speaker.fixture!r}"
            )
    if scenario.layout is AudioLayout.CHANNELS and any(
        s.channel_id is None for s in scenario.speakers
    ):
        raise ConfigError(
            f"scenario {scenario.name}: layout 'channels' needs a channel_id per speaker"
        )
    if scenario.audio_hint:
        status, _ = confirm_audio(dict(scenario.audio_hint))
        if status is not Status.OK:
            raise ConfigError(
                f"scenario {scenario.name}: [audio] hint is refused by RTMS: {status.value}"
            )
    if scenario.duration_s <= 0:
        raise ConfigError(f"scenario {scenario.name}: duration_s must be positive")
    not_offered = set(scenario.start_when_streaming) - set(scenario.media)
    if not_offered:
        raise ConfigError(
            f"scenario {scenario.name}: start_when_streaming names media the scenario does not "
            f"offer: {sorted(not_offered)} (media is {list(scenario.media)})"
        )
    for step in scenario.steps:
        unknown = set(step.args) - STEP_ARGS[step.action]
        if unknown:
            raise ConfigError(
                f"scenario {scenario.name}: step {step.action} has unknown args {sorted(unknown)}"
            )
        if (
            step.action is Action.LIFECYCLE_WEBHOOK
            and step.arg_str("event", "start_failed") not in LIFECYCLE_EVENTS
        ):
            raise ConfigError(
                f"scenario {scenario.name}: lifecycle_webhook event must be one of "
                f"{sorted(LIFECYCLE_EVENTS)}"
            )
        if step.at_s < 0:
            raise ConfigError(f"scenario {scenario.name}: step {step.action} at a negative time")
        if (
            step.action is Action.TIMESTAMP_FAULT
            and step.arg_str("kind", "seconds") not in TIMESTAMP_FAULT_KINDS
        ):
            raise ConfigError(
                f"scenario {scenario.name}: timestamp_fault kind must be one of "
                f"{', '.join(TIMESTAMP_FAULT_KINDS)}"
            )
    return scenario


def scenario_from_mapping(data: Mapping[str, Any], *, default_name: str = "engagement") -> Scenario:
    """Build a scenario from a decoded TOML/JSON tree (``ConfigError`` on anything wrong)."""
    try:
        product = Product(str(data["product"]))
        audio_table = dict(data.get("audio", {}))
        layout_name = audio_table.pop("layout", data.get("layout", "mixed"))
        hint_keys = {"content_type", "codec", "sample_rate", "channel", "data_opt", "send_rate"}
        if set(audio_table) - hint_keys:
            raise ConfigError(
                f"scenario: unknown [audio] keys {sorted(set(audio_table) - hint_keys)}"
            )
        audio_hint = {k: int(v) for k, v in audio_table.items()}
        speakers = tuple(
            Speaker(
                user_id=str(s["user_id"]),
                user_name=str(s["user_name"]),
                fixture=str(s.get("fixture", "speech_a")),
                channel_id=None if s.get("channel_id") is None else str(s["channel_id"]),
                participant_mode=s.get("participant_mode"),
            )
            for s in data.get("speakers", ())
        )
        steps = tuple(
            Step(
                at_s=float(s["at_s"]), action=Action(str(s["action"])), args=dict(s.get("args", {}))
            )
            for s in data.get("steps", ())
        )
        known = {
            "name",
            "instance_id",
            "rtms_stream_id",
            "client_id",
            "client_secret",
            "duration_s",
            "end_reason",
            "utterance_gap_s",
            "utterance_s",
            "crowd",
            "t0_ms",
            "firehose",
            "handshake_id_key",
        }
        structured = {
            "product",
            "audio",
            "layout",
            "speakers",
            "steps",
            "media",
            "faults",
            "video",
            "start_when_streaming",
        }
        unknown = set(data) - known - structured
        if unknown:
            raise ConfigError(f"scenario: unknown keys {sorted(unknown)}")
        simple: dict[str, Any] = {k: data[k] for k in known if k in data}
        scenario = Scenario(
            product=product,
            layout=AudioLayout(str(layout_name)),
            speakers=speakers,
            steps=tuple(sorted(steps, key=lambda s: s.at_s)),
            media=tuple(str(m) for m in data.get("media", ("audio", "transcript"))),
            start_when_streaming=tuple(str(m) for m in data.get("start_when_streaming", ())),
            audio_hint=audio_hint,
            faults=faults_from_mapping(dict(data.get("faults", {}))),
            video=VideoFeedSpec.from_mapping(dict(data.get("video", {}))),
            **{"name": default_name, **simple},
        )
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"scenario {default_name}: {exc!r}") from exc
    return validate(scenario)


def load_scenario(path: Path) -> Scenario:
    """Load a ``.toml`` or ``.json`` scenario file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read scenario {path}: {exc.strerror}") from exc
    try:
        data = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"scenario {path} is not valid {path.suffix[1:] or 'toml'}: {exc}"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"scenario {path}: top level must be a table")
    return scenario_from_mapping(data, default_name=path.stem)


def builtin_scenarios() -> Sequence[Path]:
    """The example scenario files shipped with the package (used by ``recorder demo``)."""
    folder = Path(__file__).parent / "scenarios"
    return sorted(folder.glob("*.toml"))
