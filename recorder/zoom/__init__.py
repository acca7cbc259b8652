"""Zoom's REST APIs: what the recorder asks of Zoom and what it learns from it."""
