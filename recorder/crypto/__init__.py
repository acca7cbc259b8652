"""Encryption at rest: the chunked streaming AEAD file format, key providers, crash recovery."""

from __future__ import annotations
