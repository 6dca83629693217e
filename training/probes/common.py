"""What every time-split probe starts from (imported by the probe scripts of this folder)."""

from __future__ import annotations


def time_split_inputs():
    """The labeled dataset, each clause's document year, and the clauses as the shipped
    tokeniser (structure markers on) cuts them."""
    from tagger.config import get_settings
    from tagger.model.features import Tokenizer
    from tagger.taxonomy import load_taxonomy

    from ..data import document_years, load_dataset

    st = get_settings()
    base = load_dataset(st.clauses_file, load_taxonomy(st.taxonomy_file))
    by_doc = document_years(st.documents_dir)
    years = [by_doc.get(d) for d in base.docs]
    return base, years, Tokenizer(engine="jieba", structure=True).batch(base.texts)
