"""The catalog: streams, leases, recordings, segments, gaps, holds and the audit log."""

from __future__ import annotations
