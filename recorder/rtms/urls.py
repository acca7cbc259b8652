"""Which RTMS URLs the client may connect to, and which media URL serves which media (pure).

Invariant 7 of DESIGN.md: RTMS URLs must be ``wss://`` on an allowed host list. Plain ``ws://``
and loopback hosts are accepted only when ``allow_insecure_loopback`` is set (tests, demo).
Errors name the scheme and host of a refused URL, never its path or query, which may carry
tokens.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from recorder.errors import UrlNotAllowed
from recorder.rtms._enums import MEDIA_KEYS, MediaType

#: Zoom's RTMS servers live under these domains (and their subdomains).
DEFAULT_ALLOWED_HOSTS: Final = ("zoom.us", "zoom.com", "zoomgov.com")

_LOOPBACK_NAMES: Final = frozenset({"localhost"})


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_allowed(host: str, allowed_hosts: Iterable[str]) -> bool:
    for allowed in allowed_hosts:
        allowed = allowed.lower().lstrip(".")
        if host == allowed or host.endswith("." + allowed):
            return True
    return False


def check_url(url: str, *, allowed_hosts: Iterable[str], allow_insecure_loopback: bool) -> str:
    """Return ``url`` unchanged when policy allows it, else raise ``UrlNotAllowed``."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018  (raises ValueError on a malformed port)
    except ValueError as exc:
        raise UrlNotAllowed("RTMS URL is malformed") from exc
    scheme = parts.scheme.lower()
    where = f"scheme={scheme or '?'} host={host or '?'}"
    if not host:
        raise UrlNotAllowed(f"RTMS URL has no host ({where})")
    if _is_loopback(host):
        if allow_insecure_loopback and scheme in ("ws", "wss"):
            return url.strip()
        raise UrlNotAllowed(f"RTMS URL on loopback needs allow_insecure_loopback ({where})")
    if scheme != "wss":
        raise UrlNotAllowed(f"RTMS URL must use wss:// ({where})")
    if not _host_allowed(host, allowed_hosts):
        raise UrlNotAllowed(f"RTMS URL host is not on the allowed list ({where})")
    return url.strip()


def split_server_urls(value: str) -> tuple[str, ...]:
    """The webhook's ``server_urls`` is one string with comma-separated URLs (§13.23)."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


class SocketLayout(enum.Enum):
    #: One media socket per media type (Zoom's helper default, what the SDK does).
    PER_TYPE = "per_type"
    #: One ``all`` socket carrying every media type (``media_type`` 32).
    ALL = "all"


@dataclass(frozen=True, slots=True)
class MediaSocketPlan:
    """One media socket to open: its name (the server_urls key), URL and ``media_type`` flags."""

    name: str
    url: str
    media_type: int
    #: The single media kinds this socket carries (``audio``, ``transcript``...).
    carries: tuple[str, ...]


def plan_media_sockets(
    server_urls: Mapping[str, str],
    wanted: MediaType,
    layout: SocketLayout,
    *,
    prefer_audio_url: bool = False,
) -> tuple[MediaSocketPlan, ...]:
    """Map the signaling answer's ``media_server.server_urls`` onto sockets.

    ``prefer_audio_url`` is for contact center, where Zoom's helper uses ``audio`` over ``all``
    (§2). A media kind without its own URL falls back to the ``all`` socket; kinds the server did
    not offer at all are left out (the app lacks the scope).
    """
    kinds = [flag for flag in MEDIA_KEYS if flag is not MediaType.ALL and flag & wanted]
    all_url = server_urls.get("all")
    if (
        layout is SocketLayout.ALL
        and all_url is not None
        and not (prefer_audio_url and "audio" in server_urls and wanted == MediaType.AUDIO)
    ):
        carried = tuple(MEDIA_KEYS[flag] for flag in kinds)
        return (MediaSocketPlan("all", all_url, int(MediaType.ALL), carried),)
    plans: list[MediaSocketPlan] = []
    leftovers: list[MediaType] = []
    for flag in kinds:
        key = MEDIA_KEYS[flag]
        url = server_urls.get(key)
        if url is None:
            leftovers.append(flag)
        else:
            plans.append(MediaSocketPlan(key, url, int(flag), (key,)))
    if leftovers and all_url is not None and not plans:
        carried = tuple(MEDIA_KEYS[flag] for flag in leftovers)
        plans.append(MediaSocketPlan("all", all_url, int(MediaType.ALL), carried))
    return tuple(plans)


__all__ = [
    "DEFAULT_ALLOWED_HOSTS",
    "MediaSocketPlan",
    "SocketLayout",
    "check_url",
    "plan_media_sockets",
    "split_server_urls",
]
