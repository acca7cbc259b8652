r"""The synchronous heart of one engagement's capture: events in, sealed segments out.

No trio here. ``CaptureCore`` owns, per audio track, a decoder, a timeline and a segment writer
(created on the track's first packet), plus the engagement's records writer. The trio shell
(``recorder.capture.pipeline``) decides *where* each call runs (inline on the trio thread, or in
a worker thread for costly decodes and for fsync) and guarantees that no two calls run at once:
the core is not thread-safe, it is only ever driven by one thread at a time.

What the core does with each event:

* ``AudioPacket``: decode (``DecodeError`` becomes a ``DECODE_ERROR`` gap over the packet's
  span), place on the track's timeline, write what the timeline releases.
* ``Interrupted`` / ``Recovered``, ``Paused`` / ``Resumed``: open and close a window on every
  audio track, so the gap that follows is named after its cause (or recorded as a pause, with
  the actor). Interruptions are paired by id, and ``Recovered`` brings the true cause; one that
  only concerns a transcript or chat socket opens no window. ``PacketsDropped`` with a
  timestamp range labels that range on its own audio track (never on another one).
* A packet whose timestamp cannot be Unix milliseconds is refused at this boundary (counted
  ``bad_timestamp_packets``, said in the records); the timeline bounds every other timestamp
  by the recorder's monotonic clock (``clock_ms``; see ``recorder.audio.timeline`` rule 7).
* Late packets (rule 4 of the timeline) name the gap they missed ``LATE_PACKETS``: in the open
  segment's manifest entry and in the records.
* Everything else, plus the above and every gap and pause, is a line in the records.

Segment files are never opened or sealed here: every handler returns ``Action``\s
(``recorder.capture.actions``) that the shell runs in worker threads, so a rotation costs the
event loop nothing.

**Retirement.** A per-speaker or per-channel track whose participant left (meeting leave, ZCC
transfer completed or participant left) or that has been silent for ``retire_after_s`` is
retired: its decoder flushed into the timeline, its segment sealed, its decoder and timeline
freed. Only a few numbers stay (``_Dormant``). Its next packet reopens it lazily under the same
track id, on the same sample axis, with the next segment index; the time in between holds no
silence in any WAV and is told by the reopened track's first manifest entry (``absence``) with
its cause: the window (interruption, pause) that covered it, else ``participant_left``, else the
track's default cause. 300 speakers who each spoke once cost as much as three.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from recorder.audio.decoder import (
    ALAW,
    VOICE,
    AudioDecoder,
    OutputFormat,
    decoder_version,
    make_decoder,
)
from recorder.audio.manifest import (
    EngagementManifest,
    Participant,
    SegmentManifestEntry,
    SpanRecord,
)
from recorder.audio.mixer import Mixer
from recorder.audio.records import PendingRecordsSeal, RecordsWriter
from recorder.audio.segments import (
    PREOPEN_SECONDS,
    SEGMENT_SECONDS,
    PendingAudioSeal,
    SegmentWriter,
    TrackFormat,
)
from recorder.audio.timeline import (
    MAX_TIMESTAMP_MS,
    MIN_TIMESTAMP_MS,
    Audio,
    Gap,
    SpanKind,
    Timeline,
    TimelineItem,
    is_plausible_timestamp_ms,
)
from recorder.audio.wav import MAX_DATA_LENGTH
from recorder.capture.actions import (
    Action,
    DeferredSink,
    DeferringSinkFactory,
    Sealed,
    SealSegment,
    run_inline,
)
from recorder.errors import ConfigError, DecodeError, LocalProtocolError
from recorder.rtms.events import (
    AudioCodec,
    AudioFormat,
    AudioPacket,
    CaptureEvent,
    ContactCenterEvent,
    GapCause,
    Interrupted,
    PacketsDropped,
    ParticipantEvent,
    Paused,
    Recovered,
    Resumed,
)
from recorder.sink import EvidenceSink, SinkFactory

logger = logging.getLogger(__name__)

#: Per-speaker tracks are silent whenever that person is: RTMS sends nothing (§5.15).
_USER_TRACK_PREFIX: Final = "user-"
#: The recorder's own sum of the per-speaker tracks (``CaptureConfig.mixdown``).
MIXDOWN_TRACK: Final = "mixdown"
#: Interruption and pause windows kept open at once (each ``Recovered`` closes its own).
_MAX_OPEN_WINDOWS: Final = 32
_CHANNEL_TRACK_PREFIX: Final = "channel-"
#: RTMS_EVENT_TYPE participant leave (docs/rtms-protocol.md §6.14).
_PARTICIPANT_LEAVE: Final = 4
#: ZCC events after which a channel's participant is gone: transfer completed, conference
#: participant left.
_CHANNEL_LEFT_EVENTS: Final = frozenset({21, 29})

__all__ = ["Action", "CaptureConfig", "CaptureCore", "Sealed"]


@dataclass(frozen=True, slots=True)
class CaptureConfig:
    """How one engagement is captured. Units are in the names."""

    output: OutputFormat = VOICE
    segment_seconds: float = SEGMENT_SECONDS
    #: Per-segment cap on WAV data bytes (below 4 GiB; see ``recorder.audio.wav``).
    max_data_length: int = MAX_DATA_LENGTH
    #: Every open sink is made durable at least this often (a crash loses at most this much).
    checkpoint_interval_s: float = 1.0
    #: Bound on sealing everything at the end, on stop, error or cancellation.
    finalize_timeout_s: float = 15.0
    tolerance_ms: int = 10
    holdback_ms: int = 200
    g711_law: str = ALAW
    #: Decode on the trio thread (default). ``python -m recorder.bench.pipeline`` measured it:
    #: one thread hop per packet triples the CPU per Opus message, batches of 16 still cost
    #: ~10% more than inline, and paced live streams deliver about one packet per wakeup, so
    #: batches would not fill. False moves PyAV decoding to worker threads in batches (for
    #: bulk replays on a host with an idle core: PyAV releases the GIL for part of a decode).
    decode_inline: bool = True
    #: Packets per worker-thread hop when ``decode_inline`` is False.
    decode_batch: int = 16
    #: Write gaps and pauses of audio tracks into the records too (NO_SPEECH gaps never are).
    gaps_in_records: bool = True
    #: In per-speaker mode, also write a ``mixdown`` track: the speakers summed on one clock.
    mixdown: bool = False
    #: Index of the first segment of every track (a later owner of a stream starts higher, so
    #: it never reuses an index the previous owner may still recover).
    first_segment_index: int = 0
    #: How far a live stream's timestamps may run ahead of the recorder's monotonic clock since
    #: a track's anchor (Zoom replays up to 60 s of buffered audio at once, §9.4). A confirmed
    #: jump beyond it is a ``TIMESTAMP_DISCONTINUITY``, never written as silence.
    plausible_lead_ms: int = 90_000
    #: A per-speaker or per-channel track silent this long (wall clock, checked at each
    #: checkpoint) is retired: sealed, decoder freed, reopened by its next packet. 0: never.
    retire_after_s: float = 60.0


@dataclass(slots=True)
class _Dormant:
    """What a retired track keeps: its place on its own clock, and why it is absent."""

    end_sample: int
    #: RTMS time of ``end_sample`` (drift included).
    end_ms: int
    next_index: int
    sample_rate: int
    channels: int
    kind: SpanKind
    cause: GapCause | None
    actor: str | None = None
    #: An interruption or pause began while the track was retired: it names the absence.
    window_seen: bool = False
    #: The interruption naming the absence, whose ``Recovered`` may tell its true cause.
    window_id: int = 0


@dataclass(slots=True)
class _Track:
    decoder: AudioDecoder
    timeline: Timeline
    writer: SegmentWriter
    packet_samples: int
    #: ``decoder.source``, read once per packet: kept with the decoder it belongs to.
    source: AudioFormat
    counters: dict[str, int] = field(default_factory=dict)
    #: Cheap to decode on the trio thread (passthrough L16).
    inline: bool = False
    #: Where this speaker's sample 0 sits on the mixdown (per-speaker tracks only).
    mix_offset: int | None = None
    #: Where the timeline's sample 0 sits on the track's axis (non-zero after a reopen).
    sample_offset: int = 0
    #: Reopened after a retirement and not yet anchored: its ``sample_offset`` is not known.
    reopened: _Dormant | None = None
    #: A packet arrived since the last retirement check.
    heard: bool = True
    #: Wall ms of the retirement check that first found the track silent.
    silent_since_ms: int | None = None


class CaptureCore:
    """See the module docstring."""

    def __init__(
        self,
        sinks: SinkFactory,
        *,
        recording_id: str,
        originator_reference: str | None = None,
        config: CaptureConfig | None = None,
        now_ms: Callable[[], int],
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        """``clock_ms`` is a monotonic clock in ms that advances as the sender's does (trio's,
        so a MockClock test agrees with the simulator); None for offline replays fed faster than
        real time, where only the timeline's ``max_gap_ms`` bounds a gap."""
        self.config = config or CaptureConfig()
        self.recording_id = recording_id
        self._reference = originator_reference or recording_id
        self._deferring = DeferringSinkFactory(sinks)
        self._sinks = self._deferring
        #: Segments are pre-opened where the sink keeps spares out of crash recovery's sight.
        self._preopen_s = PREOPEN_SECONDS if self._deferring.supports_spares else 0.0
        self._now_ms = now_ms
        self._clock_ms = clock_ms
        self.tracks: dict[str, _Track] = {}
        #: Retired tracks, by name (a few numbers each).
        self.dormant: dict[str, _Dormant] = {}
        self.records = RecordsWriter(
            self._deferring,
            recording_id=recording_id,
            now_ms=now_ms,
            segment_seconds=self.config.segment_seconds,
            first_index=self.config.first_segment_index,
        )
        self.manifest = EngagementManifest(recording_id=recording_id)
        self._paused_wall_ms: int | None = None
        self._refused: dict[str, dict[str, int]] = {}
        self._mixer: Mixer | None = None
        self._mixdown: SegmentWriter | None = None
        #: Open windows (id, kind, cause, actor), so tracks that appear during one still get it.
        self._open_windows: list[tuple[int, SpanKind, GapCause | None, str | None]] = []
        #: Interruption ids with an audio window open, so each ``Recovered`` closes its own.
        self._audio_interruptions: set[int] = set()
        self._bad_timestamps: dict[str, int] = {}

    def now_ms(self) -> int:
        return self._now_ms()

    # --- routing ------------------------------------------------------------------------------

    def is_inline(self, packet: AudioPacket) -> bool:
        """Whether this packet is cheap enough to handle on the trio thread."""
        track = self.tracks.get(packet.track)
        if track is None:
            return self.config.decode_inline or _cheap(packet, self.config.output)
        source = track.source
        if source is not packet.format and source != packet.format:
            # Identity first: a stream's packets share one AudioFormat; __eq__ costs ~0.3 µs.
            return self.config.decode_inline or _cheap(packet, self.config.output)
        return track.inline

    # --- events -------------------------------------------------------------------------------

    def handle_audio(self, packet: AudioPacket) -> list[Action]:
        # is_plausible_timestamp_ms, inline: once per packet.
        if not MIN_TIMESTAMP_MS <= packet.timestamp_ms <= MAX_TIMESTAMP_MS:
            return self._refuse_timestamp(packet)
        track = self.tracks.get(packet.track)
        actions: list[Action] = []
        if track is None or not (track.source is packet.format or track.source == packet.format):
            try:
                track = self._open_track(packet, track, actions)
            except (ConfigError, DecodeError) as exc:
                return self._refuse(packet, exc)
        track.heard = True
        try:
            pcm = track.decoder.decode(packet.payload)
        except DecodeError as exc:
            _bump(track.counters, "decode_errors")
            errors = track.counters["decode_errors"]
            if errors & (errors - 1) == 0:
                # A stream of garbage must not flood the log: 1st, 2nd, 4th, 8th... are logged.
                logger.warning(
                    "undecodable packet recording_id=%s track=%s ts=%d count=%d: %s",
                    self.recording_id,
                    packet.track,
                    packet.timestamp_ms,
                    errors,
                    exc,
                )
            items = track.timeline.push_undecodable(
                packet.timestamp_ms, track.packet_samples, now_ms=self._clock()
            )
        else:
            clock_ms = self._clock_ms  # self._clock(), inline: once per packet
            items = track.timeline.push(
                packet.timestamp_ms, pcm, now_ms=None if clock_ms is None else clock_ms()
            )
        if items:
            self._write(packet.track, track, items, actions)
        if track.timeline.has_late_spans:
            self._name_late(packet.track, track, actions)
        if (
            self._mixer is not None
            and packet.track.startswith(_USER_TRACK_PREFIX)
            and not track.timeline.holding
        ):
            # A timestamp its own track does not believe yet must not release the others.
            self._release_speakers(packet, actions)
        if actions or self._deferring.queued:
            return self._take(actions)
        return actions

    def handle_audio_batch(self, packets: list[AudioPacket]) -> list[Action]:
        actions: list[Action] = []
        for packet in packets:
            actions += self.handle_audio(packet)
        return actions

    def handle_event(self, event: CaptureEvent) -> list[Action]:
        """Any non-audio event (audio goes through ``handle_audio``)."""
        if isinstance(event, AudioPacket):
            return self.handle_audio(event)
        actions: list[Action] = []
        if isinstance(event, Interrupted):
            if event.affects_audio:
                if event.interruption_id:
                    self._audio_interruptions.add(event.interruption_id)
                self._begin_window(SpanKind.GAP, event.cause, None, window_id=event.interruption_id)
        elif isinstance(event, Recovered):
            if not event.interruption_id:
                self._end_window(SpanKind.GAP, event.wall_ms - event.interrupted_wall_ms)
            elif event.interruption_id in self._audio_interruptions:
                self._audio_interruptions.discard(event.interruption_id)
                self._end_window(
                    SpanKind.GAP,
                    event.wall_ms - event.interrupted_wall_ms,
                    window_id=event.interruption_id,
                    cause=event.cause,
                )
        elif isinstance(event, Paused):
            self._paused_wall_ms = event.wall_ms
            self._begin_window(SpanKind.PAUSE, None, event.actor, event.timestamp_ms)
        elif isinstance(event, Resumed):
            paused = self._paused_wall_ms if self._paused_wall_ms is not None else event.wall_ms
            self._paused_wall_ms = None
            self._end_window(SpanKind.PAUSE, event.wall_ms - paused)
        elif isinstance(event, PacketsDropped):
            self._label_dropped(event)
        elif isinstance(event, ParticipantEvent) and event.event_type == _PARTICIPANT_LEAVE:
            for participant in event.participants:
                self._retire_track(_USER_TRACK_PREFIX + participant.user_id, actions, left=True)
        elif (
            isinstance(event, ContactCenterEvent)
            and event.event_type in _CHANNEL_LEFT_EVENTS
            and event.channel_id
        ):
            self._retire_track(_CHANNEL_TRACK_PREFIX + event.channel_id, actions, left=True)
        self._seal_records(self.records.record_event(event), actions)
        return self._take(actions)

    # --- durability ---------------------------------------------------------------------------

    def retire_silent(self, now_ms: int) -> list[Action]:
        """Retire tracks silent for ``retire_after_s`` (the shell calls this at checkpoints)."""
        limit_ms = self.config.retire_after_s * 1000
        if limit_ms <= 0:
            return []
        actions: list[Action] = []
        for name, track in list(self.tracks.items()):
            if track.heard:
                track.heard = False
                track.silent_since_ms = now_ms
            elif track.silent_since_ms is not None and now_ms - track.silent_since_ms >= limit_ms:
                self._retire_track(name, actions, left=False)
        return self._take(actions)

    def checkpoint(self) -> None:
        """Make every open sink durable, on the calling thread (blocking: fsync). The shell uses
        ``checkpoint_targets`` instead, so the fsyncs run beside the writes."""
        for track in self.tracks.values():
            track.writer.checkpoint()
        if self._mixdown is not None:
            self._mixdown.checkpoint()
        self.records.checkpoint()

    def checkpoint_targets(self) -> list[EvidenceSink]:
        """The real sinks ``checkpoint`` would make durable, taken on the core's thread (sinks
        whose open completed are attached here). Their ``checkpoint`` may then run in a worker
        thread while the core goes on writing: each sink serialises its own writes and
        checkpoints, and what was written before this call is durable once they return."""
        writers = [track.writer for track in self.tracks.values()]
        if self._mixdown is not None:
            writers.append(self._mixdown)
        sinks = [writer.sink for writer in writers]
        sinks.append(self.records.sink)
        targets: list[EvidenceSink] = []
        for sink in sinks:
            real = sink.attached() if isinstance(sink, DeferredSink) else sink
            if real is not None:
                targets.append(real)
        return targets

    def finish(self, *, interrupted: bool) -> list[Action]:
        """Flush every timeline and detach every open segment for sealing."""
        actions: list[Action] = []
        for name, track in self.tracks.items():
            self._retire(name, track, actions, interrupted=interrupted)
        if self._mixer is not None and self._mixdown is not None:
            for item in self._mixer.finish():
                self._seal_audio(self._mixdown.write(item), actions)
            self._seal_audio([self._mixdown.close(interrupted=interrupted)], actions)
            self.manifest.counters[MIXDOWN_TRACK] = {"late_samples": self._mixer.late_samples}
        self._seal_records([self.records.close(interrupted=interrupted)], actions)
        return self._take(actions)

    def note(self, sealed: Sealed) -> None:
        """A ``SealSegment`` completed (the shell calls this on the core's thread)."""
        self.manifest.note(sealed.segment, sealed.entry)

    def run_inline(self, actions: list[Action]) -> list[Sealed]:
        """Run actions on this thread and note what they sealed: for tests, benchmarks and
        tools with no event loop to keep responsive (the shell runs them in threads)."""
        sealed = run_inline(actions)
        for item in sealed:
            self.note(item)
        return sealed

    # --- internals ----------------------------------------------------------------------------

    def _clock(self) -> int | None:
        return None if self._clock_ms is None else self._clock_ms()

    def _refuse_timestamp(self, packet: AudioPacket) -> list[Action]:
        """A timestamp that is not Unix ms (seconds, µs, 0, negative): the packet is refused."""
        count = self._bad_timestamps.get(packet.track, 0) + 1
        self._bad_timestamps[packet.track] = count
        track = self.tracks.get(packet.track)
        if track is not None:
            # Where it arrived is where its audio is missing: that gap is named after it.
            track.timeline.note_refused(track.packet_samples)
        self.manifest.counters.setdefault(packet.track, {})["bad_timestamp_packets"] = count
        if count & (count - 1):
            return []
        # 1st, 2nd, 4th, 8th...: a stream of them must not flood the log or the records.
        logger.warning(
            "audio packet with an impossible timestamp refused recording_id=%s track=%s "
            "ts=%d count=%d",
            self.recording_id,
            packet.track,
            packet.timestamp_ms,
            count,
        )
        actions: list[Action] = []
        self._seal_records(
            self.records.write_record(
                {
                    "type": "bad_timestamp",
                    "ts_ms": self._now_ms(),
                    "clock": "wall",
                    "track": packet.track,
                    "timestamp_ms": packet.timestamp_ms,
                    "count": count,
                }
            ),
            actions,
        )
        return self._take(actions)

    def _name_late(self, name: str, track: _Track, actions: list[Action]) -> None:
        """Late packets missed a gap already written: that gap's cause is ``LATE_PACKETS``."""
        timeline = track.timeline
        for start, end in timeline.take_late_spans():
            track.writer.relabel(start, end, GapCause.LATE_PACKETS)
            if self.config.gaps_in_records:
                late = Gap(start, end, SpanKind.GAP, GapCause.LATE_PACKETS)
                self._seal_records(
                    self.records.record_gap(
                        name, late, timeline.sample_to_ms(start), timeline.sample_to_ms(end)
                    ),
                    actions,
                )

    def _take(self, actions: list[Action]) -> list[Action]:
        """Opens (and discards) queued by the sink factory go first: a segment is opened before
        it is sealed or discarded."""
        opens = self._deferring.queued
        if not opens:
            return actions
        self._deferring.queued = []
        return [*opens, *actions]

    def _seal_audio(
        self, pending: Sequence[PendingAudioSeal | None], actions: list[Action]
    ) -> None:
        for item in pending:
            if item is not None:
                actions.append(SealSegment(_audio_sealer(item), item.track, item.segment_index))

    def _seal_records(
        self, pending: Sequence[PendingRecordsSeal | None], actions: list[Action]
    ) -> None:
        for item in pending:
            if item is not None:
                actions.append(SealSegment(_records_sealer(item), item.track, item.segment_index))

    def _refuse(self, packet: AudioPacket, exc: Exception) -> list[Action]:
        """Audio this recorder cannot decode at all: counted per track, said once in records."""
        counters = self._refused.setdefault(packet.track, {})
        _bump(counters, "unsupported_packets")
        self.manifest.counters.setdefault(packet.track, {}).update(counters)
        if counters["unsupported_packets"] > 1:
            return []
        logger.error(
            "unsupported audio recording_id=%s track=%s: %s", self.recording_id, packet.track, exc
        )
        actions: list[Action] = []
        self._seal_records(
            self.records.write_record(
                {
                    "type": "unsupported_audio",
                    "ts_ms": packet.timestamp_ms,
                    "clock": "rtms",
                    "track": packet.track,
                    "codec": int(packet.format.codec),
                    "sample_rate": packet.format.sample_rate,
                    "channels": packet.format.channels,
                    "error": str(exc),
                }
            ),
            actions,
        )
        return self._take(actions)

    def _open_track(self, packet: AudioPacket, old: _Track | None, actions: list[Action]) -> _Track:
        """A track's first packet, its first after a retirement, or one in a new format."""
        decoder = make_decoder(packet.format, self.config.output, g711_law=self.config.g711_law)
        if old is None:
            dormant = self.dormant.pop(packet.track, None)
            if dormant is not None:
                return self._reopen_track(packet, decoder, dormant)
            return self._new_track(packet, decoder, self.config.first_segment_index)
        output = (decoder.output_rate, decoder.output_channels)
        if output == (old.decoder.output_rate, old.decoder.output_channels):
            # Same output format: the track's timeline and segments go on. The old decoder's
            # held-back tail belongs before the new decoder's first output (a resampler holds
            # ~1 ms), and what follows is placed by the new decoder's lookahead, not the old.
            self._flush_decoder(packet.track, old, actions)
            old.timeline.set_delay(decoder.delay_samples)
            old.decoder = decoder
            old.source = decoder.source
            old.inline = self.config.decode_inline or _cheap(packet, self.config.output)
            return old
        # A new output format cannot share a WAV: seal the old timeline, start a new one.
        self._retire(packet.track, old, actions, interrupted=False)
        del self.tracks[packet.track]
        return self._new_track(packet, decoder, old.writer.next_index)

    def _reopen_track(
        self, packet: AudioPacket, decoder: AudioDecoder, dormant: _Dormant
    ) -> _Track:
        """The same track id, on the same clock: its sample axis goes on from where it stopped."""
        if (decoder.output_rate, decoder.output_channels) != (
            dormant.sample_rate,
            dormant.channels,
        ):
            # Another output format is another axis: start one (the old segments stay as they
            # are; the new ones say their own format).
            return self._new_track(packet, decoder, dormant.next_index)
        # Where it resumes is known only once its fresh timeline anchors (on agreeing packets,
        # not on this one, which may be an outlier or overtaken): ``_place_reopened``.
        return self._new_track(packet, decoder, dormant.next_index, reopened=dormant)

    def _place_reopened(self, track: _Track, dormant: _Dormant) -> None:
        """The reopened track's timeline anchored: put its sample 0 on the track's axis."""
        track.reopened = None
        anchor_ms = track.timeline.anchor_ms
        if anchor_ms is None:
            raise LocalProtocolError(f"track {track.writer.track} placed before it anchored")
        rate = dormant.sample_rate
        elapsed = ((anchor_ms - dormant.end_ms) * rate + 500) // 1000
        offset = dormant.end_sample + max(elapsed, 0)
        absence = None
        if offset > dormant.end_sample:
            absence = SpanRecord(
                kind=dormant.kind.value,
                cause=dormant.cause.value if dormant.cause is not None else None,
                actor=dormant.actor,
                start_sample=dormant.end_sample,
                end_sample=offset,
                segment_start_sample=dormant.end_sample - offset,
                segment_end_sample=0,
                start_ms=dormant.end_ms,
                end_ms=max(anchor_ms, dormant.end_ms),
            )
        track.sample_offset = offset
        track.writer.place(offset, absence)

    def _new_track(
        self,
        packet: AudioPacket,
        decoder: AudioDecoder,
        first_index: int,
        *,
        reopened: _Dormant | None = None,
    ) -> _Track:
        default_cause = (
            GapCause.NO_SPEECH
            if packet.track.startswith(_USER_TRACK_PREFIX)
            else GapCause.LOST_PACKETS
        )
        timeline = Timeline(
            sample_rate=decoder.output_rate,
            channels=decoder.output_channels,
            delay_samples=decoder.delay_samples,
            default_cause=default_cause,
            tolerance_ms=self.config.tolerance_ms,
            holdback_ms=self.config.holdback_ms,
            plausible_lead_ms=self.config.plausible_lead_ms,
        )
        for window_id, kind, cause, actor in self._open_windows:
            timeline.begin_window(cause, kind=kind, actor=actor, window_id=window_id)
        fmt = TrackFormat(
            track=packet.track,
            sample_rate=decoder.output_rate,
            channels=decoder.output_channels,
            source=decoder.description,
            decoder_version=decoder_version(),
            participant=Participant(packet.user_id, packet.user_name, packet.channel_id),
        )
        if reopened is not None:
            to_ms = timeline.sample_to_ms

            def sample_to_ms(sample: int) -> int:
                return to_ms(sample - track.sample_offset)
        else:
            sample_to_ms = timeline.sample_to_ms
        writer = SegmentWriter(
            self._sinks,
            recording_id=self.recording_id,
            originator_reference=self._reference,
            fmt=fmt,
            sample_to_ms=sample_to_ms,
            now_ms=self._now_ms,
            segment_seconds=self.config.segment_seconds,
            max_data_length=self.config.max_data_length,
            drift_samples=lambda: timeline.drift_samples,
            first_index=first_index,
            preopen_s=self._preopen_s,
        )
        track = _Track(
            decoder=decoder,
            timeline=timeline,
            writer=writer,
            packet_samples=decoder.output_rate * packet.format.packet_ms // 1000,
            source=decoder.source,
            inline=self.config.decode_inline or _cheap(packet, self.config.output),
            reopened=reopened,
        )
        self.tracks[packet.track] = track
        if (
            self.config.mixdown
            and self._mixer is None
            and packet.track.startswith(_USER_TRACK_PREFIX)
        ):
            self._start_mixdown(decoder)
        logger.info(
            "track %s recording_id=%s track=%s source=%s",
            "reopened" if first_index != self.config.first_segment_index else "opened",
            self.recording_id,
            packet.track,
            decoder.description,
        )
        return track

    def _write(
        self, name: str, track: _Track, items: list[TimelineItem], actions: list[Action]
    ) -> None:
        if track.reopened is not None:
            self._place_reopened(track, track.reopened)
        writer = track.writer
        mixing = self._mixer is not None and name.startswith(_USER_TRACK_PREFIX)
        for item in items:
            done = writer.write(item)
            if done:
                self._seal_audio(done, actions)
            if mixing and isinstance(item, Audio):
                self._mix(track, item, actions)
            if (
                isinstance(item, Gap)
                and self.config.gaps_in_records
                and item.cause is not GapCause.NO_SPEECH
            ):
                timeline = track.timeline
                self._seal_records(
                    self.records.record_gap(
                        name,
                        item,
                        timeline.sample_to_ms(item.start),
                        timeline.sample_to_ms(item.end),
                    ),
                    actions,
                )

    def _mix(self, track: _Track, item: Audio, actions: list[Action]) -> None:
        mixer, writer = self._mixer, self._mixdown
        assert mixer is not None
        assert writer is not None
        if track.mix_offset is None:
            anchor = track.timeline.anchor_ms
            assert anchor is not None
            track.mix_offset = mixer.offset_for(anchor)
        for mixed in mixer.add(track.mix_offset + item.start, item.pcm):
            self._seal_audio(writer.write(mixed), actions)

    def _release_speakers(self, packet: AudioPacket, actions: list[Action]) -> None:
        """Let silent speakers' held audio reach the mixdown before it moves past them."""
        for name, other in self.tracks.items():
            if name != packet.track and name.startswith(_USER_TRACK_PREFIX):
                released = other.timeline.release_until(packet.timestamp_ms)
                if released:
                    self._write(name, other, released, actions)

    def _start_mixdown(self, decoder: AudioDecoder) -> None:
        mixer = Mixer(
            sample_rate=decoder.output_rate,
            channels=decoder.output_channels,
            holdback_ms=self.config.holdback_ms * 3,
        )
        fmt = TrackFormat(
            track=MIXDOWN_TRACK,
            sample_rate=decoder.output_rate,
            channels=decoder.output_channels,
            source=f"MIXDOWN of per-speaker {decoder.description}",
            decoder_version=decoder_version(),
        )
        self._mixer = mixer
        self._mixdown = SegmentWriter(
            self._sinks,
            recording_id=self.recording_id,
            originator_reference=self._reference,
            fmt=fmt,
            sample_to_ms=mixer.sample_to_ms,
            now_ms=self._now_ms,
            segment_seconds=self.config.segment_seconds,
            max_data_length=self.config.max_data_length,
            first_index=self.config.first_segment_index,
            preopen_s=self._preopen_s,
        )

    def _begin_window(
        self,
        kind: SpanKind,
        cause: GapCause | None,
        actor: str | None,
        at_ms: int | None = None,
        *,
        window_id: int = 0,
    ) -> None:
        if len(self._open_windows) >= _MAX_OPEN_WINDOWS:
            # Never closed (a producer that lost track): the oldest goes, as in the timeline.
            stale_id = self._open_windows.pop(0)[0]
            self._audio_interruptions.discard(stale_id)
        self._open_windows.append((window_id, kind, cause, actor))
        for track in self.tracks.values():
            track.timeline.begin_window(
                cause, kind=kind, actor=actor, at_ms=at_ms, window_id=window_id
            )
        for dormant in self.dormant.values():
            if not dormant.window_seen:
                dormant.window_seen = True
                dormant.kind, dormant.cause, dormant.actor = kind, cause, actor
                dormant.window_id = window_id

    def _end_window(
        self, kind: SpanKind, span_ms: int, *, window_id: int = 0, cause: GapCause | None = None
    ) -> None:
        for index in range(len(self._open_windows) - 1, -1, -1):
            open_id, open_kind, _, _ = self._open_windows[index]
            if (open_id == window_id) if window_id else (open_kind == kind):
                del self._open_windows[index]
                break
        for track in self.tracks.values():
            track.timeline.end_window(
                span_ms=max(span_ms, 0), kind=kind, window_id=window_id, cause=cause
            )
        if window_id and cause is not None:
            for dormant in self.dormant.values():
                if dormant.window_id == window_id:
                    dormant.cause = cause

    def _label_dropped(self, event: PacketsDropped) -> None:
        if event.first_timestamp_ms is None or not is_plausible_timestamp_ms(
            event.first_timestamp_ms
        ):
            return
        last = event.last_timestamp_ms if event.last_timestamp_ms is not None else 0
        if not is_plausible_timestamp_ms(last):
            # The range came from the dropped packets' own timestamps, bad ones included.
            last = event.first_timestamp_ms
        last = max(last, event.first_timestamp_ms)
        if event.track is None:
            targets = list(self.tracks.values())
        elif event.track in self.tracks:
            targets = [self.tracks[event.track]]
        else:
            # A transcript or chat drop, or audio of a track not yet heard: no audio to name.
            return
        for track in targets:
            packet_ms = track.source.packet_ms
            track.timeline.label_range(event.first_timestamp_ms, last + packet_ms, event.cause)
            _bump(track.counters, "dropped_packets", event.count)

    def _retire_track(self, name: str, actions: list[Action], *, left: bool) -> None:
        """Seal a per-speaker or per-channel track and free it; its next packet reopens it."""
        track = self.tracks.get(name)
        if track is None or not name.startswith((_USER_TRACK_PREFIX, _CHANNEL_TRACK_PREFIX)):
            return
        self._retire(name, track, actions, interrupted=False)
        del self.tracks[name]
        if track.reopened is not None:
            # Reopened and never placed (nothing came out of its timeline): the absence goes on.
            self.dormant[name] = replace(track.reopened, next_index=track.writer.next_index)
            return
        timeline = track.timeline
        end_sample = track.sample_offset + timeline.emitted_samples
        window_id = 0
        if self._open_windows:
            window_id, kind, cause, actor = self._open_windows[-1]
        else:
            kind, cause, actor = (
                SpanKind.GAP,
                GapCause.PARTICIPANT_LEFT if left else timeline.default_cause,
                None,
            )
        self.dormant[name] = _Dormant(
            end_sample=end_sample,
            end_ms=timeline.sample_to_ms(timeline.emitted_samples),
            next_index=track.writer.next_index,
            sample_rate=timeline.sample_rate,
            channels=timeline.channels,
            kind=kind,
            cause=cause,
            actor=actor,
            window_seen=bool(self._open_windows),
            window_id=window_id,
        )
        logger.info(
            "track retired recording_id=%s track=%s reason=%s",
            self.recording_id,
            name,
            "left" if left else "silent",
        )

    def _flush_decoder(self, name: str, track: _Track, actions: list[Action]) -> None:
        """Whatever the decoder still holds goes onto the timeline, right after its audio."""
        try:
            tail = track.decoder.flush()
        except DecodeError:
            tail = b""
        if tail:
            items = track.timeline.append_tail(tail)
            if items:
                self._write(name, track, items, actions)

    def _retire(
        self, name: str, track: _Track, actions: list[Action], *, interrupted: bool
    ) -> None:
        """Flush a track's decoder and timeline and detach its open segment for sealing."""
        self._flush_decoder(name, track, actions)
        self._write(name, track, track.timeline.finish(), actions)
        self._seal_audio([track.writer.close(interrupted=interrupted)], actions)
        self._store_counters(name, track)
        track.counters.clear()

    def _store_counters(self, name: str, track: _Track) -> None:
        timeline = track.timeline
        counters = self.manifest.counters.setdefault(name, {})
        for key, value in [
            *track.counters.items(),
            ("duplicate_samples", timeline.duplicate_samples),
            ("late_samples", timeline.late_samples),
            ("priming_samples", timeline.priming_samples),
            ("outlier_samples", timeline.outlier_samples),
            ("discontinuities", timeline.discontinuities),
            ("drift_samples", timeline.drift_samples),
        ]:
            counters[key] = counters.get(key, 0) + value

    def audio_entries(self, track: str | None = None) -> list[SegmentManifestEntry]:
        return self.manifest.audio_entries(track)


def _audio_sealer(pending: PendingAudioSeal) -> Callable[[], Sealed]:
    def seal() -> Sealed:
        done = pending.seal()
        return Sealed(done.sealed, done.entry)

    return seal


def _records_sealer(pending: PendingRecordsSeal) -> Callable[[], Sealed]:
    def seal() -> Sealed:
        done = pending.seal()
        return Sealed(done.sealed, done.entry)

    return seal


def _cheap(packet: AudioPacket, output: OutputFormat) -> bool:
    """Passthrough L16 costs well under a µs; a worker-thread hop costs tens."""
    fmt = packet.format
    return fmt.codec == AudioCodec.L16 and output.resolve(fmt) == (fmt.sample_rate, fmt.channels)


def _bump(counters: dict[str, int], key: str, amount: int = 1) -> None:
    counters[key] = counters.get(key, 0) + amount
