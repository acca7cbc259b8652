"""Handshake validation: every rejection of Appendix A's order, in both status tables, pure and
over real sockets; the §12.1 signature vectors accepted and the negative vectors refused."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.rtms.messages import AudioParams, MediaParams
from recorder.simulator import (
    DOC_2026,
    LEGACY_2025,
    ZOOM_MOCK,
    DuplicatePolicy,
    Product,
    Profile,
    Scenario,
    SimulatorConfig,
    Status,
    open_simulator,
)
from recorder.simulator.handshake import Expected, check_common, check_media, confirm_audio

from .rawclient import DROP, Received, media, read_all, recv, signaling

STREAM = "609340fb2a7946909659956c8aa9250c"
MEETING = "4444AAAiAAAAAiAiAiiAii=="
GOOD_SIG = "ffc60552adabeb2482fdaa7621af08b1af78ba80cd9514044333431d467a59f9"
EXPECTED = Expected("meeting_uuid", MEETING, STREAM, GOOD_SIG)


def request(msg_type: int = 1, **overrides: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "msg_type": msg_type,
        "protocol_version": 1,
        "sequence": 1,
        "meeting_uuid": MEETING,
        "rtms_stream_id": STREAM,
        "signature": GOOD_SIG,
    }
    msg.update(overrides)
    return {k: v for k, v in msg.items() if v is not DROP}


COMMON_CASES = [
    (None, Status.INVALID_PAYLOAD),
    (request(msg_type=3), Status.INVALID_MESSAGE_TYPE),
    (request(msg_type="1"), Status.INVALID_MESSAGE_TYPE),
    (request(protocol_version=2), Status.INVALID_PROTOCOL_VERSION),
    (request(protocol_version=DROP), Status.INVALID_PROTOCOL_VERSION),
    (request(sequence="1"), Status.INVALID_PAYLOAD),
    (request(meeting_uuid=DROP), Status.MISSING_INSTANCE_ID),
    (request(meeting_uuid=DROP, webinar_uuid=MEETING), Status.MISSING_INSTANCE_ID),
    (request(rtms_stream_id=DROP), Status.MISSING_STREAM_ID),
    (request(rtms_stream_id="other"), Status.UNKNOWN_STREAM),
    (request(meeting_uuid="other=="), Status.UNKNOWN_STREAM),
    (request(signature=DROP), Status.MISSING_SIGNATURE),
    (request(signature=GOOD_SIG.upper()), Status.INVALID_SIGNATURE),
    (request(signature="/8YFUq2r6ySC/ap2Ia8Isa94uoDNlRQEQzNDHUZ6Wfk="), Status.INVALID_SIGNATURE),
    (
        request(signature="1dc696437146a21017b8669417434377c9d963e84297a26aeda76d8a89db2d1a"),
        Status.INVALID_SIGNATURE,
    ),
    (request(sequence=1_795_276_197_123_456), Status.OK),
    (request(sequence=DROP), Status.OK),
    (request(), Status.OK),
]


@pytest.mark.parametrize(("obj", "status"), COMMON_CASES)
def test_signaling_checks_run_in_appendix_a_order(
    obj: dict[str, Any] | None, status: Status
) -> None:
    assert check_common(obj, 1, EXPECTED) is status  # type: ignore[arg-type]


def _media(obj: dict[str, Any], **kw: Any) -> Status:
    args: dict[str, Any] = {
        "url_kind": "audio",
        "offered": ("audio", "transcript"),
        "open_kinds": (),
        "unified_open": False,
    }
    args.update(kw)
    return check_media(obj, EXPECTED, **args).status


def test_media_handshake_statuses() -> None:
    base = request(msg_type=3, media_type=1)
    assert _media(base) is Status.OK
    assert _media({**base, "media_type": "1"}) is Status.INVALID_MEDIA_TYPE
    assert _media(request(msg_type=3)) is Status.MISSING_MEDIA_TYPE
    assert _media({**base, "media_type": 63}) is Status.MEDIA_TYPE_INVALID_VALUE
    assert _media({**base, "media_type": 64}) is Status.MEDIA_TYPE_INVALID_VALUE
    assert _media({**base, "media_type": 16}, url_kind="chat") is Status.CHAT_NOT_SUPPORTED
    assert _media({**base, "media_type": 2}, url_kind="video") is Status.VIDEO_NOT_SUPPORTED
    assert _media({**base, "media_type": 8}) is Status.INVALID_MEDIA_TYPE  # transcript on /audio
    assert _media({**base, "media_type": 32}, url_kind="all", open_kinds=("audio",)) is (
        Status.ALL_CONNECTION_EXISTS
    )
    assert _media(base, unified_open=True) is Status.ALL_CONNECTION_EXISTS
    assert _media(base, open_kinds=("audio",)) is Status.DUPLICATE_MEDIA_CONNECTION
    assert _media({**base, "media_params": []}) is Status.INVALID_MEDIA_PARAMS
    bad_transcript = {**base, "media_type": 8, "media_params": {"transcript": {"content_type": 2}}}
    assert _media(bad_transcript, url_kind="transcript") is Status.INVALID_TRANSCRIPT_PARAMS
    unified = check_media(
        {**base, "media_type": 32},
        EXPECTED,
        url_kind="all",
        offered=("audio", "transcript"),
        open_kinds=(),
        unified_open=False,
    )
    assert unified.status is Status.OK
    assert unified.kinds == {"audio", "transcript"}
    assert unified.params is not None
    assert unified.params.audio == AudioParams()


AUDIO_MATRIX = [
    ({}, Status.OK),
    ({"content_type": 2, "codec": 1, "sample_rate": 0, "channel": 2, "send_rate": 1000}, Status.OK),
    ({"codec": 1, "sample_rate": 3, "send_rate": 2000}, Status.OK),  # clamped to 1000
    ({"codec": 4, "sample_rate": 3, "channel": 2}, Status.OK),
    ({"codec": 4, "sample_rate": 3, "content_type": 1}, Status.OK),
    ({"codec": 2, "sample_rate": 0}, Status.OK),
    ({"codec": 3, "sample_rate": 1}, Status.OK),
    ({"content_type": 3}, Status.INVALID_AUDIO_CONTENT_TYPE),
    ({"content_type": 1, "codec": 1}, Status.INVALID_AUDIO_CONTENT_TYPE),
    ({"codec": 5}, Status.INVALID_AUDIO_CODEC),
    ({"sample_rate": 4}, Status.INVALID_AUDIO_SAMPLE_RATE),
    ({"codec": 4, "sample_rate": 1}, Status.INVALID_AUDIO_SAMPLE_RATE),
    ({"codec": 2, "sample_rate": 1}, Status.INVALID_AUDIO_SAMPLE_RATE),
    ({"channel": 3}, Status.INVALID_AUDIO_CHANNEL),
    ({"codec": 2, "sample_rate": 0, "channel": 2}, Status.INVALID_AUDIO_CHANNEL),
    ({"data_opt": 3}, Status.INVALID_AUDIO_DATA_OPT),
    ({"send_rate": 30}, Status.INVALID_AUDIO_SEND_RATE),
    ({"send_rate": 0}, Status.INVALID_AUDIO_SEND_RATE),
    ({"codec": 4, "sample_rate": 3, "send_rate": 40}, Status.INVALID_AUDIO_SEND_RATE),
    ("not an object", Status.INVALID_AUDIO_PARAMS),
]


@pytest.mark.parametrize(("params", "status"), AUDIO_MATRIX)
def test_audio_param_matrix(params: object, status: Status) -> None:
    got, confirmed = confirm_audio(params)
    assert got is status
    if status is Status.OK:
        assert confirmed is not None
        assert confirmed.send_rate <= 1000


def test_every_status_has_a_code_in_both_tables() -> None:
    for profile in (DOC_2026, LEGACY_2025):
        for status in Status:
            code, reason = profile.code(status)
            assert (code == 0) is (status is Status.OK)
            assert (reason == "") is (status is Status.OK)
    assert DOC_2026.code(Status.INVALID_SIGNATURE)[0] == 3
    assert DOC_2026.code(Status.DUPLICATE_SIGNAL_REQUEST)[0] == 8
    assert LEGACY_2025.code(Status.INVALID_SIGNATURE)[0] == 15
    assert LEGACY_2025.code(Status.DUPLICATE_SIGNAL_REQUEST)[0] == 17


# --- over the wire -----------------------------------------------------------------------------

WIRE_REJECTIONS = [
    ({"protocol_version": 2}, Status.INVALID_PROTOCOL_VERSION),
    ({"msg_type": 5}, Status.INVALID_MESSAGE_TYPE),
    ({"meeting_uuid": DROP}, Status.MISSING_INSTANCE_ID),
    ({"rtms_stream_id": "nope"}, Status.UNKNOWN_STREAM),
    ({"signature": "0" * 64}, Status.INVALID_SIGNATURE),
    ({"signature": DROP}, Status.MISSING_SIGNATURE),
]


@pytest.mark.parametrize("profile", [DOC_2026, LEGACY_2025], ids=lambda p: p.name)
async def test_signaling_rejections_on_the_wire(profile: Profile) -> None:
    with trio.fail_after(20):
        async with open_simulator(SimulatorConfig(profile=profile)) as sim:
            eng = await sim.start(Scenario(product=Product.MEETING, duration_s=30))
            for overrides, status in WIRE_REJECTIONS:
                async with signaling(eng.target, **overrides) as (_ws, resp):
                    code, reason = profile.code(status)
                    assert resp["msg_type"] == 2
                    assert resp["status_code"] == code, overrides
                    assert resp["reason"] == reason
            assert sum(eng.stats.rejected.values()) == len(WIRE_REJECTIONS)
            assert eng.stats.signaling_accepted == 0
            await eng.stop(1)


async def test_non_json_handshake_is_invalid_payload() -> None:
    from trio_websocket import open_websocket_url

    with trio.fail_after(20):
        async with open_simulator() as sim:
            eng = await sim.start(Scenario(product=Product.MEETING, duration_s=30))
            async with open_websocket_url(eng.target.server_urls) as ws:
                await ws.send_message('{"msg_type":1,')
                resp = await recv(ws)
            assert resp["status_code"] == 4
            await eng.stop(1)


async def test_media_rejections_and_duplicates_on_the_wire() -> None:
    with trio.fail_after(20):
        async with open_simulator() as sim:
            eng = await sim.start(Scenario(product=Product.MEETING, duration_s=30))
            target = eng.target
            async with signaling(target) as (_sig, resp):
                urls = resp["media_server"]["server_urls"]
                params = MediaParams(audio=AudioParams(codec=4, sample_rate=1))
                async with media(target, urls["audio"], 1, params) as (_ws, bad):
                    assert bad["status_code"] == 20  # INVALID_MEDIA_AUDIO_SAMPLE_RATE
                async with media(target, urls["audio"], 1, signature="0" * 64) as (_ws, bad):
                    assert bad["status_code"] == 3
                async with media(target, urls["audio"], 1) as (_ws, ok):
                    assert ok["status_code"] == 0
                    async with media(target, urls["audio"], 1) as (_ws2, dup):
                        assert dup["status_code"] == 16
                    async with media(target, urls["all"], 32) as (_ws3, mixed):
                        assert mixed["status_code"] == 15
            await eng.stop(1)


SIGNATURE_VECTORS = [
    # (product, client_id, secret, instance, stream, signature, accepted)
    (
        Product.MEETING,
        "XkWfgHHASGOQC9b95AkIxB",
        "YZnKVUufg7N18Oej6gHHqNWc7CG5jQ6N",
        "TNhvT3WEBT6Srse3TgWRGr",
        "rtms_TN3WEBT6SrTgWRGr_001",
        "8da2206b6a3679c74cdc454b6c44d002ef5c717e899e9d830ef4a9546cd23daf",
        True,
    ),
    (Product.MEETING, "test_client_id", "test_client_secret", MEETING, STREAM, GOOD_SIG, True),
    (
        Product.MEETING,
        "test_client_id",
        "test_client_secret",
        "/ab+cD//eFg==",
        STREAM,
        "e7272f629f441e62a5c0104ba127315e87d1a4df54fda6d2750fc6b75e2993db",
        True,
    ),
    (
        Product.WEBINAR,
        "test_client_id",
        "test_client_secret",
        "WbNr4wX9QmK0aZ7tT1uP2g==",
        "8f1c2d3e4b5a69788796a5b4c3d2e1f0",
        "9f208595cd61b5fa423a4a14412e51df7df2779cc0a027b7d50d15b1885aa598",
        True,
    ),
    (
        Product.SESSION,
        "test_sdk_key",
        "test_sdk_secret",
        "4567UVWxYZABCdEfGhiJkl==",
        STREAM,
        "7a58da6eb3e7c8fa5d4fe54984c1a033e14cf21ab91102b0f60009c8afe11b2f",
        True,
    ),
    (
        Product.CONTACT_CENTER,
        "test_client_id",
        "test_client_secret",
        "LjjdDBo5SkGneP8qY4SvuQ",
        "03db704592624398931a588dd78200cb",
        "788811621fd8bf64965c269692849a4ab4476c3f9e67d63e477cdf1f07e79b4d",
        True,
    ),
    (
        Product.MEETING,
        "XkWfgHHASGOQC9b95AkIxB",
        "YZnKVUufg7N18Oej6gHHqNWc7CG5jQ6N",
        "TNhvT3WEBT6Srse3TgWRGr",
        "rtms_TN3WEBT6SrTgWRGr_001",
        "543fb8b7959ec30c80e14abe880fe79e14b655328d58e11d2cb320049b012cb3",
        False,
    ),
    (
        Product.MEETING,
        "test_client_id",
        "test_client_secret",
        MEETING,
        STREAM,
        "1dc696437146a21017b8669417434377c9d963e84297a26aeda76d8a89db2d1a",
        False,
    ),
    (
        Product.CONTACT_CENTER,
        "test_client_id",
        "test_client_secret",
        "LjjdDBo5SkGneP8qY4SvuQ",
        "03db704592624398931a588dd78200cb",
        "2c0550cd8a4cdc78f523a182cef700e694515cd67d1d229f6c014574eb3103e6",
        False,
    ),
    (
        Product.MEETING,
        "XkWfgHHASGOQC9b95AkIxB",
        "YZnKVUufg7N18Oej6gHHqNWc7CG5jQ6N",
        "TNhvT3WEBT6Srse3TgWRGr",
        "rtms_TN3WEBT6SrTgWRGr_001",
        "jaIga2o2ecdM3EVLbETQAu9ccX6Jnp2DDvSpVGzSPa8=",
        False,
    ),
    (
        Product.MEETING,
        "test_client_id",
        "test_client_secret",
        MEETING,
        STREAM,
        "/8YFUq2r6ySC/ap2Ia8Isa94uoDNlRQEQzNDHUZ6Wfk=",
        False,
    ),
]


async def test_signature_vectors_of_section_12_1() -> None:
    with trio.fail_after(30):
        async with open_simulator() as sim:
            for product, cid, secret, instance, stream, signature, accepted in SIGNATURE_VECTORS:
                eng = await sim.start(
                    Scenario(
                        product=product,
                        client_id=cid,
                        client_secret=secret,
                        instance_id=instance,
                        rtms_stream_id=stream,
                        duration_s=30,
                    )
                )
                assert (eng.signature == signature) is accepted
                async with signaling(eng.target, signature=signature) as (_ws, resp):
                    assert (resp["status_code"] == 0) is accepted, (product, signature)
                    if not accepted:
                        assert resp["status_code"] == 3
                await eng.stop(1)


@pytest.mark.parametrize(
    ("policy", "expect_second"),
    [(DuplicatePolicy.REJECT_NEW, 8), (DuplicatePolicy.KICK_OLD, 0)],
)
async def test_duplicate_signaling_policies(policy: DuplicatePolicy, expect_second: int) -> None:
    from dataclasses import replace

    profile = replace(DOC_2026, duplicate_policy=policy)
    with trio.fail_after(20):
        async with open_simulator(SimulatorConfig(profile=profile)) as sim:
            eng = await sim.start(Scenario(product=Product.MEETING, duration_s=30))
            async with signaling(eng.target) as (first, resp):
                assert resp["status_code"] == 0
                assert (await recv(first))["event"]["event_type"] == 1
                async with signaling(eng.target) as (_second, resp2):
                    assert resp2["status_code"] == expect_second
                    if policy is DuplicatePolicy.KICK_OLD:
                        kicked = Received()
                        await read_all(first, kicked)
                        assert kicked.close_code == 1000
                        await eng.wait_for(lambda s: s.kicked == 1)
                        assert eng.stats.signaling_open == 1
                    else:
                        assert resp2["reason"] == "duplicate signal request"
            assert eng.stats.signaling_max_open == 1
            await eng.stop(1)


async def test_zoom_mock_profile_quirks() -> None:
    with trio.fail_after(20):
        async with open_simulator(SimulatorConfig(profile=ZOOM_MOCK)) as sim:
            eng = await sim.start(Scenario(product=Product.MEETING, duration_s=30))
            async with signaling(eng.target, signature="0" * 64) as (_ws, resp):
                assert "status_code" not in resp
                assert resp["reason"] == "invalid signature"
            async with signaling(eng.target) as (_ws, ok):
                assert ok["status_code"] == 0
                urls = ok["media_server"]["server_urls"]
                # No msg 4 and no ready ack: the mock just streams, with no media authentication.
                async with media(eng.target, urls["audio"], 1, signature="0" * 64) as (_m, first):
                    assert first["msg_type"] == 14
                    await eng.stop(6)
                    seen = [await recv(_ws) for _ in range(3)]
            assert seen[0]["event"]["event_type"] == 1
            assert seen[1] == {
                "msg_type": 8,
                "state": 4,
                "reason": "STOP_BC_MEETING_ENDED",
                "timestamp": seen[1]["timestamp"],
            }
            assert seen[2]["msg_type"] == 9


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
handshake_like = st.fixed_dictionaries(
    {},
    optional={
        "msg_type": st.sampled_from([1, 3, "1", None, 3.0]),
        "protocol_version": st.sampled_from([1, 2, "1", None]),
        "meeting_uuid": st.sampled_from([MEETING, "", 5]),
        "rtms_stream_id": st.sampled_from([STREAM, "x", None]),
        "signature": st.sampled_from([GOOD_SIG, GOOD_SIG.upper(), "", 7]),
        "media_type": st.integers(-1, 70) | json_values,
        "media_params": json_values
        | st.fixed_dictionaries(
            {}, optional={"audio": json_values, "transcript": json_values, "chat": json_values}
        ),
        "sequence": json_values,
    },
)


@given(obj=st.one_of(handshake_like, st.dictionaries(st.text(max_size=6), json_values, max_size=6)))
@settings(max_examples=300, deadline=None)
def test_validation_never_crashes_on_arbitrary_json(obj: dict[str, Any]) -> None:
    status = check_common(obj, 1, EXPECTED)  # type: ignore[arg-type]
    assert isinstance(status, Status)
    for url_kind in ("audio", "all", "transcript"):
        verdict = check_media(
            obj,
            EXPECTED,
            url_kind=url_kind,
            offered=("audio", "transcript", "chat"),
            open_kinds=(),
            unified_open=False,
        )
        assert (verdict.params is not None) is (verdict.status is Status.OK)


async def test_webinar_handshake_key_is_configurable() -> None:
    """§14.1: webinars may be joined with ``meeting_uuid``; the scenario decides what is valid."""
    with trio.fail_after(20):
        async with open_simulator() as sim:
            default = await sim.start(Scenario(product=Product.WEBINAR, duration_s=30))
            assert default.target.id_key == "webinar_uuid"
            async with signaling(default.target) as (_ws, resp):
                assert resp["status_code"] == 0
            await default.stop(1)
            legacy = await sim.start(
                Scenario(product=Product.WEBINAR, duration_s=30, handshake_id_key="meeting_uuid")
            )
            assert legacy.target.id_key == "meeting_uuid"
            moved = {"meeting_uuid": DROP, "webinar_uuid": legacy.scenario.instance_id}
            async with signaling(legacy.target, **moved) as (_ws, resp):
                assert resp["status_code"] == 4
            async with signaling(legacy.target) as (_ws, resp):
                assert resp["status_code"] == 0
            await legacy.stop(1)
