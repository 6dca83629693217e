"""Named exceptions; each builds its own one-line message."""

from __future__ import annotations

__all__ = ["TaggerError", "UnreadableDocument", "InvalidBundle", "InvalidInput"]


class TaggerError(Exception):
    """Base class: ``str(exc)`` is a one-line message fit for stderr or an HTTP body."""

    def __reduce__(self):
        # Raised in worker processes (CLI pool, API workers, Spark executors). The default
        # pickling calls ``cls(message)``, which fails for subclasses taking (path, reason):
        # rebuild from the message and the attributes instead.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type, args: tuple, state: dict) -> TaggerError:
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


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
