"""The annotators' side: labeled clauses (``labels``), what to review next
(``review``), and Label Studio tasks and exports (``labelstudio``)."""
