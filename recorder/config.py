"""Configuration: one TOML file, frozen dataclasses, secrets only from the environment.

Rule 1: every key is known. An unknown key, a wrong type or an out-of-range value is a
``ConfigError`` that names the file, the ``[section] key`` and what is wrong (with a "did you
mean" for near-misses), so a typo can never silently fall back to a default.

Rule 2: secrets never live in the file. They come from systemd credentials
(``$CREDENTIALS_DIRECTORY/<NAME>``, see ``LoadCredential=``) or the environment, are wrapped in
``Secret`` (masked in ``repr``/``str``), and are only unwrapped with ``reveal()`` at the point of
use. Precedence for each secret, first match wins:

1. the credential files, in name order (``ZOOM_CLIENT_ID`` before ``ZM_RTMS_CLIENT``);
2. the environment, in the same name order.

Within one source, two names for the same secret (``ZOOM_CLIENT_ID`` and Zoom SDK's
``ZM_RTMS_CLIENT``) that hold *different* values are an error rather than a silent pick.

Rule 3: no file means the embedded default, which runs ``recorder demo`` with no account: SQLite
catalog, local object store and local keys under the state directory (``$STATE_DIRECTORY`` under
systemd, else ``$XDG_STATE_HOME/rtms-recorder``, else ``~/.local/state/rtms-recorder``).

Relative paths: ``storage.state_dir`` is relative to the config file's directory; every other path
is relative to ``storage.state_dir``. ``ops/recorder.toml`` documents every key.
"""

from __future__ import annotations

import difflib
import enum
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeVar

from recorder.errors import ConfigError
from recorder.rtms.webhook import INSTANCE_ID_KEYS, Product
from recorder.video.settings import VideoConfig, parse_video

#: Zoom retries a failed webhook at +5, +20 and +60 minutes (rtms-protocol §8.3): 85 minutes.
ZOOM_RETRY_SPAN_S: Final = (5 + 20 + 60) * 60
#: Dedup keys must outlive the retry schedule by at least two hours (clock skew, slow restarts).
MIN_DEDUP_RETENTION_S: Final = ZOOM_RETRY_SPAN_S + 2 * 3600

_KIB: Final = 1024
_GIB: Final = 1024**3

_E = TypeVar("_E", bound=enum.StrEnum)


class Secret:
    """A secret string whose ``repr``/``str`` never show it. Call ``reveal()`` where it is used."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    def __str__(self) -> str:
        return "********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickling would copy the value into places (caches, queues) nobody audits.
        raise TypeError("Secret cannot be pickled")


class StoreKind(enum.StrEnum):
    LOCAL = "local"
    S3 = "s3"


class ObjectLockMode(enum.StrEnum):
    #: Nobody can shorten the retention, not even root: for regulated tenants.
    COMPLIANCE = "compliance"
    #: Privileged users can override: staging and tests only.
    GOVERNANCE = "governance"


class KeyProviderKind(enum.StrEnum):
    LOCAL = "local"
    KMS = "kms"
    #: Encrypt-only: this host holds a public key and can never decrypt what it recorded.
    PUBLIC = "public"


class CatalogKind(enum.StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"


class AudioCodecName(enum.StrEnum):
    L16 = "l16"
    G711 = "g711"
    G722 = "g722"
    OPUS = "opus"


class MediaKind(enum.StrEnum):
    AUDIO = "audio"
    VIDEO = "video"
    DESKSHARE = "deskshare"
    TRANSCRIPT = "transcript"
    CHAT = "chat"


class LogFormat(enum.StrEnum):
    JSON = "json"
    TEXT = "text"


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    webhook_path: str = "/webhook"
    max_webhook_body_bytes: int = 64 * _KIB
    replay_window_s: int = 300
    dedup_retention_s: int = 4 * 3600
    #: /healthz fails when the service loop has not ticked for this long.
    liveness_stale_s: float = 30.0
    readiness_check_timeout_s: float = 5.0
    #: On shutdown, open engagements get this long before their segments are sealed interrupted.
    drain_timeout_s: float = 30.0
    #: A stream's lease lasts this long unless renewed (every third of it, at most 5 s apart; a
    #: failed renew is retried within 1 s); a process that died holding it is taken over by
    #: another process of the fleet this long after its last renewal. 45 s is Zoom's own figure,
    #: inside its reconnect window; times are the catalog's clock. A holder that could not renew
    #: for 80 % of it stops recording itself, so the default rides out a 30 s catalog outage.
    lease_ttl_s: float = 45.0
    #: How often streams that are live but whose lease is free or expired are looked for.
    rejoin_interval_s: float = 10.0


@dataclass(frozen=True, slots=True)
class AudioChoice:
    codec: AudioCodecName = AudioCodecName.L16
    sample_rate_hz: int = 16_000
    channels: int = 1
    packet_ms: int = 20
    #: One track per active speaker (``data_opt`` 2) instead of the mixed stream.
    per_speaker: bool = False


@dataclass(frozen=True, slots=True)
class RtmsConfig:
    #: Exact host names, or ``*.domain`` for any subdomain of ``domain``.
    allowed_hosts: tuple[str, ...] = ("zoom.us", "*.zoom.us")
    #: Allow ``ws://`` to 127.0.0.1 / ::1 / localhost: tests and the demo only.
    allow_insecure_loopback: bool = False
    media: tuple[MediaKind, ...] = (MediaKind.AUDIO, MediaKind.TRANSCRIPT, MediaKind.CHAT)
    #: The audio media params to request (``[rtms]`` ``audio_*`` keys and ``per_speaker``).
    audio: AudioChoice = field(default_factory=lambda: AudioChoice())
    #: Per-product overrides (``[rtms.audio.<product>]``), e.g. G.711 for Contact Center.
    audio_by_product: Mapping[Product, AudioChoice] = field(
        default_factory=lambda: MappingProxyType({})
    )
    #: Which webhook id signs the handshake, per product (rtms-protocol §14.1).
    handshake_id_keys: Mapping[Product, str] = field(default_factory=lambda: INSTANCE_ID_KEYS)
    backoff_initial_s: float = 3.0
    backoff_max_s: float = 30.0
    connect_timeout_s: float = 10.0
    #: A socket with no inbound frame (data or keep-alive) for this long is treated as dead.
    keepalive_watchdog_s: float = 35.0

    def audio_for(self, product: Product) -> AudioChoice:
        return self.audio_by_product.get(product, self.audio)


@dataclass(frozen=True, slots=True)
class CaptureConfig:
    #: None keeps the source rate.
    output_sample_rate_hz: int | None = None
    #: None keeps the source channel count.
    output_channels: int | None = None
    segment_seconds: int = 300
    checkpoint_interval_s: float = 1.0
    #: A per-speaker or per-channel track silent this long is sealed and freed until its next
    #: packet (0: never). Leaving participants are retired at once.
    retire_after_s: float = 60.0


@dataclass(frozen=True, slots=True)
class S3Config:
    bucket: str
    region: str | None = None
    endpoint_url: str | None = None
    prefix: str = ""
    object_lock_mode: ObjectLockMode = ObjectLockMode.COMPLIANCE
    retention_days: int = 2557  # seven years (365.25 * 7, rounded up)
    verify_tls: bool = True
    #: Refuse to record into a bucket whose Object Lock / versioning drift from this config.
    #: Only tests and emulators without Object Lock turn it off.
    bucket_self_check: bool = True


@dataclass(frozen=True, slots=True)
class StorageConfig:
    state_dir: Path
    spool_dir: Path
    spool_warn_bytes: int = 1 * _GIB
    spool_limit_bytes: int = 8 * _GIB
    #: Failed attempts after which an upload job is quarantined (store outages do not count).
    upload_max_attempts: int = 10
    #: Longest wait between two attempts of one failing upload job (exponential from 1 s).
    upload_backoff_max_s: float = 300.0
    store: StoreKind = StoreKind.LOCAL
    local_store_path: Path | None = None
    s3: S3Config | None = None


@dataclass(frozen=True, slots=True)
class KeysConfig:
    provider: KeyProviderKind
    key_dir: Path
    kms_key_id: str | None = None
    kms_region: str | None = None
    kms_endpoint_url: str | None = None
    public_key_path: Path | None = None
    #: Offline escrow key: wrap to it when the key service is down, never drop audio.
    escrow_public_key_path: Path | None = None
    #: Officer hosts only: X25519 private keys (0600) that unwrap recording keys for reading.
    private_key_paths: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True)
class CatalogConfig:
    kind: CatalogKind
    sqlite_path: Path | None = None
    #: libpq DSN without a password (the password comes from RECORDER_POSTGRES_PASSWORD).
    postgres_dsn: str | None = None


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    policies_dir: Path
    #: Ed25519 key (0600, outside the catalog) that signs audit heads in the WORM store.
    audit_signing_key: Path | None = None


@dataclass(frozen=True, slots=True)
class WorkersConfig:
    """``[workers]``: ``recorder serve --workers N`` (worker processes sharing the ingress)."""

    #: Worker processes ``recorder serve`` starts (``--workers`` overrides); 0 or 1 without
    #: ``--workers`` is the classic single process.
    count: int = 1
    #: Engagements one worker records at most; it claims streams only while below this.
    max_engagements: int = 200
    #: How often a worker with room looks for waiting streams (and the ingress wakes it at once).
    claim_interval_s: float = 0.25
    #: A worker that has not looked at the queue for this long is left out of the split (a dead
    #: or busy worker's share goes to the others); workers with room look twice as often.
    claim_grace_s: float = 1.0
    #: A worker that exits is started again after this, doubling to ``restart_max_s``.
    restart_delay_s: float = 1.0
    restart_max_s: float = 30.0


def _workers(t: _Table) -> WorkersConfig:
    d = WorkersConfig()
    restart_delay_s = t.number("restart_delay_s", d.restart_delay_s, minimum=0.0, maximum=600.0)
    restart_max_s = t.number("restart_max_s", d.restart_max_s, minimum=0.0, maximum=3600.0)
    if restart_max_s < restart_delay_s:
        raise t.error("restart_max_s", "must not be smaller than restart_delay_s")
    return WorkersConfig(
        count=t.integer("count", d.count, minimum=0, maximum=256),
        max_engagements=t.integer("max_engagements", d.max_engagements, minimum=1, maximum=100_000),
        claim_interval_s=t.number("claim_interval_s", d.claim_interval_s, minimum=0.01, maximum=60),
        claim_grace_s=t.number("claim_grace_s", d.claim_grace_s, minimum=0.0, maximum=600.0),
        restart_delay_s=restart_delay_s,
        restart_max_s=restart_max_s,
    )


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = "INFO"
    format: LogFormat = LogFormat.JSON


@dataclass(frozen=True, slots=True)
class Secrets:
    zoom_client_id: Secret | None = None
    zoom_client_secret: Secret | None = None
    #: The webhook Secret Token (verifies x-zm-signature), not the client secret.
    zoom_secret_token: Secret | None = None
    video_sdk_key: Secret | None = None
    video_sdk_secret: Secret | None = None
    postgres_password: Secret | None = None
    web_oidc_client_secret: Secret | None = None

    def require(self, *names: str) -> None:
        """Raise ``ConfigError`` naming every secret in ``names`` that is not set."""
        missing = [name for name in names if getattr(self, name) is None]
        if missing:
            sources = "; ".join(f"{name}: {' or '.join(SECRET_SOURCES[name])}" for name in missing)
            raise ConfigError(
                f"missing secrets (set them in the environment or as systemd credentials): "
                f"{sources}"
            )


#: Where each secret is read from, in precedence order (credential file names are the same).
SECRET_SOURCES: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "zoom_client_id": ("ZOOM_CLIENT_ID", "ZM_RTMS_CLIENT"),
        "zoom_client_secret": ("ZOOM_CLIENT_SECRET", "ZM_RTMS_SECRET"),
        "zoom_secret_token": ("ZOOM_SECRET_TOKEN",),
        "video_sdk_key": ("ZOOM_VIDEO_SDK_KEY",),
        "video_sdk_secret": ("ZOOM_VIDEO_SDK_SECRET",),
        "postgres_password": ("RECORDER_POSTGRES_PASSWORD",),
        "web_oidc_client_secret": ("RECORDER_WEB_OIDC_CLIENT_SECRET",),
    }
)


@dataclass(frozen=True, slots=True)
class Config:
    service: ServiceConfig
    rtms: RtmsConfig
    capture: CaptureConfig
    storage: StorageConfig
    keys: KeysConfig
    catalog: CatalogConfig
    retention: RetentionConfig
    logging: LoggingConfig
    secrets: Secrets
    #: The file this came from; None for the embedded default.
    source: Path | None = None
    #: ``[video]``: video and screen share as evidence (``recorder.video.settings``).
    video: VideoConfig = field(default_factory=VideoConfig)
    zoom: ZoomConfig = field(default_factory=lambda: ZoomConfig())
    pause: PauseConfig = field(default_factory=lambda: PauseConfig())
    web: WebConfig = field(default_factory=lambda: WebConfig())
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    completeness: CompletenessConfig = field(default_factory=lambda: CompletenessConfig())


# --- [completeness] (zoom-completeness) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompletenessConfig:
    """``[completeness]``: which meetings, engagements and calls must be recorded, whether to
    ask Zoom to start them, and when a recording counts as missing or incomplete.

    Every non-empty list must contain the announced value for a match (``queues`` applies to
    Contact Center only); an announcement that does not carry a value a list asks about does
    not match. Off by default: no expectation is recorded until ``enabled = true``.
    """

    enabled: bool = False
    #: Ask Zoom to start RTMS for matching announcements (needs an RTMS controller).
    auto_start: bool = False
    products: tuple[Product, ...] = tuple(Product)
    accounts: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    #: No finding before an expectation is this old (RTMS may start a little after).
    grace_s: float = 300.0
    late_start_s: float = 30.0
    early_end_s: float = 30.0
    max_gap_s: float = 30.0
    reconcile_interval_s: float = 60.0
    #: Expectations older than this are not reconciled again (their findings stay).
    reconcile_window_s: float = 7 * 86400.0
    start_attempts: int = 3
    start_backoff_s: float = 1.0
    enrich: bool = True
    enrich_attempts: int = 8
    enrich_backoff_s: float = 30.0
    enrich_backoff_max_s: float = 3600.0
    enrich_interval_s: float = 10.0


def _completeness(t: _Table) -> CompletenessConfig:
    d = CompletenessConfig()
    return CompletenessConfig(
        enabled=t.boolean("enabled", d.enabled),
        auto_start=t.boolean("auto_start", d.auto_start),
        products=t.choices("products", d.products, Product),
        accounts=t.strings("accounts", d.accounts),
        queues=t.strings("queues", d.queues),
        users=t.strings("users", d.users),
        grace_s=t.number("grace_s", d.grace_s, minimum=0),
        late_start_s=t.number("late_start_s", d.late_start_s, minimum=0),
        early_end_s=t.number("early_end_s", d.early_end_s, minimum=0),
        max_gap_s=t.number("max_gap_s", d.max_gap_s, minimum=0),
        reconcile_interval_s=t.number("reconcile_interval_s", d.reconcile_interval_s, minimum=0.01),
        reconcile_window_s=t.number("reconcile_window_s", d.reconcile_window_s, minimum=60),
        start_attempts=t.integer("start_attempts", d.start_attempts, minimum=1, maximum=10),
        start_backoff_s=t.number("start_backoff_s", d.start_backoff_s, minimum=0, maximum=60),
        enrich=t.boolean("enrich", d.enrich),
        enrich_attempts=t.integer("enrich_attempts", d.enrich_attempts, minimum=1, maximum=100),
        enrich_backoff_s=t.number("enrich_backoff_s", d.enrich_backoff_s, minimum=0.01),
        enrich_backoff_max_s=t.number("enrich_backoff_max_s", d.enrich_backoff_max_s, minimum=0.01),
        enrich_interval_s=t.number("enrich_interval_s", d.enrich_interval_s, minimum=0.01),
    )


# --- Reading one table -------------------------------------------------------------------------


class _Table:
    """Typed reads from one TOML table; remembers which keys were read to reject the rest."""

    def __init__(self, where: str, name: str, data: Mapping[str, Any]) -> None:
        self._where = where
        self.name = name
        self._data = data
        self._read: set[str] = set()

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self._where}: [{self.name}] {key}: {problem}")

    def raw(self, key: str) -> Any:
        """The value as TOML decoded it (None when absent); the caller checks its type."""
        self._read.add(key)
        return self._data.get(key)

    _get = raw

    def string(self, key: str, default: str) -> str:
        value = self.optional_string(key)
        return default if value is None else value

    def optional_string(self, key: str) -> str | None:
        value = self._get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_toml_type(value)}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {_toml_type(value)}")
        return value

    def integer(self, key: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {_toml_type(value)}")
        return self._in_range(key, value, minimum, maximum)

    def number(
        self, key: str, default: float, *, minimum: float, maximum: float | None = None
    ) -> float:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number, got {_toml_type(value)}")
        return self._in_range(key, float(value), minimum, maximum)

    def _in_range(self, key: str, value: _N, minimum: _N, maximum: _N | None) -> _N:
        if value < minimum or (maximum is not None and value > maximum):
            upper = "" if maximum is None else f" and at most {maximum}"
            raise self.error(key, f"{value} is out of range: must be at least {minimum}{upper}")
        return value

    def choice(self, key: str, default: _E, kind: type[_E]) -> _E:
        value = self._get(key)
        if value is None:
            return default
        return self._member(key, value, kind)

    def _member(self, key: str, value: Any, kind: type[_E]) -> _E:
        allowed = [member.value for member in kind]
        if not isinstance(value, str) or value.lower() not in allowed:
            raise self.error(key, f"{value!r} is not one of {', '.join(allowed)}")
        return kind(value.lower())

    def choices(self, key: str, default: tuple[_E, ...], kind: type[_E]) -> tuple[_E, ...]:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, list) or not value:
            raise self.error(key, "expected a non-empty list of strings")
        return tuple(dict.fromkeys(self._member(key, item, kind) for item in value))

    def strings(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.error(key, "expected a list of strings")
        return tuple(value)

    def path(self, key: str, default: Path | None, *, base: Path) -> Path | None:
        value = self.optional_string(key)
        if value is None:
            return default
        if not value:
            raise self.error(key, "expected a path, got an empty string")
        return base / Path(value).expanduser()

    def table(self, key: str) -> _Table | None:
        value = self._get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.error(key, f"expected a table, got {_toml_type(value)}")
        return _Table(self._where, f"{self.name}.{key}", value)

    def finish(self) -> None:
        for key in self._data:
            if key not in self._read:
                hint = difflib.get_close_matches(key, list(self._read), n=1)
                maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise self.error(key, f"unknown key{maybe}")


_N = TypeVar("_N", int, float)


def _toml_type(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    names |= {list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


# --- Sections ----------------------------------------------------------------------------------


def _service(t: _Table) -> ServiceConfig:
    d = ServiceConfig()
    path = t.string("webhook_path", d.webhook_path)
    if not path.startswith("/"):
        raise t.error("webhook_path", f"{path!r} must start with '/'")
    dedup_retention_s = t.integer(
        "dedup_retention_s", d.dedup_retention_s, minimum=MIN_DEDUP_RETENTION_S
    )
    return ServiceConfig(
        listen_host=t.string("listen_host", d.listen_host),
        listen_port=t.integer("listen_port", d.listen_port, minimum=0, maximum=65535),
        webhook_path=path,
        max_webhook_body_bytes=t.integer(
            "max_webhook_body_bytes", d.max_webhook_body_bytes, minimum=1024, maximum=16 * _KIB**2
        ),
        replay_window_s=t.integer("replay_window_s", d.replay_window_s, minimum=1, maximum=3600),
        dedup_retention_s=dedup_retention_s,
        liveness_stale_s=t.number("liveness_stale_s", d.liveness_stale_s, minimum=0.1),
        readiness_check_timeout_s=t.number(
            "readiness_check_timeout_s", d.readiness_check_timeout_s, minimum=0.01, maximum=60
        ),
        drain_timeout_s=t.number("drain_timeout_s", d.drain_timeout_s, minimum=0),
        lease_ttl_s=t.number("lease_ttl_s", d.lease_ttl_s, minimum=1.0, maximum=3600),
        rejoin_interval_s=t.number(
            "rejoin_interval_s", d.rejoin_interval_s, minimum=0.1, maximum=3600
        ),
    )


#: Sample rates and channel counts RTMS accepts per codec (rtms-protocol §6.7).
_AUDIO_MATRIX: Final[Mapping[AudioCodecName, tuple[frozenset[int], frozenset[int]]]] = {
    AudioCodecName.L16: (frozenset({8000, 16000, 32000, 48000}), frozenset({1, 2})),
    AudioCodecName.OPUS: (frozenset({48000}), frozenset({1, 2})),
    AudioCodecName.G711: (frozenset({8000}), frozenset({1})),
    AudioCodecName.G722: (frozenset({16000}), frozenset({1})),
}


def _handshake_id_keys(t: _Table) -> Mapping[Product, str]:
    keys = dict(INSTANCE_ID_KEYS)
    sub = t.table("handshake_id_key")
    if sub is not None:
        allowed = tuple(INSTANCE_ID_KEYS.values())
        for product in Product:
            value = sub.optional_string(product.value)
            if value is None:
                continue
            if value not in allowed:
                raise sub.error(product.value, f"{value!r} is not one of {', '.join(allowed)}")
            keys[product] = value
        sub.finish()
    return MappingProxyType(keys)


def _audio_choice(t: _Table, default: AudioChoice, *, prefix: str) -> AudioChoice:
    """Audio media params from ``t``: the flat ``audio_*`` keys of ``[rtms]`` (``prefix``
    ``"audio_"``) or the short keys of a ``[rtms.audio.<product>]`` table (``prefix`` ``""``)."""
    codec = t.choice(f"{prefix}codec", default.codec, AudioCodecName)
    rates, channel_counts = _AUDIO_MATRIX[codec]
    default_rate = default.sample_rate_hz if default.sample_rate_hz in rates else min(rates)
    rate = t.integer(f"{prefix}sample_rate_hz", default_rate, minimum=1)
    if rate not in rates:
        raise t.error(
            f"{prefix}sample_rate_hz",
            f"{codec} supports {', '.join(str(r) for r in sorted(rates))} Hz, not {rate}",
        )
    default_channels = default.channels if default.channels in channel_counts else 1
    channels = t.integer(f"{prefix}channels", default_channels, minimum=1, maximum=2)
    if channels not in channel_counts:
        raise t.error(f"{prefix}channels", f"{codec} is mono only")
    default_packet = default.packet_ms if codec is AudioCodecName.L16 else 20
    packet_ms = t.integer(f"{prefix}packet_ms", default_packet, minimum=20, maximum=1000)
    if packet_ms % 20 or (codec is not AudioCodecName.L16 and packet_ms != 20):
        raise t.error(
            f"{prefix}packet_ms", "must be 20 (L16 also takes multiples of 20 up to 1000)"
        )
    return AudioChoice(
        codec=codec,
        sample_rate_hz=rate,
        channels=channels,
        packet_ms=packet_ms,
        per_speaker=t.boolean("per_speaker", default.per_speaker),
    )


def _audio_by_product(t: _Table, default: AudioChoice) -> Mapping[Product, AudioChoice]:
    sub = t.table("audio")
    if sub is None:
        return MappingProxyType({})
    chosen: dict[Product, AudioChoice] = {}
    for product in Product:
        table = sub.table(product.value)
        if table is not None:
            chosen[product] = _audio_choice(table, default, prefix="")
            table.finish()
    sub.finish()
    return MappingProxyType(chosen)


def _rtms(t: _Table) -> RtmsConfig:
    d = RtmsConfig()
    audio = _audio_choice(t, d.audio, prefix="audio_")
    backoff_initial_s = t.number("backoff_initial_s", d.backoff_initial_s, minimum=0.01)
    backoff_max_s = t.number("backoff_max_s", d.backoff_max_s, minimum=0.01)
    if backoff_max_s < backoff_initial_s:
        raise t.error("backoff_max_s", "must not be smaller than backoff_initial_s")
    hosts = t.strings("allowed_hosts", d.allowed_hosts)
    for host in hosts:
        if not host or "/" in host or ":" in host or "*" in host.removeprefix("*."):
            raise t.error("allowed_hosts", f"{host!r} is not a host name or '*.domain'")
    return RtmsConfig(
        allowed_hosts=tuple(host.lower() for host in hosts),
        allow_insecure_loopback=t.boolean("allow_insecure_loopback", d.allow_insecure_loopback),
        media=t.choices("media", d.media, MediaKind),
        audio=audio,
        audio_by_product=_audio_by_product(t, audio),
        handshake_id_keys=_handshake_id_keys(t),
        backoff_initial_s=backoff_initial_s,
        backoff_max_s=backoff_max_s,
        connect_timeout_s=t.number("connect_timeout_s", d.connect_timeout_s, minimum=0.1),
        keepalive_watchdog_s=t.number("keepalive_watchdog_s", d.keepalive_watchdog_s, minimum=0.1),
    )


def _source_or_int(t: _Table, key: str, allowed: frozenset[int]) -> int | None:
    """``"source"`` (or absent) keeps what RTMS sends; a number converts to it."""
    value = t.raw(key)
    if value is None or value == "source":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        choices = ", ".join(map(str, sorted(allowed)))
        raise t.error(key, f'{value!r}: expected "source" or one of {choices}')
    return value


def _capture(t: _Table) -> CaptureConfig:
    d = CaptureConfig()
    return CaptureConfig(
        output_sample_rate_hz=_source_or_int(
            t, "output_sample_rate_hz", frozenset({8000, 16000, 32000, 44100, 48000})
        ),
        output_channels=_source_or_int(t, "output_channels", frozenset({1, 2})),
        segment_seconds=t.integer("segment_seconds", d.segment_seconds, minimum=1, maximum=3600),
        checkpoint_interval_s=t.number(
            "checkpoint_interval_s", d.checkpoint_interval_s, minimum=0.05, maximum=1.0
        ),
        retire_after_s=t.number("retire_after_s", d.retire_after_s, minimum=0.0, maximum=86400.0),
    )


def _key_prefix(t: _Table, default: str) -> str:
    """``[storage.s3] prefix``: prepended to every object key; empty or ``a/b/`` style."""
    prefix = t.string("prefix", default)
    if prefix and (not prefix.endswith("/") or prefix.startswith("/") or "//" in prefix):
        raise t.error("prefix", 'must be empty or like "tenant/" (no leading "/", ends in "/")')
    return prefix


def _s3(t: _Table | None) -> S3Config | None:
    if t is None:
        return None
    bucket = t.optional_string("bucket")
    if not bucket:
        raise t.error("bucket", 'is required when store = "s3"')
    d = S3Config(bucket=bucket)
    s3 = S3Config(
        bucket=bucket,
        region=t.optional_string("region"),
        endpoint_url=t.optional_string("endpoint_url"),
        prefix=_key_prefix(t, d.prefix),
        object_lock_mode=t.choice("object_lock_mode", d.object_lock_mode, ObjectLockMode),
        retention_days=t.integer("retention_days", d.retention_days, minimum=1, maximum=36500),
        verify_tls=t.boolean("verify_tls", d.verify_tls),
        bucket_self_check=t.boolean("bucket_self_check", d.bucket_self_check),
    )
    t.finish()
    return s3


def _storage(t: _Table, *, config_dir: Path, default_state_dir: Path) -> StorageConfig:
    state_dir = t.path("state_dir", default_state_dir, base=config_dir)
    assert state_dir is not None
    d = StorageConfig(state_dir=state_dir, spool_dir=state_dir / "spool")
    store = t.choice("store", d.store, StoreKind)
    spool_warn = t.integer("spool_warn_bytes", d.spool_warn_bytes, minimum=1)
    spool_limit = t.integer("spool_limit_bytes", d.spool_limit_bytes, minimum=1)
    if spool_warn > spool_limit:
        raise t.error("spool_warn_bytes", "must not be larger than spool_limit_bytes")
    local_store_path = t.path("local_store_path", state_dir / "store", base=state_dir)
    s3 = _s3(t.table("s3"))
    if store is StoreKind.S3 and s3 is None:
        raise t.error("s3", 'a [storage.s3] table is required when store = "s3"')
    return StorageConfig(
        state_dir=state_dir,
        spool_dir=t.path("spool_dir", d.spool_dir, base=state_dir) or d.spool_dir,
        spool_warn_bytes=spool_warn,
        spool_limit_bytes=spool_limit,
        upload_max_attempts=t.integer(
            "upload_max_attempts", d.upload_max_attempts, minimum=1, maximum=1000
        ),
        upload_backoff_max_s=t.number(
            "upload_backoff_max_s", d.upload_backoff_max_s, minimum=1.0, maximum=86400.0
        ),
        store=store,
        local_store_path=local_store_path if store is StoreKind.LOCAL else None,
        s3=s3 if store is StoreKind.S3 else None,
    )


def _keys(t: _Table, *, state_dir: Path) -> KeysConfig:
    provider = t.choice("provider", KeyProviderKind.LOCAL, KeyProviderKind)
    keys = KeysConfig(
        provider=provider,
        key_dir=t.path("key_dir", state_dir / "keys", base=state_dir) or state_dir / "keys",
        kms_key_id=t.optional_string("kms_key_id"),
        kms_region=t.optional_string("kms_region"),
        kms_endpoint_url=t.optional_string("kms_endpoint_url"),
        public_key_path=t.path("public_key_path", None, base=state_dir),
        escrow_public_key_path=t.path("escrow_public_key_path", None, base=state_dir),
        private_key_paths=tuple(
            state_dir / Path(item).expanduser() for item in t.strings("private_key_paths", ())
        ),
    )
    if provider is KeyProviderKind.KMS and not keys.kms_key_id:
        raise t.error("kms_key_id", 'is required when provider = "kms"')
    if provider is KeyProviderKind.PUBLIC and keys.public_key_path is None:
        raise t.error("public_key_path", 'is required when provider = "public"')
    return keys


def _catalog(t: _Table, *, state_dir: Path) -> CatalogConfig:
    kind = t.choice("kind", CatalogKind.SQLITE, CatalogKind)
    sqlite_path = t.path("sqlite_path", state_dir / "catalog.sqlite3", base=state_dir)
    dsn = t.optional_string("postgres_dsn")
    if kind is CatalogKind.POSTGRES:
        if not dsn:
            raise t.error("postgres_dsn", 'is required when kind = "postgres"')
        if _dsn_has_password(t, dsn):
            raise t.error(
                "postgres_dsn",
                "must not contain a password; set RECORDER_POSTGRES_PASSWORD (or a systemd "
                "credential of that name, or ~/.pgpass) instead",
            )
        return CatalogConfig(kind=kind, postgres_dsn=dsn)
    return CatalogConfig(kind=kind, sqlite_path=sqlite_path)


def _dsn_has_password(t: _Table, dsn: str) -> bool:
    # psycopg parses both URL and key=value forms; the message never echoes the DSN.
    from psycopg import conninfo
    from psycopg.errors import ProgrammingError

    try:
        return "password" in conninfo.conninfo_to_dict(dsn)
    except ProgrammingError as exc:
        raise t.error("postgres_dsn", "not a valid libpq connection string") from exc


def _logging(t: _Table) -> LoggingConfig:
    d = LoggingConfig()
    level = t.string("level", d.level).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise t.error("level", f"{level!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    return LoggingConfig(level=level, format=t.choice("format", d.format, LogFormat))


# --- Zoom REST API and RTMS pauses (zoom-control) ----------------------------------------------

#: Zoom's production hosts for the REST API and Server-to-Server OAuth.
ZOOM_API_BASE_URL: Final = "https://api.zoom.us"
ZOOM_OAUTH_BASE_URL: Final = "https://zoom.us"


@dataclass(frozen=True, slots=True)
class ZoomConfig:
    """``[zoom]``: the REST client (Server-to-Server OAuth; client id and secret are the
    ``zoom_client_id`` / ``zoom_client_secret`` secrets, never in the file)."""

    api_base_url: str = ZOOM_API_BASE_URL
    oauth_base_url: str = ZOOM_OAUTH_BASE_URL
    #: The Zoom account of the Server-to-Server OAuth app (not a secret); else ``ZOOM_ACCOUNT_ID``.
    account_id: str | None = None
    #: Allow ``http://`` to 127.0.0.1 / ::1 / localhost: tests and the simulator only.
    allow_insecure_loopback: bool = False
    timeout_s: float = 10.0
    #: Attempts per request after the first (5xx, network errors, 429).
    max_retries: int = 3
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 8.0
    #: A ``Retry-After`` longer than this is not waited for: the request fails with 429.
    retry_after_max_s: float = 60.0
    #: A token is refreshed this long before it expires (at most half its lifetime).
    token_refresh_margin_s: float = 60.0
    #: ``page_size`` asked of Zoom's list APIs (``recorder completeness pull``); at most 300.
    list_page_size: int = 300
    #: Pages followed per listing before the pull fails (a looping peer cannot keep it).
    list_max_pages: int = 100


@dataclass(frozen=True, slots=True)
class PauseConfig:
    """``[pause]``: pause evidence (PCI)."""

    #: A pause longer than this is flagged (``recorder.pause_too_long``).
    max_s: float = 600.0
    #: A pause seen on a stream is attributed to a request made through the recorder for the
    #: same instance at most this long before it.
    match_window_s: float = 120.0
    #: How long a stream's pause waits for the catalog to name its requester.
    lookup_timeout_s: float = 2.0


def _base_url(t: _Table, key: str, default: str, *, insecure_loopback: bool) -> str:
    from urllib.parse import urlsplit

    url = t.string(key, default).rstrip("/")
    parts = urlsplit(url)
    loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and loopback and insecure_loopback:
        return url
    raise t.error(
        key,
        f"{url!r} must be an https:// URL (http:// only to loopback with "
        "allow_insecure_loopback = true)",
    )


def _zoom(t: _Table) -> ZoomConfig:
    d = ZoomConfig()
    insecure = t.boolean("allow_insecure_loopback", d.allow_insecure_loopback)
    backoff_initial_s = t.number("backoff_initial_s", d.backoff_initial_s, minimum=0.0)
    backoff_max_s = t.number("backoff_max_s", d.backoff_max_s, minimum=0.0, maximum=600.0)
    if backoff_max_s < backoff_initial_s:
        raise t.error("backoff_max_s", "must not be smaller than backoff_initial_s")
    return ZoomConfig(
        api_base_url=_base_url(t, "api_base_url", d.api_base_url, insecure_loopback=insecure),
        oauth_base_url=_base_url(t, "oauth_base_url", d.oauth_base_url, insecure_loopback=insecure),
        account_id=t.optional_string("account_id") or None,
        allow_insecure_loopback=insecure,
        timeout_s=t.number("timeout_s", d.timeout_s, minimum=0.1, maximum=300.0),
        max_retries=t.integer("max_retries", d.max_retries, minimum=0, maximum=10),
        backoff_initial_s=backoff_initial_s,
        backoff_max_s=backoff_max_s,
        retry_after_max_s=t.number(
            "retry_after_max_s", d.retry_after_max_s, minimum=0.0, maximum=3600.0
        ),
        token_refresh_margin_s=t.number(
            "token_refresh_margin_s", d.token_refresh_margin_s, minimum=0.0, maximum=3600.0
        ),
        list_page_size=t.integer("list_page_size", d.list_page_size, minimum=1, maximum=300),
        list_max_pages=t.integer("list_max_pages", d.list_max_pages, minimum=1, maximum=10000),
    )


def _pause(t: _Table) -> PauseConfig:
    d = PauseConfig()
    return PauseConfig(
        max_s=t.number("max_s", d.max_s, minimum=1.0, maximum=86400.0),
        match_window_s=t.number("match_window_s", d.match_window_s, minimum=1.0, maximum=3600.0),
        lookup_timeout_s=t.number(
            "lookup_timeout_s", d.lookup_timeout_s, minimum=0.01, maximum=30.0
        ),
    )


# --- [web]: the officers' console (``recorder web``; recorder/web/) ----------------------------


@dataclass(frozen=True, slots=True)
class WebConfig:
    #: ``host:port``; plain HTTP only on a loopback host (else ``tls_cert`` and ``tls_key``).
    bind: str = "127.0.0.1:8090"
    #: The URL officers type (OIDC redirect URI base; printed at start). Default: from ``bind``.
    public_url: str | None = None
    session_minutes: int = 480
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: OpenID Connect: issuer URL (discovery at ``/.well-known/openid-configuration``) and
    #: client id; the client secret comes from ``RECORDER_WEB_OIDC_CLIENT_SECRET``.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.bind.rpartition(":")
        return host.strip("[]"), int(port)


def _web(t: _Table, *, state_dir: Path) -> WebConfig:
    d = WebConfig()
    bind = t.string("bind", d.bind)
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise t.error("bind", f"{bind!r} is not host:port")
    public_url = t.optional_string("public_url")
    if public_url is not None and not public_url.startswith(("https://", "http://")):
        raise t.error("public_url", f"{public_url!r} is not an http(s) URL")
    issuer = t.optional_string("oidc_issuer")
    loopback = ("http://127.0.0.1", "http://localhost", "http://[::1]")
    if issuer is not None and not issuer.startswith(("https://", *loopback)):
        raise t.error("oidc_issuer", f"{issuer!r}: an OIDC issuer must be https://")
    client_id = t.optional_string("oidc_client_id")
    if (issuer is None) != (client_id is None):
        raise t.error("oidc_client_id", "oidc_issuer and oidc_client_id go together")
    cert = t.path("tls_cert", None, base=state_dir)
    key = t.path("tls_key", None, base=state_dir)
    if (cert is None) != (key is None):
        raise t.error("tls_key", "tls_cert and tls_key go together")
    return WebConfig(
        bind=bind,
        public_url=public_url.rstrip("/") if public_url else None,
        session_minutes=t.integer("session_minutes", d.session_minutes, minimum=5, maximum=1440),
        tls_cert=cert,
        tls_key=key,
        oidc_issuer=issuer,
        oidc_client_id=client_id,
    )


# --- Secrets -----------------------------------------------------------------------------------


def _read_credential(directory: Path, name: str) -> str | None:
    path = directory / name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"credential {name}: cannot read {path}: {type(exc).__name__}") from exc
    # Files written with `echo` end with a newline that is not part of the secret.
    return text.strip() or None


def load_secrets(environ: Mapping[str, str]) -> Secrets:
    """Read every secret from systemd credentials, then the environment (see module docs)."""
    credentials_dir = environ.get("CREDENTIALS_DIRECTORY")
    sources: list[tuple[str, Callable[[str], str | None]]] = []
    if credentials_dir:
        directory = Path(credentials_dir)
        sources.append(("credential", lambda name: _read_credential(directory, name)))
    sources.append(("environment variable", lambda name: environ.get(name) or None))
    values: dict[str, Secret] = {}
    for attribute, names in SECRET_SOURCES.items():
        for source, read in sources:
            found = {name: value for name in names if (value := read(name)) is not None}
            if len(set(found.values())) > 1:
                raise ConfigError(
                    f"{source}s {' and '.join(found)} are both set and differ; set only one"
                )
            if found:
                values[attribute] = Secret(next(iter(found.values())))
                break
    return Secrets(**values)


# --- Loading -----------------------------------------------------------------------------------


def default_state_dir(environ: Mapping[str, str]) -> Path:
    """Where the embedded default keeps everything (systemd's StateDirectory when present)."""
    systemd_state = environ.get("STATE_DIRECTORY")
    if systemd_state:
        # systemd passes a colon-separated list when the unit names several directories.
        return Path(systemd_state.split(":")[0])
    xdg = environ.get("XDG_STATE_HOME")
    if xdg:
        return Path(xdg) / "rtms-recorder"
    home = environ.get("HOME")
    base = Path(home) if home else Path.home()
    return base / ".local" / "state" / "rtms-recorder"


_SECTIONS: Final = (
    "service",
    "rtms",
    "capture",
    "storage",
    "keys",
    "catalog",
    "retention",
    "logging",
    "video",
    "zoom",
    "pause",
    "web",
    "workers",
    "completeness",
)


def parse_config(
    data: Mapping[str, Any], *, where: str, config_dir: Path, environ: Mapping[str, str]
) -> Config:
    """Build a ``Config`` from decoded TOML ``data``; ``where`` names the source in errors."""
    for name, value in data.items():
        if name not in _SECTIONS:
            hint = difflib.get_close_matches(name, _SECTIONS, n=1)
            maybe = f" (did you mean [{hint[0]}]?)" if hint else ""
            raise ConfigError(f"{where}: [{name}]: unknown section{maybe}")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {name}: expected a [{name}] table")

    def table(name: str) -> _Table:
        return _Table(where, name, data.get(name, {}))

    tables = {name: table(name) for name in _SECTIONS}
    storage = _storage(
        tables["storage"], config_dir=config_dir, default_state_dir=default_state_dir(environ)
    )
    state_dir = storage.state_dir
    retention_table = tables["retention"]
    policies_dir = retention_table.path("policies_dir", state_dir / "policies", base=state_dir)
    assert policies_dir is not None
    audit_key = retention_table.path(
        "audit_signing_key", state_dir / "audit-signing.key", base=state_dir
    )
    config = Config(
        service=_service(tables["service"]),
        rtms=_rtms(tables["rtms"]),
        capture=_capture(tables["capture"]),
        storage=storage,
        keys=_keys(tables["keys"], state_dir=state_dir),
        catalog=_catalog(tables["catalog"], state_dir=state_dir),
        retention=RetentionConfig(policies_dir=policies_dir, audit_signing_key=audit_key),
        logging=_logging(tables["logging"]),
        secrets=load_secrets(environ),
        video=parse_video(tables["video"]),
        zoom=_zoom(tables["zoom"]),
        pause=_pause(tables["pause"]),
        web=_web(tables["web"], state_dir=state_dir),
        workers=_workers(tables["workers"]),
        completeness=_completeness(tables["completeness"]),
    )
    for t in tables.values():
        t.finish()
    return config


def for_demo(config: Config) -> Config:
    """``config`` with RTMS allowed over ``ws://`` to this host: the built-in simulator's setup.

    Only ``recorder demo`` and tests call this; no file can turn it on for loopback hosts
    without also setting ``allow_insecure_loopback`` explicitly.
    """
    hosts = tuple(dict.fromkeys((*config.rtms.allowed_hosts, "127.0.0.1", "::1", "localhost")))
    rtms = replace(config.rtms, allow_insecure_loopback=True, allowed_hosts=hosts)
    return replace(config, rtms=rtms)


def load_config(path: Path | None, environ: Mapping[str, str]) -> Config:
    """Load the TOML file at ``path``, or the embedded default when ``path`` is None.

    Raises:
        ConfigError: the file is missing, unreadable or invalid, or a secret source conflicts.
            The message names the file, the ``[section] key`` and what is wrong.
    """
    if path is None:
        return parse_config({}, where="<embedded default>", config_dir=Path.cwd(), environ=environ)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or type(exc).__name__}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    config = parse_config(data, where=str(path), config_dir=path.parent.resolve(), environ=environ)
    return replace(config, source=path)
