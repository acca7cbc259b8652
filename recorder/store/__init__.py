"""Object stores behind one interface: a local directory (embedded default) and S3."""

from __future__ import annotations
