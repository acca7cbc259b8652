"""What compliance officers do: search, show, verify and export recordings (every read audited)."""

from __future__ import annotations
