"""Documents in, clauses out: ``readers`` (file formats) -> ``textnorm`` -> ``repair``
(PDF line breaks) -> ``compilation`` (compiled city policies) -> ``documents``
(metadata, :class:`Document`) -> ``segment`` (clauses); ``corpus`` walks folders."""

from __future__ import annotations

from .._lazy import lazy_exports

__all__ = ['Clause', 'Document', 'document_from_text', 'load_documents']

# segment() is not re-exported: the name is its module's, which the import system sets.
_WHERE = {'Document': 'documents', 'load_documents': 'documents', 'document_from_text': 'documents', 'Clause': 'segment'}

__getattr__ = lazy_exports(__name__, _WHERE)
