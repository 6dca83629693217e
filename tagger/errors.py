"""Named exceptions; each builds its own one-line message."""

from __future__ import annotations

__all__ = ["TaggerError", "UnreadableDocument", "InvalidBundle", "InvalidInput"]


class TaggerError(Exception):
    """Base class: ``str(exc)`` is a one-line message fit for stderr or an HTTP body."""


class UnreadableDocument(TaggerError):
    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class InvalidBundle(TaggerError):
    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"model bundle {path} is unusable: {reason}")


class InvalidInput(TaggerError):
    def __init__(self, where: str, reason: str):
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")
