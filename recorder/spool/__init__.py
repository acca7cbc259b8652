"""The local spool of sealed evidence and the uploader that moves it, verified, to the store."""

from __future__ import annotations
