"""The Zoom products an RTMS stream can belong to, and the names each one uses on the wire.

One enum for the whole package: webhooks, handshakes, the catalog and the simulator all speak of
the same five products (rtms-protocol §2.3, Zoom Phone from §16).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final


class Product(enum.StrEnum):
    """The Zoom product an RTMS stream belongs to (the webhook event's prefix)."""

    MEETING = "meeting"
    WEBINAR = "webinar"
    #: Video SDK sessions (signed with the SDK key/secret, §7.1).
    SESSION = "session"
    CONTACT_CENTER = "contact_center"
    #: Zoom Phone calls (rtms-protocol §16): ``call_id`` names the call.
    PHONE = "phone"

    @property
    def id_key(self) -> str:
        """The instance-id key in webhooks and, by default, handshakes."""
        return INSTANCE_ID_KEYS[self]

    @property
    def webhook_prefix(self) -> str:
        """``meeting.`` ... ``contact_center.voice_``: what comes before ``rtms_started``."""
        return WEBHOOK_EVENT_PREFIXES[self]

    @property
    def is_voice_call(self) -> bool:
        """A telephone call (Contact Center, Phone): audio and transcript only, one track per
        ``channel_id`` (caller and callee legs), events in the voice namespace (§6.11)."""
        return self in VOICE_CALL_PRODUCTS


#: The instance-id key of each product in webhooks and handshakes.
INSTANCE_ID_KEYS: Final[Mapping[Product, str]] = MappingProxyType(
    {
        Product.MEETING: "meeting_uuid",
        Product.WEBINAR: "webinar_uuid",
        Product.SESSION: "session_id",
        Product.CONTACT_CENTER: "engagement_id",
        Product.PHONE: "call_id",
    }
)

#: Webhook event names are ``<prefix>rtms_started`` and so on.
WEBHOOK_EVENT_PREFIXES: Final[Mapping[Product, str]] = MappingProxyType(
    {
        Product.MEETING: "meeting.",
        Product.WEBINAR: "webinar.",
        Product.SESSION: "session.",
        Product.CONTACT_CENTER: "contact_center.voice_",
        Product.PHONE: "phone.",
    }
)

#: Products whose streams are telephone calls (see ``Product.is_voice_call``).
VOICE_CALL_PRODUCTS: Final = frozenset({Product.CONTACT_CENTER, Product.PHONE})
