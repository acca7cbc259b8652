"""RTMS: the wire protocol (sans-IO), signatures, webhooks, and the trio client."""

from __future__ import annotations
