"""Configuration: the sample file, the embedded default, every error path, and secret handling."""

from __future__ import annotations

import logging
import pickle
import re
from pathlib import Path

import pytest

from recorder.config import (
    MIN_DEDUP_RETENTION_S,
    AudioCodecName,
    CatalogKind,
    KeyProviderKind,
    MediaKind,
    ObjectLockMode,
    Secret,
    StoreKind,
    for_demo,
    load_config,
    load_secrets,
)
from recorder.errors import ConfigError
from recorder.rtms.webhook import Product

SAMPLE = Path(__file__).resolve().parents[1] / "ops" / "recorder.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recorder.toml"
    path.write_text(text)
    return path


def test_ops_sample_parses_and_documents_every_key(tmp_path: Path) -> None:
    config = load_config(SAMPLE, {"STATE_DIRECTORY": str(tmp_path)})
    assert config.source == SAMPLE
    assert config.storage.state_dir == tmp_path
    assert config.storage.store is StoreKind.S3
    assert config.storage.s3 is not None
    assert config.storage.s3.object_lock_mode is ObjectLockMode.COMPLIANCE
    assert config.storage.s3.prefix == ""
    assert config.keys.provider is KeyProviderKind.KMS
    assert config.retention.policies_dir == Path("/etc/rtms-recorder/policies")
    assert config.rtms.handshake_id_keys[Product.WEBINAR] == "webinar_uuid"
    assert config.capture.output_sample_rate_hz is None
    assert (config.service.lease_ttl_s, config.service.rejoin_interval_s) == (45.0, 10.0)
    # Uncommenting every "# key = value" line must still parse: the commented keys are real.
    uncommented = re.sub(r"(?m)^# ([a-z_]+ = )", r"\1", SAMPLE.read_text())
    uncommented = uncommented.replace('kind = "sqlite"', 'kind = "postgres"')
    full = load_config(write(tmp_path, uncommented), {})
    assert full.storage.state_dir == Path("/var/lib/rtms-recorder")
    assert full.keys.escrow_public_key_path == Path("/etc/rtms-recorder/escrow.pub")
    assert full.catalog.postgres_dsn is not None


def test_embedded_default_runs_the_demo_locally(tmp_path: Path) -> None:
    config = load_config(None, {"XDG_STATE_HOME": str(tmp_path)})
    state = tmp_path / "rtms-recorder"
    assert config.source is None
    assert config.storage.state_dir == state
    assert config.storage.store is StoreKind.LOCAL
    assert config.storage.local_store_path == state / "store"
    assert config.storage.spool_dir == state / "spool"
    assert config.keys.provider is KeyProviderKind.LOCAL
    assert config.keys.key_dir == state / "keys"
    assert config.catalog.kind is CatalogKind.SQLITE
    assert config.catalog.sqlite_path == state / "catalog.sqlite3"
    assert config.capture.segment_seconds == 300
    assert config.capture.checkpoint_interval_s == 1.0
    assert config.rtms.audio.codec is AudioCodecName.L16
    assert config.rtms.audio.sample_rate_hz == 16000
    assert config.service.dedup_retention_s >= MIN_DEDUP_RETENTION_S


def test_state_dir_precedence() -> None:
    assert load_config(
        None, {"STATE_DIRECTORY": "/a:/b", "XDG_STATE_HOME": "/x"}
    ).storage.state_dir == Path("/a")
    assert load_config(None, {"HOME": "/home/u"}).storage.state_dir == Path(
        "/home/u/.local/state/rtms-recorder"
    )


def test_relative_paths(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[storage]\nstate_dir = "state"\nspool_dir = "sp"\n[keys]\nkey_dir = "/abs/keys"\n',
    )
    config = load_config(path, {})
    assert config.storage.state_dir == tmp_path / "state"
    assert config.storage.spool_dir == tmp_path / "state" / "sp"
    assert config.keys.key_dir == Path("/abs/keys")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[service]\nlisten_prot = 1\n",
            "[service] listen_prot: unknown key (did you mean 'listen_port'?)",
        ),
        ("[servce]\n", "[servce]: unknown section (did you mean [service]?)"),
        (
            "[service]\nlisten_port = '80'\n",
            "[service] listen_port: expected an integer, got a string",
        ),
        ("[service]\nlisten_port = 70000\n", "[service] listen_port: 70000 is out of range"),
        ("[service]\nwebhook_path = 'hook'\n", "must start with '/'"),
        (
            "[service]\ndedup_retention_s = 3600\n",
            "[service] dedup_retention_s: 3600 is out of range",
        ),
        ("[service]\nreplay_window_s = true\n", "expected an integer, got a boolean"),
        ("[service]\nlease_ttl_s = 0.2\n", "[service] lease_ttl_s: 0.2 is out of range"),
        ("[service]\nrejoin_interval_s = 0\n", "[service] rejoin_interval_s"),
        (
            "[rtms]\naudio_codec = 'mp3'\n",
            "[rtms] audio_codec: 'mp3' is not one of l16, g711, g722, opus",
        ),
        ("[rtms]\naudio_codec = 'opus'\naudio_sample_rate_hz = 16000\n", "opus supports 48000 Hz"),
        ("[rtms]\naudio_codec = 'g711'\naudio_channels = 2\n", "g711 is mono only"),
        ("[rtms]\naudio_packet_ms = 30\n", "[rtms] audio_packet_ms: must be 20"),
        ("[rtms]\naudio_codec = 'opus'\naudio_packet_ms = 40\n", "audio_packet_ms"),
        ("[rtms]\nmedia = ['audio', 'smell']\n", "'smell' is not one of"),
        ("[rtms]\nallowed_hosts = ['wss://zoom.us']\n", "is not a host name"),
        ("[rtms]\nbackoff_initial_s = 5\nbackoff_max_s = 1\n", "backoff_max_s"),
        ("[rtms.handshake_id_key]\nwebinar = 'webinar_id'\n", "[rtms.handshake_id_key] webinar"),
        ("[rtms.handshake_id_key]\nroom = 'x'\n", "[rtms.handshake_id_key] room: unknown key"),
        ("[capture]\nsegment_seconds = 0\n", "[capture] segment_seconds"),
        ("[capture]\ncheckpoint_interval_s = 5\n", "[capture] checkpoint_interval_s"),
        ("[capture]\noutput_sample_rate_hz = 12345\n", 'expected "source" or one of'),
        ("[capture]\noutput_channels = 'mono'\n", "[capture] output_channels"),
        ("[storage]\nstore = 's3'\n", "[storage] s3: a [storage.s3] table is required"),
        (
            "[storage]\nstore = 's3'\n[storage.s3]\nregion = 'x'\n",
            "[storage.s3] bucket: is required",
        ),
        (
            "[storage.s3]\nbucket = 'b'\nobject_lock = 'compliance'\n",
            "did you mean 'object_lock_mode'?",
        ),
        (
            "[storage.s3]\nbucket = 'b'\nobject_lock_mode = 'strict'\n",
            "not one of compliance, governance",
        ),
        ("[storage]\nspool_warn_bytes = 10\nspool_limit_bytes = 5\n", "spool_warn_bytes"),
        ("[storage]\nstate_dir = ''\n", "expected a path"),
        ("[keys]\nprovider = 'kms'\n", "[keys] kms_key_id: is required"),
        ("[keys]\nprovider = 'public'\n", "[keys] public_key_path: is required"),
        ("[catalog]\nkind = 'postgres'\n", "[catalog] postgres_dsn: is required"),
        ("[catalog]\nkind = 'mysql'\n", "[catalog] kind"),
        (
            "[catalog]\nkind = 'postgres'\npostgres_dsn = 'x y z'\n",
            "[catalog] postgres_dsn: not a valid",
        ),
        ("[logging]\nlevel = 'LOUD'\n", "[logging] level"),
        ("service = 1\n", "expected a [service] table"),
        ("[service\n", "not valid TOML"),
    ],
)
def test_errors_name_file_key_and_problem(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert str(path) in str(info.value)
    assert message in str(info.value)
    assert info.value.exit_code == 3


@pytest.mark.parametrize(
    "dsn",
    ["postgresql://rec:hunter2@db/rtms", "host=db dbname=rtms user=rec password=hunter2"],
)
def test_postgres_dsn_with_a_password_is_refused_without_echoing_it(
    tmp_path: Path, dsn: str
) -> None:
    path = write(tmp_path, f'[catalog]\nkind = "postgres"\npostgres_dsn = "{dsn}"\n')
    with pytest.raises(ConfigError, match="must not contain a password") as info:
        load_config(path, {})
    assert "hunter2" not in str(info.value)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml", {})
    path = tmp_path / "bad.toml"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path, {})


def test_valid_variants(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[rtms]
audio_codec = "OPUS"
audio_channels = 2
per_speaker = true
media = ["audio", "audio", "chat"]
allowed_hosts = ["Rtms.Example.com", "*.zoom.us"]
[rtms.handshake_id_key]
webinar = "meeting_uuid"
[capture]
output_sample_rate_hz = 16000
output_channels = 1
[storage]
store = "local"
local_store_path = "/srv/evidence"
[keys]
provider = "public"
public_key_path = "/etc/rtms-recorder/recipient.pub"
""",
    )
    config = load_config(path, {})
    assert config.rtms.audio.codec is AudioCodecName.OPUS
    assert config.rtms.audio.sample_rate_hz == 48000
    assert config.rtms.media == (MediaKind.AUDIO, MediaKind.CHAT)
    assert config.rtms.allowed_hosts == ("rtms.example.com", "*.zoom.us")
    assert config.rtms.handshake_id_keys[Product.WEBINAR] == "meeting_uuid"
    assert config.rtms.handshake_id_keys[Product.MEETING] == "meeting_uuid"
    assert (config.capture.output_sample_rate_hz, config.capture.output_channels) == (16000, 1)
    assert config.storage.local_store_path == Path("/srv/evidence")
    assert config.keys.public_key_path == Path("/etc/rtms-recorder/recipient.pub")


def test_config_is_frozen() -> None:
    config = load_config(None, {"HOME": "/h"})
    with pytest.raises(AttributeError):
        config.service.listen_port = 1  # type: ignore[misc]


# --- Secrets -----------------------------------------------------------------------------------


def test_secrets_from_environment_and_zoom_sdk_aliases() -> None:
    secrets = load_secrets(
        {"ZM_RTMS_CLIENT": "cid", "ZM_RTMS_SECRET": "csecret", "ZOOM_SECRET_TOKEN": "tok"}
    )
    assert secrets.zoom_client_id == Secret("cid")
    assert secrets.zoom_client_secret is not None
    assert secrets.zoom_client_secret.reveal() == "csecret"
    assert secrets.zoom_secret_token is not None
    assert secrets.zoom_secret_token.reveal() == "tok"
    assert secrets.video_sdk_key is None
    secrets.require("zoom_client_id", "zoom_client_secret", "zoom_secret_token")


def test_same_value_under_both_names_is_fine_different_values_are_not() -> None:
    same = load_secrets({"ZOOM_CLIENT_ID": "a", "ZM_RTMS_CLIENT": "a"})
    assert same.zoom_client_id == Secret("a")
    with pytest.raises(ConfigError, match="ZOOM_CLIENT_SECRET and ZM_RTMS_SECRET") as info:
        load_secrets({"ZOOM_CLIENT_SECRET": "s1", "ZM_RTMS_SECRET": "s2"})
    assert "s1" not in str(info.value)
    assert "s2" not in str(info.value)


def test_credentials_directory_wins_over_environment(tmp_path: Path) -> None:
    (tmp_path / "ZOOM_SECRET_TOKEN").write_text("from-credential\n")
    (tmp_path / "ZM_RTMS_SECRET").write_text("sdk-secret")
    secrets = load_secrets(
        {
            "CREDENTIALS_DIRECTORY": str(tmp_path),
            "ZOOM_SECRET_TOKEN": "from-env",
            "ZOOM_CLIENT_SECRET": "env-secret",
            "ZOOM_CLIENT_ID": "env-id",
        }
    )
    assert secrets.zoom_secret_token == Secret("from-credential")
    assert secrets.zoom_client_secret == Secret("sdk-secret")
    assert secrets.zoom_client_id == Secret("env-id")


def test_unreadable_credential_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "ZOOM_SECRET_TOKEN").mkdir()
    with pytest.raises(ConfigError, match="credential ZOOM_SECRET_TOKEN"):
        load_secrets({"CREDENTIALS_DIRECTORY": str(tmp_path)})


def test_require_names_what_is_missing_and_where_to_put_it() -> None:
    secrets = load_secrets({"ZOOM_CLIENT_ID": "x"})
    with pytest.raises(ConfigError) as info:
        secrets.require("zoom_client_id", "zoom_client_secret", "zoom_secret_token")
    assert "ZOOM_CLIENT_SECRET or ZM_RTMS_SECRET" in str(info.value)
    assert "ZOOM_SECRET_TOKEN" in str(info.value)
    assert "zoom_client_id" not in str(info.value)


def test_secrets_never_appear_in_repr_str_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    config = load_config(
        None,
        {"HOME": "/h", "ZOOM_CLIENT_SECRET": "s3cr3t-value", "ZOOM_SECRET_TOKEN": "t0ken-value"},
    )
    for text in (repr(config), str(config), repr(config.secrets), f"{config.secrets}"):
        assert "s3cr3t-value" not in text
        assert "t0ken-value" not in text
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("config %s %r", config, config.secrets.zoom_secret_token)
    assert "t0ken-value" not in caplog.text
    with pytest.raises(TypeError):
        pickle.dumps(config.secrets.zoom_secret_token)


def test_for_demo_allows_ws_to_loopback_only_on_request() -> None:
    config = load_config(None, {"HOME": "/h"})
    assert not config.rtms.allow_insecure_loopback
    demo = for_demo(config)
    assert demo.rtms.allow_insecure_loopback
    assert {"127.0.0.1", "localhost", "zoom.us"} <= set(demo.rtms.allowed_hosts)
    assert demo.storage == config.storage


def test_audio_per_product_overrides_the_default(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[rtms]
audio_codec = "l16"
[rtms.audio.contact_center]
codec = "g711"
[rtms.audio.meeting]
codec = "opus"
channels = 2
per_speaker = true
""",
    )
    rtms = load_config(path, {}).rtms
    assert rtms.audio_for(Product.CONTACT_CENTER).codec is AudioCodecName.G711
    assert rtms.audio_for(Product.CONTACT_CENTER).sample_rate_hz == 8000
    meeting = rtms.audio_for(Product.MEETING)
    assert (meeting.codec, meeting.sample_rate_hz, meeting.channels) == (
        AudioCodecName.OPUS,
        48000,
        2,
    )
    assert meeting.per_speaker
    assert rtms.audio_for(Product.WEBINAR).codec is AudioCodecName.L16


def test_audio_per_product_errors_name_the_table(tmp_path: Path) -> None:
    path = write(tmp_path, "[rtms.audio.contact_center]\ncodec = 'g711'\nchannels = 2\n")
    with pytest.raises(ConfigError, match=r"\[rtms.audio.contact_center\] channels"):
        load_config(path, {})


def test_zoom_phone_has_its_own_audio_table_and_handshake_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[rtms.audio.phone]
codec = "g711"
[rtms.handshake_id_key]
phone = "call_id"
""",
    )
    rtms = load_config(path, {}).rtms
    assert rtms.audio_for(Product.PHONE).codec is AudioCodecName.G711
    assert rtms.audio_for(Product.CONTACT_CENTER).codec is AudioCodecName.L16
    assert rtms.handshake_id_keys[Product.PHONE] == "call_id"
    bad = write(tmp_path, "[rtms.audio.phone]\ncodec = 'g711'\nsample_rate_hz = 16000\n")
    with pytest.raises(ConfigError, match=r"\[rtms.audio.phone\]"):
        load_config(bad, {})


@pytest.mark.parametrize("prefix", ["tenant-a", "/tenant-a/", "a//b/"])
def test_s3_key_prefix_must_be_a_clean_folder(tmp_path: Path, prefix: str) -> None:
    path = write(
        tmp_path, f'[storage]\nstore = "s3"\n[storage.s3]\nbucket = "b"\nprefix = "{prefix}"\n'
    )
    with pytest.raises(ConfigError, match="prefix"):
        load_config(path, {})
    good = write(tmp_path, '[storage]\nstore = "s3"\n[storage.s3]\nbucket = "b"\nprefix = "t/a/"\n')
    s3 = load_config(good, {}).storage.s3
    assert s3 is not None
    assert s3.prefix == "t/a/"


def test_zoom_base_urls_are_https_unless_loopback_is_allowed(tmp_path: Path) -> None:
    sample = load_config(SAMPLE, {"STATE_DIRECTORY": str(tmp_path)})
    assert sample.zoom.api_base_url == "https://api.zoom.us"
    assert sample.pause.max_s == 600.0
    local = load_config(
        write(
            tmp_path,
            '[zoom]\nallow_insecure_loopback = true\napi_base_url = "http://127.0.0.1:9/"\n'
            "[pause]\nmax_s = 30\n",
        ),
        {},
    )
    assert (local.zoom.api_base_url, local.pause.max_s) == ("http://127.0.0.1:9", 30.0)
    for text, problem in [
        ('[zoom]\napi_base_url = "http://api.zoom.us"', "api_base_url"),
        ('[zoom]\noauth_base_url = "http://127.0.0.1:9"', "oauth_base_url"),
        ("[zoom]\nbackoff_initial_s = 9.0\nbackoff_max_s = 1.0", "backoff_max_s"),
        ("[pause]\nmax_s = 0", "max_s"),
        ("[pause]\nmax_seconds = 5", "unknown key"),
    ]:
        with pytest.raises(ConfigError, match=problem):
            load_config(write(tmp_path, text), {})
