"""One conformance suite for both catalog engines: every write round-trips through show/search."""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.catalog import (
    AsyncCatalog,
    AuditEvent,
    CatalogWebhookDedup,
    EvidenceKind,
    EvidenceRef,
    HoldScope,
    NewRecordFile,
    NewSegment,
    ParticipantInfo,
    Product,
    RecordingRow,
    RecordingStart,
    RecordingStatus,
    StreamEvent,
    StreamState,
    UploadState,
)
from recorder.catalog.schema import LATEST_VERSION, MIGRATIONS, Engine, Migration
from recorder.errors import CatalogError
from recorder.sink import SealedSegment, SegmentIdentity
from tests.catalog.support import T0, CatalogTarget

SHA_A = "a" * 64
SHA_B = "b" * 64


async def _recording(
    catalog: AsyncCatalog,
    stream_id: str = "stream-1",
    *,
    product: Product = Product.MEETING,
    instance_id: str = "meeting-uuid-1==",
    started_ms: int = T0,
) -> RecordingRow:
    await catalog.upsert_stream(
        StreamEvent(
            stream_id, product, instance_id, StreamState.STARTED, started_ms, ("wss://a.zoom.us",)
        ),
        now_ms=started_ms,
    )
    return await catalog.upsert_recording(
        RecordingStart(stream_id, product, instance_id, started_ms, operator_id="op-1"),
        now_ms=started_ms,
    )


def _segment(recording_id: str, index: int = 0, *, track: str = "mixed", sha: str = SHA_A):
    return NewSegment(
        recording_id=recording_id,
        track=track,
        segment_index=index,
        object_key=f"rec/{recording_id}/{track}/{index:06d}.wav.enc",
        plaintext_sha256=sha,
        plaintext_size=1_000_044,
        stored_size=1_001_000,
        start_ms=T0 + index * 60_000,
        end_ms=T0 + (index + 1) * 60_000,
        start_sample=index * 960_000,
        sample_count=960_000,
        sample_rate=16_000,
        codec="L16",
        key_id="local:kek-1",
        retain_until_ms=T0 + 86_400_000 * 365 * 6,
        participant_id=None if track == "mixed" else track.removeprefix("user-"),
    )


# --- schema ----------------------------------------------------------------------------------


async def test_migrating_again_is_a_no_op(target: CatalogTarget, catalog: AsyncCatalog) -> None:
    with trio.fail_after(20):
        assert await catalog.schema_version() == LATEST_VERSION
        await catalog.append_audit(actor="t", action="probe", target="x", reason="", now_ms=T0)
        for _ in range(2):
            again = await trio.to_thread.run_sync(target.open)
            assert again.migrate(T0 + 5) == LATEST_VERSION
            again.close()

        def versions() -> list[tuple[int, int]]:
            with target.raw() as raw:
                return [
                    tuple(r)
                    for r in raw.execute(
                        "SELECT version, applied_ms FROM schema_version ORDER BY version"
                    ).fetchall()
                ]

        rows = await trio.to_thread.run_sync(versions)
        assert rows == [(m.version, T0) for m in MIGRATIONS]
        assert len(await catalog.audit_trail("x")) == 1


async def test_a_newer_schema_is_refused(target: CatalogTarget, catalog: AsyncCatalog) -> None:
    def stamp_future_version() -> None:
        with target.raw() as raw:
            raw.execute(
                "INSERT INTO schema_version (version, description, applied_ms)"
                f" VALUES ({LATEST_VERSION + 1}, 'from the future', 1)"
            )

    with trio.fail_after(20):
        await trio.to_thread.run_sync(stamp_future_version)
        with pytest.raises(CatalogError, match=r"newer than this recorder knows"):
            await trio.to_thread.run_sync(target.open)


async def test_audit_log_refuses_update_and_delete_in_the_database(
    target: CatalogTarget, catalog: AsyncCatalog
) -> None:
    with trio.fail_after(20):
        event = await catalog.append_audit(
            actor="officer@bank",
            action="export",
            target="rec_1",
            reason="FINRA request 42",
            now_ms=T0,
            details={"segments": 3, "format": "wav"},
        )
        forgeries = [
            "UPDATE audit_log SET actor = 'nobody'",
            "UPDATE audit_log SET reason = '' WHERE audit_id = 1",
            "DELETE FROM audit_log",
        ]
        if target.engine == "postgres":
            forgeries.append("TRUNCATE audit_log")

        def try_forgeries() -> list[tuple[str, str]]:
            refused = []
            with target.raw() as raw:
                for sql in forgeries:
                    try:
                        raw.execute(sql)
                    except target.driver_error as exc:
                        refused.append((sql, str(exc)))
            return refused

        refused = await trio.to_thread.run_sync(try_forgeries)
        assert [sql for sql, _ in refused] == forgeries
        assert all("append-only" in message for _, message in refused)
        assert await catalog.audit_trail("rec_1") == [event]
        assert json.loads(event.details_json) == {"format": "wav", "segments": 3}


async def test_legal_holds_can_only_be_released_once_in_the_database(
    target: CatalogTarget, catalog: AsyncCatalog
) -> None:
    with trio.fail_after(20):
        recording = await _recording(catalog)
        hold = await catalog.place_hold(
            matter="M-1",
            scope=HoldScope.RECORDING,
            scope_value=recording.recording_id,
            placed_by="legal@bank",
            reason="litigation",
            now_ms=T0,
        )
        forgeries = [
            "DELETE FROM legal_holds",
            "UPDATE legal_holds SET matter = 'other'",
            "UPDATE legal_holds SET reason = 'x', released_ms = 5, released_by = 'x'",
        ]

        def try_forgeries() -> list[str]:
            refused = []
            with target.raw() as raw:
                for sql in forgeries:
                    try:
                        raw.execute(sql)
                    except target.driver_error:
                        refused.append(sql)
            return refused

        assert await trio.to_thread.run_sync(try_forgeries) == forgeries
        assert await catalog.is_on_hold(recording.recording_id)
        assert await catalog.holds() == [hold]


# --- streams and recordings ------------------------------------------------------------------


async def test_stream_state_follows_the_newest_webhook_only(catalog: AsyncCatalog) -> None:
    with trio.fail_after(20):
        sid = "s-order"
        started = StreamEvent(
            sid, Product.CONTACT_CENTER, "eng-1", StreamState.STARTED, 1_000, ("wss://a", "wss://b")
        )
        row = await catalog.upsert_stream(started, now_ms=T0)
        assert (row.state, row.server_urls, row.first_seen_ms) == (
            StreamState.STARTED,
            ("wss://a", "wss://b"),
            T0,
        )
        interrupted = dataclasses.replace(
            started, state=StreamState.INTERRUPTED, event_ts_ms=2_000, server_urls=()
        )
        row = await catalog.upsert_stream(interrupted, now_ms=T0 + 1)
        assert row.state is StreamState.INTERRUPTED
        assert row.server_urls == ("wss://a", "wss://b"), "interrupted carries no URLs: keep them"
        # Zoom re-delivers the original start 5 minutes later: it must not revive old state.
        row = await catalog.upsert_stream(started, now_ms=T0 + 300_000)
        assert (row.state, row.last_event_ts_ms) == (StreamState.INTERRUPTED, 2_000)
        failover = dataclasses.replace(started, event_ts_ms=3_000, server_urls=("wss://c",))
        row = await catalog.upsert_stream(failover, now_ms=T0 + 2)
        assert (row.state, row.server_urls) == (StreamState.STARTED, ("wss://c",))
        stopped = dataclasses.replace(started, state=StreamState.STOPPED, event_ts_ms=4_000)
        await catalog.upsert_stream(stopped, now_ms=T0 + 3)
        stored = await catalog.get_stream(sid)
        assert stored is not None
        assert (stored.state, stored.product, stored.instance_id, stored.first_seen_ms) == (
            StreamState.STOPPED,
            Product.CONTACT_CENTER,
            "eng-1",
            T0,
        )
        assert await catalog.get_stream("unknown") is None


async def test_recording_round_trips_through_show_and_search(catalog: AsyncCatalog) -> None:
    with trio.fail_after(20):
        recording = await _recording(
            catalog, "s-cc", product=Product.CONTACT_CENTER, instance_id="eng-9"
        )
        again = await catalog.upsert_recording(
            RecordingStart(
                "s-cc",
                Product.CONTACT_CENTER,
                "eng-9",
                T0 + 50,
                account_id="acct-1",
                meeting_number="123",
            ),
            now_ms=T0 + 50,
        )
        assert again.recording_id == recording.recording_id, "one recording per stream"
        assert (again.started_ms, again.operator_id, again.account_id) == (T0, "op-1", "acct-1")
        assert await catalog.recording_for_stream("s-cc") == again

        await catalog.add_participants(
            recording.recording_id,
            [
                ParticipantInfo("caller-1", "+1 555 0100 caller", "caller", T0 + 10),
                ParticipantInfo("agent-7", None, "callee", T0 + 20),
            ],
        )
        await catalog.add_participants(
            recording.recording_id, [ParticipantInfo("agent-7", "Alice Agent", None, T0 + 5)]
        )
        await catalog.set_contact_center(
            recording.recording_id, queue_id="q-1", queue_name="Trading desk", agent_id="agent-7"
        )
        await catalog.set_contact_center(recording.recording_id, agent_name="Alice Agent")
        ended = await catalog.end_recording(
            recording.recording_id,
            ended_ms=T0 + 120_000,
            reason="STOP_BC_MEETING_ENDED",
            status=RecordingStatus.COMPLETE,
        )
        late = await catalog.end_recording(
            recording.recording_id,
            ended_ms=T0 + 999_999,
            reason="late duplicate",
            status=RecordingStatus.INCOMPLETE,
        )
        assert late == ended, "the first end wins"

        detail = await catalog.show(recording.recording_id)
        assert detail is not None
        shown = detail.recording
        assert (shown.cc_queue_id, shown.cc_queue_name, shown.cc_agent_id, shown.cc_agent_name) == (
            "q-1",
            "Trading desk",
            "agent-7",
            "Alice Agent",
        )
        assert (shown.ended_ms, shown.end_reason, shown.status) == (
            T0 + 120_000,
            "STOP_BC_MEETING_ENDED",
            RecordingStatus.COMPLETE,
        )
        assert [(p.user_id, p.user_name, p.role, p.first_seen_ms) for p in detail.participants] == [
            ("agent-7", "Alice Agent", "callee", T0 + 5),
            ("caller-1", "+1 555 0100 caller", "caller", T0 + 10),
        ]
        assert await catalog.search(participant="Alice Agent") == [shown]
        assert await catalog.show("rec_missing") is None
        with pytest.raises(CatalogError, match="set_contact_center"):
            await catalog.set_contact_center("rec_missing", queue_id="q")
        with pytest.raises(CatalogError, match="end_recording"):
            await catalog.end_recording(
                "rec_missing", ended_ms=1, reason="x", status=RecordingStatus.COMPLETE
            )


def ids(rows: list[RecordingRow]) -> list[str]:
    return [row.recording_id for row in rows]


async def test_search_filters(catalog: AsyncCatalog) -> None:
    with trio.fail_after(20):
        meeting = await _recording(catalog, "s-m", instance_id="m-1", started_ms=T0)
        webinar = await _recording(
            catalog, "s-w", product=Product.WEBINAR, instance_id="w-1", started_ms=T0 + 10_000
        )
        second = await _recording(catalog, "s-m2", instance_id="m-1", started_ms=T0 + 20_000)
        await catalog.end_recording(
            meeting.recording_id,
            ended_ms=T0 + 5_000,
            reason="done",
            status=RecordingStatus.COMPLETE,
        )
        await catalog.add_participants(webinar.recording_id, [ParticipantInfo("u-9", "Bob")])

        assert ids(await catalog.search()) == [
            second.recording_id,
            webinar.recording_id,
            meeting.recording_id,
        ]
        assert ids(await catalog.search(product=Product.WEBINAR)) == [webinar.recording_id]
        assert ids(await catalog.search(instance_id="m-1")) == [
            second.recording_id,
            meeting.recording_id,
        ]
        assert ids(await catalog.search(stream_id="s-m2")) == [second.recording_id]
        assert ids(await catalog.search(participant="u-9")) == [webinar.recording_id]
        assert ids(await catalog.search(participant="Bob")) == [webinar.recording_id]
        assert ids(await catalog.search(participant="bOB")) == [webinar.recording_id]
        assert ids(await catalog.search(participant="U-9")) == [], "ids are exact"
        assert ids(await catalog.search(participant="op-1", limit=1)) == [second.recording_id]
        # The ended meeting is outside a window after its end; unfinished ones extend to now.
        assert ids(await catalog.search(since_ms=T0 + 6_000)) == [
            second.recording_id,
            webinar.recording_id,
        ]
        assert ids(await catalog.search(until_ms=T0 + 10_000)) == [meeting.recording_id]
        assert ids(
            await catalog.search(instance_id="m-1", since_ms=T0 + 1_000, until_ms=T0 + 30_000)
        ) == [second.recording_id, meeting.recording_id]
        assert await catalog.search(participant="nobody") == []
        with pytest.raises(CatalogError, match="limit"):
            await catalog.search(limit=0)


# --- evidence --------------------------------------------------------------------------------


async def test_segments_are_idempotent_and_move_forward_only(catalog: AsyncCatalog) -> None:
    with trio.fail_after(20):
        rid = (await _recording(catalog)).recording_id
        first = await catalog.add_segment(_segment(rid, 0), now_ms=T0 + 1)
        assert await catalog.add_segment(_segment(rid, 0), now_ms=T0 + 2) == first
        with pytest.raises(CatalogError, match="different digest"):
            await catalog.add_segment(_segment(rid, 0, sha=SHA_B), now_ms=T0 + 3)
        sealed = SealedSegment(
            identity=SegmentIdentity(rid, "user-42", 0, T0),
            path=None,
            plaintext_size=44,
            sha256=SHA_B,
            stored_size=120,
            key_id="kms:arn:k",
            recovered=True,
        )
        from_sealed = NewSegment.from_sealed(
            sealed,
            object_key="k/user-42/0",
            start_ms=T0,
            end_ms=T0 + 20,
            start_sample=0,
            sample_count=320,
            sample_rate=16_000,
            codec="OPUS",
            participant_id="42",
        )
        await catalog.add_segment(from_sealed, now_ms=T0 + 4)

        ref = EvidenceRef(EvidenceKind.SEGMENT, rid, "mixed", 0)
        with pytest.raises(CatalogError, match="never uploaded"):
            await catalog.mark_verified(ref, now_ms=T0 + 5)
        await catalog.mark_uploaded(
            ref, object_key="final/key", version_id="v-1", stored_sha256=SHA_B, now_ms=T0 + 6
        )
        await catalog.mark_verified(ref, now_ms=T0 + 7)
        await catalog.mark_verified(ref, now_ms=T0 + 8)
        # A late retry of the upload must not drag a verified segment back to "uploaded".
        await catalog.mark_uploaded(
            ref, object_key="other", version_id="v-2", stored_sha256=SHA_A, now_ms=T0 + 9
        )
        with pytest.raises(CatalogError, match="mark_uploaded"):
            await catalog.mark_uploaded(
                EvidenceRef(EvidenceKind.SEGMENT, rid, "mixed", 99),
                object_key="k",
                version_id=None,
                stored_sha256=SHA_A,
                now_ms=T0,
            )
        with pytest.raises(CatalogError, match="mark_verified"):
            await catalog.mark_verified(EvidenceRef(EvidenceKind.SEGMENT, rid, "x", 0), T0)

        detail = await catalog.show(rid)
        assert detail is not None
        mixed, user = detail.segments
        assert (mixed.upload_state, mixed.object_key, mixed.version_id, mixed.stored_sha256) == (
            UploadState.VERIFIED,
            "final/key",
            "v-1",
            SHA_B,
        )
        assert (mixed.uploaded_ms, mixed.verified_ms) == (T0 + 6, T0 + 7)
        assert (mixed.start_sample, mixed.sample_count, mixed.retain_until_ms, mixed.recovered) == (
            0,
            960_000,
            _segment(rid).retain_until_ms,
            False,
        )
        assert (user.track, user.participant_id, user.key_id, user.recovered, user.codec) == (
            "user-42",
            "42",
            "kms:arn:k",
            True,
            "OPUS",
        )
        assert user.upload_state is UploadState.PENDING


async def test_record_files_round_trip(catalog: AsyncCatalog) -> None:
    with trio.fail_after(20):
        rid = (await _recording(catalog)).recording_id
        record = NewRecordFile(
            recording_id=rid,
            kind="transcript",
            record_index=0,
            object_key="k/transcript/0",
            plaintext_sha256=SHA_A,
            plaintext_size=900,
            stored_size=1_000,
            start_ms=T0,
            end_ms=T0 + 60_000,
            key_id="local:kek-1",
        )
        row = await catalog.add_record_file(record, now_ms=T0)
        assert await catalog.add_record_file(record, now_ms=T0 + 1) == row
        with pytest.raises(CatalogError, match="different digest"):
            await catalog.add_record_file(
                dataclasses.replace(record, plaintext_sha256=SHA_B), now_ms=T0
            )
        ref = EvidenceRef(EvidenceKind.RECORD, rid, "transcript", 0)
        await catalog.mark_uploaded(
            ref, object_key="k/transcript/0", version_id=None, stored_sha256=SHA_B, now_ms=T0 + 2
        )
        await catalog.mark_verified(ref, now_ms=T0 + 3)
        detail = await catalog.show(rid)
        assert detail is not None
        (stored,) = detail.records
        assert (stored.kind, stored.upload_state, stored.stored_sha256, stored.verified_ms) == (
            "transcript",
            UploadState.VERIFIED,
            SHA_B,
            T0 + 3,
        )


async def test_gaps_and_pauses_round_trip(catalog: AsyncCatalog) -> None:
    with trio.fail_after(20):
        rid = (await _recording(catalog)).recording_id
        for _ in range(2):  # a retried write leaves one row
            await catalog.add_gap(
                rid,
                "mixed",
                start_ms=T0 + 1_000,
                end_ms=T0 + 4_000,
                cause="media_interrupted",
                start_sample=16_000,
                end_sample=64_000,
                detail="media socket closed",
            )
        await catalog.add_gap(rid, "user-1", start_ms=T0, end_ms=T0 + 20, cause="lost_packets")
        with pytest.raises(CatalogError, match="add_gap"):
            await catalog.add_gap(rid, "mixed", start_ms=T0 + 5, end_ms=T0, cause="x")
        await catalog.add_pause(rid, start_ms=T0 + 10_000, end_ms=None, actor="agent-7")
        await catalog.add_pause(rid, start_ms=T0 + 10_000, end_ms=T0 + 15_000, actor=None)
        await catalog.add_pause(rid, start_ms=T0 + 30_000, end_ms=None, actor=None)

        detail = await catalog.show(rid)
        assert detail is not None
        assert [(g.track, g.start_ms, g.end_ms, g.start_sample, g.cause) for g in detail.gaps] == [
            ("user-1", T0, T0 + 20, None, "lost_packets"),
            ("mixed", T0 + 1_000, T0 + 4_000, 16_000, "media_interrupted"),
        ]
        assert detail.gaps[1].detail == "media socket closed"
        assert [(p.start_ms, p.end_ms, p.actor) for p in detail.pauses] == [
            (T0 + 10_000, T0 + 15_000, "agent-7"),
            (T0 + 30_000, None, None),
        ]


async def test_writes_for_an_unknown_recording_are_catalog_errors(catalog: AsyncCatalog) -> None:
    with trio.fail_after(20):
        with pytest.raises(CatalogError, match="add_segment"):
            await catalog.add_segment(_segment("rec_nope"), now_ms=T0)
        with pytest.raises(CatalogError, match="add_gap"):
            await catalog.add_gap("rec_nope", "mixed", start_ms=0, end_ms=1, cause="x")
        with pytest.raises(CatalogError, match="add_participants"):
            await catalog.add_participants("rec_nope", [ParticipantInfo("u")])


# --- holds and audit -------------------------------------------------------------------------


async def test_holds_win_and_every_change_is_audited(catalog: AsyncCatalog) -> None:
    with trio.fail_after(20):
        first = await _recording(catalog, "s-1", instance_id="eng-1")
        sibling = await _recording(catalog, "s-2", instance_id="eng-1")
        other = await _recording(catalog, "s-3", instance_id="eng-2")
        assert not await catalog.is_on_hold(first.recording_id)

        by_recording = await catalog.place_hold(
            matter="SEC-2026-1",
            scope=HoldScope.RECORDING,
            scope_value=first.recording_id,
            placed_by="legal@bank",
            reason="subpoena",
            now_ms=T0 + 1,
        )
        # An instance hold may come before the engagement is even recorded.
        by_instance = await catalog.place_hold(
            matter="SEC-2026-2",
            scope=HoldScope.INSTANCE,
            scope_value="eng-1",
            placed_by="legal@bank",
            reason="whole engagement",
            now_ms=T0 + 2,
        )
        assert await catalog.is_on_hold(first.recording_id)
        assert await catalog.is_on_hold(sibling.recording_id)
        assert not await catalog.is_on_hold(other.recording_id)

        released = await catalog.release_hold(
            by_instance.hold_id, released_by="gc@bank", reason="matter closed", now_ms=T0 + 3
        )
        assert (released.released_by, released.released_reason, released.released_ms) == (
            "gc@bank",
            "matter closed",
            T0 + 3,
        )
        assert not released.active
        assert not await catalog.is_on_hold(sibling.recording_id)
        assert await catalog.is_on_hold(first.recording_id), "the recording hold still stands"
        with pytest.raises(CatalogError, match="already released"):
            await catalog.release_hold(
                by_instance.hold_id, released_by="gc@bank", reason="again", now_ms=T0 + 4
            )
        with pytest.raises(CatalogError, match="unknown"):
            await catalog.release_hold(9_999, released_by="gc", reason="r", now_ms=T0)
        with pytest.raises(CatalogError, match="reason required"):
            await catalog.release_hold(
                by_recording.hold_id, released_by="gc", reason=" ", now_ms=T0
            )
        with pytest.raises(CatalogError, match="placed_by"):
            await catalog.place_hold(
                matter="m",
                scope=HoldScope.INSTANCE,
                scope_value="eng-2",
                placed_by="",
                reason="r",
                now_ms=T0,
            )
        with pytest.raises(CatalogError, match="no recording"):
            await catalog.place_hold(
                matter="m",
                scope=HoldScope.RECORDING,
                scope_value="rec_nope",
                placed_by="a",
                reason="r",
                now_ms=T0,
            )
        with pytest.raises(CatalogError, match="is_on_hold"):
            await catalog.is_on_hold("rec_nope")

        assert await catalog.holds() == [by_recording]
        assert await catalog.holds(active_only=False) == [by_recording, released]
        detail = await catalog.show(sibling.recording_id)
        assert detail is not None
        assert (detail.holds, detail.on_hold) == ((released,), False)

        trail = await catalog.audit_trail("eng-1")
        assert [(e.actor, e.action, e.reason, e.at_ms) for e in trail] == [
            ("legal@bank", "hold.place", "whole engagement", T0 + 2),
            ("gc@bank", "hold.release", "matter closed", T0 + 3),
        ]
        assert json.loads(trail[1].details_json) == {
            "hold_id": by_instance.hold_id,
            "matter": "SEC-2026-2",
            "scope": "instance",
        }
        (placed,) = await catalog.audit_trail(first.recording_id)
        assert (placed.action, placed.actor) == ("hold.place", "legal@bank")


async def test_audit_events_append_and_read_back_in_order(catalog: AsyncCatalog) -> None:
    with trio.fail_after(20):
        one = await catalog.append_audit(
            actor="officer", action="decrypt", target="rec_1", reason="review", now_ms=T0
        )
        two = await catalog.append_audit(
            actor="officer",
            action="export",
            target="rec_1",
            reason="regulator",
            now_ms=T0 + 1,
            details={"z": [1, "2"], "a": {"nested": True}},
        )
        await catalog.append_audit(actor="o", action="x", target="rec_2", reason="", now_ms=T0)
        assert await catalog.audit_trail("rec_1") == [one, two]
        assert two.audit_id > one.audit_id
        assert two.details_json == '{"a":{"nested":true},"z":[1,"2"]}'
        assert one.details_json == "{}"
        with pytest.raises(CatalogError, match="actor required"):
            await catalog.append_audit(actor="", action="x", target="t", reason="", now_ms=T0)


# --- webhook dedup ---------------------------------------------------------------------------


async def test_webhook_dedup_admits_each_key_once_until_it_expires(
    catalog: AsyncCatalog,
) -> None:
    with trio.fail_after(20):
        key = "meeting.rtms_started:stream-1:1626230691572"
        ttl = 7_200_000
        assert await catalog.first_seen(key, T0, ttl)
        assert not await catalog.first_seen(key, T0 + 300_000, ttl)
        assert await catalog.first_seen("other", T0 + 1, ttl)
        assert not await catalog.first_seen(key, T0 + ttl - 1, ttl)
        assert await catalog.first_seen(key, T0 + ttl, ttl), "expired keys are purged"

        dedup = CatalogWebhookDedup(catalog, ttl_ms=10_000)
        assert await dedup.first_seen("k2", T0 / 1000)
        assert not await dedup.first_seen("k2", T0 / 1000 + 9.9)
        assert await dedup.first_seen("k2", T0 / 1000 + 10.0)
        # A delivery that could not be handed on is forgotten, so Zoom's retry counts again.
        await dedup.forget("k2")
        assert await dedup.first_seen("k2", T0 / 1000 + 10.5)
        await dedup.forget("never-seen")


async def test_webhook_dedup_is_atomic_across_connections(target: CatalogTarget) -> None:
    rounds = 30
    barrier = threading.Barrier(2, timeout=10)

    def racer(results: list[bool]) -> None:
        catalog = target.open()
        try:
            for round_no in range(rounds):
                barrier.wait()
                results.append(catalog.first_seen(f"evt:{round_no}", T0, 60_000))
        finally:
            catalog.close()

    left: list[bool] = []
    right: list[bool] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, racer, left)
            nursery.start_soon(trio.to_thread.run_sync, racer, right)
    assert [a + b for a, b in zip(left, right, strict=True)] == [1] * rounds


async def test_a_new_migration_applies_once_and_a_failing_one_changes_nothing(
    target: CatalogTarget, catalog: AsyncCatalog
) -> None:
    add_column = Migration(
        version=LATEST_VERSION + 1,
        description="recordings.note",
        statements={engine: ("ALTER TABLE recordings ADD COLUMN note TEXT",) for engine in Engine},
    )
    broken = Migration(
        version=LATEST_VERSION + 2,
        description="half a migration",
        statements={
            engine: ("CREATE TABLE half_done (x INTEGER)", "THIS IS NOT SQL") for engine in Engine
        },
    )

    opened = await trio.to_thread.run_sync(target.open)

    def migrate(migrations: tuple[Migration, ...]) -> int:
        return opened.migrate(T0 + 1, migrations)

    def tables_named(name: str) -> int:
        with target.raw() as raw:
            if target.engine == "sqlite":
                sql = "SELECT count(*) FROM sqlite_master WHERE name = ?"
            else:
                sql = "SELECT count(*) FROM pg_tables WHERE tablename = %s"
            return int(raw.execute(sql, (name,)).fetchone()[0])

    with trio.fail_after(20):
        upgraded = (*MIGRATIONS, add_column)
        assert await trio.to_thread.run_sync(migrate, upgraded) == LATEST_VERSION + 1
        assert await trio.to_thread.run_sync(migrate, upgraded) == LATEST_VERSION + 1
        with pytest.raises(CatalogError, match="migrate"):
            await trio.to_thread.run_sync(migrate, (*upgraded, broken))
        opened.close()
        assert await catalog.schema_version() == LATEST_VERSION + 1
        assert await trio.to_thread.run_sync(tables_named, "half_done") == 0
        # A recorder that only knows the older schema now refuses to open this catalog.
        with pytest.raises(CatalogError, match="newer than this recorder knows"):
            await trio.to_thread.run_sync(target.open)


async def test_instance_and_key_holds_cover_what_spans_recordings(catalog: AsyncCatalog) -> None:
    with trio.fail_after(20):
        held = await _recording(catalog, "s-k1", instance_id="eng-k")
        free = await _recording(catalog, "s-k2", instance_id="eng-free")
        await catalog.add_segment(
            dataclasses.replace(_segment(held.recording_id), key_id="key-held"), T0
        )
        await catalog.add_record_file(
            NewRecordFile(
                free.recording_id, "chat", 0, "k/c", SHA_A, 1, 2, T0, T0 + 1, "key-records"
            ),
            T0,
        )
        await catalog.add_segment(
            dataclasses.replace(_segment(free.recording_id), key_id="key-free"), T0
        )
        for probe in ("key-held", "key-records", "key-free", "key-unused"):
            assert not await catalog.is_key_on_hold(probe)
        assert not await catalog.is_instance_on_hold("eng-k")

        by_recording = await catalog.place_hold(
            matter="M",
            scope=HoldScope.RECORDING,
            scope_value=held.recording_id,
            placed_by="legal",
            reason="r",
            now_ms=T0,
        )
        assert await catalog.is_key_on_hold("key-held")
        assert await catalog.is_instance_on_hold("eng-k")
        assert not await catalog.is_key_on_hold("key-free")
        assert not await catalog.is_instance_on_hold("eng-free")

        await catalog.place_hold(
            matter="M2",
            scope=HoldScope.INSTANCE,
            scope_value="eng-free",
            placed_by="legal",
            reason="r",
            now_ms=T0,
        )
        assert await catalog.is_key_on_hold("key-records"), "record files count too"
        assert await catalog.is_key_on_hold("key-free")
        assert await catalog.is_instance_on_hold("eng-free")

        await catalog.release_hold(by_recording.hold_id, released_by="gc", reason="r", now_ms=T0)
        assert not await catalog.is_key_on_hold("key-held")
        assert not await catalog.is_instance_on_hold("eng-k")
        assert not await catalog.is_key_on_hold("key-unused")


# --- the audit chain -------------------------------------------------------------------------


async def _append_events(catalog: AsyncCatalog, count: int) -> list[AuditEvent]:
    return [
        await catalog.append_audit(
            actor=f"officer-{n % 3}",
            action="export",
            target=f"rec_{n % 2}",
            reason=f"request {n}",
            now_ms=T0 + n,
            details={"n": n, "note": "ünïcode"},
        )
        for n in range(count)
    ]


def _behind_the_triggers_back(target: CatalogTarget, *statements: str) -> None:
    """What a DBA with table-owner rights could do: switch the guard off and edit."""
    with target.raw() as raw:
        if target.engine == "sqlite":
            raw.execute("DROP TRIGGER audit_log_no_update")
            raw.execute("DROP TRIGGER audit_log_no_delete")
        else:
            raw.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        for sql in statements:
            raw.execute(sql)


async def test_the_audit_chain_verifies_when_untouched(catalog: AsyncCatalog) -> None:
    with trio.fail_after(20):
        assert (await catalog.verify_audit_chain()).events_checked == 0
        events = await _append_events(catalog, 5)
        assert len({e.row_hash for e in events}) == 5
        check = await catalog.verify_audit_chain()
        assert (check.events_checked, check.first_broken_id, check.intact) == (5, None, True)


@pytest.mark.parametrize(
    "tampering",
    [
        "UPDATE audit_log SET reason = 'nothing to see' WHERE audit_id = {victim}",
        "UPDATE audit_log SET at_ms = at_ms + 1 WHERE audit_id = {victim}",
        "DELETE FROM audit_log WHERE audit_id = {victim}",
    ],
)
async def test_the_audit_chain_exposes_edits_made_behind_the_triggers(
    target: CatalogTarget, catalog: AsyncCatalog, tampering: str
) -> None:
    with trio.fail_after(20):
        events = await _append_events(catalog, 6)
        victim = events[2].audit_id
        sql = tampering.format(victim=victim)
        await trio.to_thread.run_sync(_behind_the_triggers_back, target, sql)
        check = await catalog.verify_audit_chain()
        # An edit breaks the edited event; a deletion breaks the link of the one after it.
        expected = events[3].audit_id if sql.startswith("DELETE") else victim
        assert (check.first_broken_id, check.events_checked) == (expected, 2)


async def test_the_audit_chain_exposes_a_forged_event(
    target: CatalogTarget, catalog: AsyncCatalog
) -> None:
    def forge() -> None:
        with target.raw() as raw:
            raw.execute(
                "INSERT INTO audit_log (at_ms, actor, action, target, reason, details)"
                " VALUES (1, 'intruder', 'hold.release', 'rec_0', 'forged', '{}')"
            )

    with trio.fail_after(20):
        await _append_events(catalog, 3)
        await trio.to_thread.run_sync(forge)
        await _append_events(catalog, 1)
        check = await catalog.verify_audit_chain()
        assert check.events_checked == 3
        assert not check.intact


async def test_concurrent_appends_from_two_connections_keep_one_chain(
    target: CatalogTarget, catalog: AsyncCatalog
) -> None:
    per_side = 25
    barrier = threading.Barrier(2, timeout=20)

    def appender(name: str) -> None:
        other = target.open()
        try:
            barrier.wait()
            for n in range(per_side):
                other.append_audit(actor=name, action="a", target="t", reason=str(n), now_ms=T0)
        finally:
            other.close()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, appender, "left")
            nursery.start_soon(trio.to_thread.run_sync, appender, "right")
        check = await catalog.verify_audit_chain()
    assert (check.events_checked, check.intact) == (2 * per_side, True)


_stream_events = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=10_000),
        st.sampled_from(list(StreamState)),
        st.booleans(),
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda event: event[0],
).flatmap(st.permutations)


async def test_stream_rows_do_not_depend_on_webhook_delivery_order(target: CatalogTarget) -> None:
    counter = itertools.count()

    def run_property() -> None:
        catalog = target.open()

        @settings(max_examples=25, deadline=None)
        @given(deliveries=_stream_events)
        def check(deliveries: list[tuple[int, StreamState, bool]]) -> None:
            sid = f"order-{next(counter)}"
            for ts, state, has_urls in deliveries:
                urls = (f"wss://host-{ts}.zoom.us",) if has_urls else ()
                catalog.upsert_stream(StreamEvent(sid, Product.MEETING, "m", state, ts, urls), T0)
            row = catalog.get_stream(sid)
            newest = max(deliveries)
            with_urls = [d for d in deliveries if d[2]]
            assert row is not None
            assert (row.state, row.last_event_ts_ms) == (newest[1], newest[0])
            expected_urls = (f"wss://host-{max(with_urls)[0]}.zoom.us",) if with_urls else ()
            assert row.server_urls == expected_urls

        try:
            check()
        finally:
            catalog.close()

    with trio.fail_after(90):
        await trio.to_thread.run_sync(run_property)
