"""The RTMS handshake signature (rtms-protocol.md §7.1, vectors in §12.1), and product keys.

``signature = hex(HMAC_SHA256(key=client_secret, msg=f"{client_id},{instance_id},{stream_id}"))``

The ids are used exactly as the webhook delivered them: meeting UUIDs may contain ``/``, ``+``
and ``=`` and are never URL-encoded here. Video SDK sessions sign with the SDK key and secret.

``Product`` is the one defined by the webhook module (the event prefix names the product); it is
re-exported here with the per-product keys the handshakes need.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Final

from recorder.products import INSTANCE_ID_KEYS as INSTANCE_ID_KEYS
from recorder.products import WEBHOOK_EVENT_PREFIXES as WEBHOOK_EVENT_PREFIXES
from recorder.products import Product as Product

#: The key naming the instance in webhooks and, by default, in the handshakes (§2.3, §14.1).
#: Webhook event-name prefixes: ``meeting.rtms_started``, ``contact_center.voice_rtms_started``.
_LOWER_HEX_SHA256: Final = re.compile(r"[0-9a-f]{64}")


def instance_id_key(product: Product) -> str:
    return INSTANCE_ID_KEYS[product]


def webhook_event_prefix(product: Product) -> str:
    return WEBHOOK_EVENT_PREFIXES[product]


def handshake_signature(
    client_id: str, client_secret: str, instance_id: str, rtms_stream_id: str
) -> str:
    """Lowercase hex HMAC-SHA256 of ``"client_id,instance_id,rtms_stream_id"``."""
    message = f"{client_id},{instance_id},{rtms_stream_id}".encode()
    return hmac.new(client_secret.encode(), message, hashlib.sha256).hexdigest()


def verify_handshake_signature(
    signature: str,
    client_id: str,
    client_secret: str,
    instance_id: str,
    rtms_stream_id: str,
) -> bool:
    """Constant-time check; only the 64-character lowercase hex form is accepted (§7.2)."""
    if not isinstance(signature, str) or _LOWER_HEX_SHA256.fullmatch(signature) is None:
        return False
    expected = handshake_signature(client_id, client_secret, instance_id, rtms_stream_id)
    return hmac.compare_digest(expected, signature)


__all__ = [
    "INSTANCE_ID_KEYS",
    "WEBHOOK_EVENT_PREFIXES",
    "Product",
    "handshake_signature",
    "instance_id_key",
    "verify_handshake_signature",
    "webhook_event_prefix",
]
