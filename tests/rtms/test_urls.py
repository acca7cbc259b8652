"""URL policy, server_urls splitting, media socket planning, backoff and audio params (pure)."""

from __future__ import annotations

import pytest

from recorder.errors import ConfigError, UrlNotAllowed
from recorder.rtms._backoff import Backoff
from recorder.rtms.client import ClientConfig, audio_params
from recorder.rtms.events import AudioCodec
from recorder.rtms.messages import MediaType
from recorder.rtms.signature import Product
from recorder.rtms.urls import (
    DEFAULT_ALLOWED_HOSTS,
    SocketLayout,
    check_url,
    plan_media_sockets,
    split_server_urls,
)


def allowed(url: str, loopback: bool = False) -> str:
    return check_url(url, allowed_hosts=DEFAULT_ALLOWED_HOSTS, allow_insecure_loopback=loopback)


@pytest.mark.parametrize(
    "url",
    [
        "wss://rtms.zoom.us/signaling",
        "wss://zoomsjc144-195-19-81rtms.sjc.zoom.us:443/x?token=t",
        "wss://zoom.com/",
        "WSS://Rtms.Zoom.US/a",
    ],
)
def test_allowed_urls(url: str) -> None:
    assert allowed(url) == url


@pytest.mark.parametrize(
    ("url", "loopback", "named"),
    [
        ("ws://rtms.zoom.us/x", False, "scheme=ws"),
        ("https://rtms.zoom.us/x", False, "scheme=https"),
        ("wss://zoom.us.evil.com/x?token=secret", False, "host=zoom.us.evil.com"),
        ("wss://evilzoom.us/x", False, "host=evilzoom.us"),
        ("ws://127.0.0.1:9/x", False, "host=127.0.0.1"),
        ("wss://localhost/x", False, "host=localhost"),
        ("ws://10.0.0.1/x", True, "scheme=ws"),
        ("http://127.0.0.1/x", True, "scheme=http"),
        ("wss:///nohost", False, "no host"),
    ],
)
def test_refused_urls_name_scheme_and_host_never_query(
    url: str, loopback: bool, named: str
) -> None:
    with pytest.raises(UrlNotAllowed) as info:
        allowed(url, loopback)
    assert named in str(info.value)
    assert "secret" not in str(info.value)
    assert "token" not in str(info.value)


def test_loopback_only_when_configured() -> None:
    assert allowed("ws://127.0.0.1:8080/s", loopback=True)
    assert allowed("ws://localhost:8080/s", loopback=True)
    assert allowed("ws://[::1]:8080/s", loopback=True)


def test_split_server_urls() -> None:
    assert split_server_urls("wss://a.zoom.us/1, wss://b.zoom.us/2,") == (
        "wss://a.zoom.us/1",
        "wss://b.zoom.us/2",
    )
    assert split_server_urls("") == ()


URLS = {
    "audio": "wss://x.zoom.us/audio",
    "transcript": "wss://x.zoom.us/transcript",
    "all": "wss://x.zoom.us/all",
}


def test_plan_per_type_and_all() -> None:
    wanted = MediaType.AUDIO | MediaType.TRANSCRIPT
    per_type = plan_media_sockets(URLS, wanted, SocketLayout.PER_TYPE)
    assert [(p.name, p.media_type, p.carries) for p in per_type] == [
        ("audio", 1, ("audio",)),
        ("transcript", 8, ("transcript",)),
    ]
    [unified] = plan_media_sockets(URLS, wanted, SocketLayout.ALL)
    assert (unified.name, unified.media_type, unified.carries) == (
        "all",
        32,
        ("audio", "transcript"),
    )


def test_plan_falls_back_to_all_and_skips_unscoped_media() -> None:
    only_all = {"all": "wss://x.zoom.us/all"}
    [plan] = plan_media_sockets(only_all, MediaType.AUDIO, SocketLayout.PER_TYPE)
    assert plan.name == "all"
    plans = plan_media_sockets(URLS, MediaType.AUDIO | MediaType.CHAT, SocketLayout.PER_TYPE)
    assert [p.name for p in plans] == ["audio"]


def test_contact_center_prefers_audio_over_all() -> None:
    [plan] = plan_media_sockets(URLS, MediaType.AUDIO, SocketLayout.ALL, prefer_audio_url=True)
    assert plan.name == "audio"


def test_backoff_doubles_to_cap_and_resets() -> None:
    backoff = Backoff()
    assert [backoff.next() for _ in range(7)] == [3, 6, 12, 24, 30, 30, 30]
    assert backoff.attempts == 7
    backoff.reset()
    assert backoff.next() == 3
    with pytest.raises(ValueError, match="backoff"):
        Backoff(0, 1)


@pytest.mark.parametrize(
    ("codec", "rate", "channels", "send_rate"),
    [
        (AudioCodec.L16, 8000, 1, 20),
        (AudioCodec.L16, 48000, 2, 1000),
        (AudioCodec.G711, 8000, 1, 20),
        (AudioCodec.G722, 16000, 1, 20),
        (AudioCodec.OPUS, 48000, 2, 20),
    ],
)
def test_audio_params_matrix(codec: AudioCodec, rate: int, channels: int, send_rate: int) -> None:
    params = audio_params(codec, rate, channels, send_rate_ms=send_rate, per_speaker=True)
    assert (params.codec, params.channel, params.send_rate, params.data_opt) == (
        codec,
        channels,
        send_rate,
        2,
    )


@pytest.mark.parametrize(
    ("codec", "rate", "channels", "send_rate"),
    [
        (AudioCodec.OPUS, 16000, 1, 20),
        (AudioCodec.G711, 16000, 1, 20),
        (AudioCodec.G722, 16000, 2, 20),
        (AudioCodec.L16, 44100, 1, 20),
        (AudioCodec.L16, 16000, 1, 30),
        (AudioCodec.OPUS, 48000, 1, 40),
    ],
)
def test_audio_params_outside_the_matrix(
    codec: AudioCodec, rate: int, channels: int, send_rate: int
) -> None:
    with pytest.raises(ConfigError):
        audio_params(codec, rate, channels, send_rate_ms=send_rate)


def test_config_media_selection_per_product() -> None:
    config = ClientConfig(transcript=True, chat=True, video=True)
    assert config.wanted_media(Product.MEETING) == (
        MediaType.AUDIO | MediaType.TRANSCRIPT | MediaType.CHAT | MediaType.VIDEO
    )
    assert config.wanted_media(Product.CONTACT_CENTER) == MediaType.AUDIO | MediaType.TRANSCRIPT
    assert 1 not in config.events_for(Product.MEETING)
    assert 8 in config.events_for(Product.CONTACT_CENTER)
    assert config.watchdog_s == 65.0
    assert (config.backoff_initial_s, config.backoff_max_s) == (3.0, 30.0)
    assert "client_secret" not in repr(config)
