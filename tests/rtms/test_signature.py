"""Handshake signature vectors from rtms-protocol.md §12.1, verbatim."""

from __future__ import annotations

import pytest

from recorder.rtms.signature import (
    Product,
    handshake_signature,
    instance_id_key,
    verify_handshake_signature,
    webhook_event_prefix,
)

MOCK = (
    "XkWfgHHASGOQC9b95AkIxB",
    "YZnKVUufg7N18Oej6gHHqNWc7CG5jQ6N",
    "TNhvT3WEBT6Srse3TgWRGr",
    "rtms_TN3WEBT6SrTgWRGr_001",
)
MEETING = (
    "test_client_id",
    "test_client_secret",
    "4444AAAiAAAAAiAiAiiAii==",
    "609340fb2a7946909659956c8aa9250c",
)
ZCC = (
    "test_client_id",
    "test_client_secret",
    "LjjdDBo5SkGneP8qY4SvuQ",
    "03db704592624398931a588dd78200cb",
)

POSITIVE = [
    (MOCK, "8da2206b6a3679c74cdc454b6c44d002ef5c717e899e9d830ef4a9546cd23daf"),
    (MEETING, "ffc60552adabeb2482fdaa7621af08b1af78ba80cd9514044333431d467a59f9"),
    (
        (
            "test_client_id",
            "test_client_secret",
            "/ab+cD//eFg==",
            "609340fb2a7946909659956c8aa9250c",
        ),
        "e7272f629f441e62a5c0104ba127315e87d1a4df54fda6d2750fc6b75e2993db",
    ),
    (
        (
            "test_client_id",
            "test_client_secret",
            "WbNr4wX9QmK0aZ7tT1uP2g==",
            "8f1c2d3e4b5a69788796a5b4c3d2e1f0",
        ),
        "9f208595cd61b5fa423a4a14412e51df7df2779cc0a027b7d50d15b1885aa598",
    ),
    (
        (
            "test_sdk_key",
            "test_sdk_secret",
            "4567UVWxYZABCdEfGhiJkl==",
            "609340fb2a7946909659956c8aa9250c",
        ),
        "7a58da6eb3e7c8fa5d4fe54984c1a033e14cf21ab91102b0f60009c8afe11b2f",
    ),
    (ZCC, "788811621fd8bf64965c269692849a4ab4476c3f9e67d63e477cdf1f07e79b4d"),
]

NEGATIVE = [
    (MOCK, "543fb8b7959ec30c80e14abe880fe79e14b655328d58e11d2cb320049b012cb3"),
    (MEETING, "1dc696437146a21017b8669417434377c9d963e84297a26aeda76d8a89db2d1a"),
    (ZCC, "2c0550cd8a4cdc78f523a182cef700e694515cd67d1d229f6c014574eb3103e6"),
    (MOCK, "jaIga2o2ecdM3EVLbETQAu9ccX6Jnp2DDvSpVGzSPa8="),
    (MEETING, "/8YFUq2r6ySC/ap2Ia8Isa94uoDNlRQEQzNDHUZ6Wfk="),
]


@pytest.mark.parametrize(("ids", "expected"), POSITIVE)
def test_positive_vectors(ids: tuple[str, str, str, str], expected: str) -> None:
    client_id, secret, instance, stream = ids
    assert handshake_signature(client_id, secret, instance, stream) == expected
    assert verify_handshake_signature(expected, client_id, secret, instance, stream)


@pytest.mark.parametrize(("ids", "wrong"), NEGATIVE)
def test_negative_vectors_rejected(ids: tuple[str, str, str, str], wrong: str) -> None:
    client_id, secret, instance, stream = ids
    assert handshake_signature(client_id, secret, instance, stream) != wrong
    assert not verify_handshake_signature(wrong, client_id, secret, instance, stream)


def test_uppercase_hex_and_other_stream_rejected() -> None:
    client_id, secret, instance, stream = MEETING
    good = handshake_signature(client_id, secret, instance, stream)
    assert not verify_handshake_signature(good.upper(), client_id, secret, instance, stream)
    assert not verify_handshake_signature(good, client_id, secret, instance, stream + "x")
    assert not verify_handshake_signature(good[:-1], client_id, secret, instance, stream)


def test_product_keys_and_prefixes() -> None:
    assert [instance_id_key(p) for p in Product] == [
        "meeting_uuid",
        "webinar_uuid",
        "session_id",
        "engagement_id",
        "call_id",
    ]
    assert webhook_event_prefix(Product.CONTACT_CENTER) == "contact_center.voice_"
    assert webhook_event_prefix(Product.PHONE) == "phone."
    assert webhook_event_prefix(Product.SESSION) == "session."
