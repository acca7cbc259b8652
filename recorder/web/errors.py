"""Errors of the web console (part of the one tree: ``recorder.errors.RecorderError``)."""

from __future__ import annotations

from recorder.errors import RecorderError


class WebError(RecorderError):
    """A request the console refuses; ``status`` is the HTTP answer, the message says why."""

    status: int = 400

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class NotSignedIn(WebError):
    status = 401


class Forbidden(WebError):
    """Wrong role, missing or wrong CSRF token, or no reason given yet."""

    status = 403


class ReasonRequired(Forbidden):
    """Play, transcript and download need a reason first (once per recording and session)."""


class NotFound(WebError):
    status = 404
