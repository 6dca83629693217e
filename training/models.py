"""Feature extractors and candidate classifiers (scikit-learn side).

Every estimator here must convert to ONNX (see training/export.py); keep to the
pieces skl2onnx/onnxmltools handle: TfidfVectorizer (word on pre-tokenised text,
char), FeatureUnion, OneVsRest over LogisticRegression or LGBMClassifier.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion

__all__ = ["FeatureConfig", "Featurizer", "fit_vectorizer", "lexicon_matrix", "build_classifier", "TOKEN_PATTERN"]

# Tokens are jieba words joined by single spaces; ONNX must split exactly the same way.
TOKEN_PATTERN = r"[^ ]+"


@dataclass(frozen=True)
class FeatureConfig:
    word_ngram: tuple[int, int] = (1, 2)
    char_ngram: tuple[int, int] = (1, 3)
    word_max_features: int = 6000
    char_max_features: int = 6000
    min_df: int = 2
    # sublinear_tf=True breaks ONNX parity (skl2onnx ignores it: max diff 0.02 measured).
    sublinear_tf: bool = False
    # One 0/1 feature per label: "a word the guide lists for this label occurs"
    # (training/keyword_rules.yaml). It carries the guide's prior knowledge to vocabulary
    # the labeled documents do not have yet (大模型 in 2023 text, when training stops at 2022).
    lexicon: bool = False
    # Marker tokens for the clause's shape (tagger.model.features.structure_markers): length
    # class, last character, the first word after a leading enumerator. Time split, logistic
    # regression, kind: accuracy 0.818 -> 0.830, macro-F1 0.777 -> 0.794; grouped CV 0.839 -> 0.846.
    structure: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def _tfidf(analyzer: str, ngram: tuple[int, int], cfg: FeatureConfig, **kw) -> TfidfVectorizer:
    # lowercase=False: lowercasing becomes an ONNX StringNormalizer with an en_US locale
    # that this kind of machine lacks; text is normalised in Python instead.
    extra = {"token_pattern": TOKEN_PATTERN} if analyzer == "word" else {}
    return TfidfVectorizer(
        analyzer=analyzer, lowercase=False, ngram_range=ngram, sublinear_tf=cfg.sublinear_tf, **extra, **kw
    )


def _closed_vocabulary(vec: TfidfVectorizer, analyzer: str) -> list[str]:
    """The selected n-grams plus every unigram they are made of.

    skl2onnx rebuilds each n-gram from its unigrams; an n-gram kept by max_features
    whose unigram was cut ('人民币' without '币') cannot be converted.
    """
    vocab = set(vec.vocabulary_)
    for gram in list(vocab):
        parts = gram.split(" ") if analyzer == "word" else list(gram)
        vocab.update(p for p in parts if p)
    return sorted(vocab)


class Featurizer:
    """TF-IDF features (a FeatureUnion that converts to ONNX as it is), optionally followed
    by the lexicon block: counts of the guide's words (a char vectoriser with a fixed
    vocabulary, last in the union) times a word -> label matrix, clipped at 1.

    The same arithmetic is appended to the ONNX graph by training/export.py.
    """

    def __init__(self, union: FeatureUnion, lexicon: np.ndarray | None = None, lexicon_columns: tuple[int, int] | None = None):
        self.union, self.lexicon, self.lexicon_columns = union, lexicon, lexicon_columns

    def transform(self, texts):
        X = self.union.transform(texts).tocsr()
        if self.lexicon is None:
            return X
        # The raw word counts are dropped: unscaled counts (a character seen 40 times)
        # next to TF-IDF values make liblinear crawl; the model sees only the 0/1 flags.
        a, b = self.lexicon_columns
        L = (X[:, a:b] @ sparse.csr_matrix(self.lexicon)).tocsr()
        L.data = np.minimum(L.data, 1.0)
        return sparse.hstack([X[:, :a], L], format="csr")

    @property
    def n_features(self) -> int:
        if self.lexicon is None:
            return sum(len(v.vocabulary_) for _, v in self.union.transformer_list)
        return self.lexicon_columns[0] + self.lexicon.shape[1]


def lexicon_matrix(rules: dict, label_order: list[tuple[str, str]]) -> tuple[list[str], np.ndarray]:
    """Vocabulary (the words plus the characters they are made of: ONNX rebuilds n-grams from
    unigrams) and the word -> (head, label) 0/1 matrix."""
    words = sorted({w for h, l in label_order for w in rules.get(h, {}).get(l, [])})
    vocab = sorted(set(words) | {c for w in words for c in w})
    index = {v: i for i, v in enumerate(vocab)}
    M = np.zeros((len(vocab), len(label_order)), dtype=np.float32)
    for j, (h, l) in enumerate(label_order):
        for w in rules.get(h, {}).get(l, []):
            M[index[w], j] = 1.0
    return vocab, M


def fit_vectorizer(cfg: FeatureConfig, texts, label_order: list[tuple[str, str]] | None = None) -> Featurizer:
    """Fit word + char TF-IDF on pre-tokenised texts; vocabularies sized by ``cfg``."""
    parts = []
    for name, ngram, cap in (("word", cfg.word_ngram, cfg.word_max_features), ("char", cfg.char_ngram, cfg.char_max_features)):
        picker = _tfidf(name, ngram, cfg, min_df=cfg.min_df, max_features=cap).fit(texts)
        final = _tfidf(name, ngram, cfg, vocabulary=_closed_vocabulary(picker, name)).fit(texts)
        parts.append((name, final))
    if not cfg.lexicon:
        return Featurizer(FeatureUnion(parts))
    from .evaluate import load_keyword_rules

    if label_order is None:
        from tagger.taxonomy import HEADS, load_taxonomy
        from tagger.config import get_settings

        tax = load_taxonomy(get_settings().taxonomy_file)
        label_order = [(h, l) for h in HEADS for l in tax.labels[h]]
    vocab, M = lexicon_matrix(load_keyword_rules(), label_order)
    lex = TfidfVectorizer(analyzer="char", lowercase=False, ngram_range=(1, max(map(len, vocab))), vocabulary=vocab,
                          use_idf=False, norm=None).fit(texts)
    parts.append(("lexicon", lex))
    start = sum(len(v.vocabulary_) for _, v in parts[:-1])
    return Featurizer(FeatureUnion(parts), M, (start, start + len(vocab)))


def build_classifier(kind: str, seed: int = 0):
    if kind == "logreg":
        base = LogisticRegression(C=8.0, class_weight="balanced", solver="liblinear", max_iter=2000, random_state=seed)
    elif kind == "lgbm":
        from lightgbm import LGBMClassifier

        base = LGBMClassifier(
            # Sized so that a full grouped CV + final fit stays well under 10 minutes on 2 cores.
            n_estimators=60,
            learning_rate=0.15,
            num_leaves=15,
            min_child_samples=5,
            colsample_bytree=0.2,
            max_bin=63,
            force_col_wise=True,
            deterministic=True,
            subsample=0.9,
            subsample_freq=1,
            reg_lambda=1.0,
            scale_pos_weight=3.0,
            random_state=seed,
            # One thread per model, labels fitted in parallel (OneVsRest n_jobs): LightGBM's
            # own threading scales poorly on these small sparse problems (measured 1.6x).
            n_jobs=1,
            verbose=-1,
        )
        return OneVsRestClassifier(base, n_jobs=2)
    else:
        raise ValueError(f"unknown classifier kind {kind!r}")
    return OneVsRestClassifier(base)

