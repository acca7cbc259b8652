"""The recorder service: webhook ingress, engagement supervisor, health and metrics."""

from __future__ import annotations
