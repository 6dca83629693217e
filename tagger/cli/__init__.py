"""The ``tagger`` command: ``commands`` (:func:`main`, one small function per subcommand),
``overrides`` and ``review`` (the subcommands for override rules and for the annotators'
review and Label Studio round trip)."""

from __future__ import annotations

from .._lazy import lazy_exports

__all__ = ['main']

_WHERE = {'main': 'commands'}

__getattr__ = lazy_exports(__name__, _WHERE)
