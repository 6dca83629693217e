"""Feature extractors and candidate classifiers (scikit-learn side).

Every estimator here must convert to ONNX (see training/export.py); keep to the
pieces skl2onnx/onnxmltools handle: TfidfVectorizer (word on pre-tokenised text,
char), FeatureUnion, OneVsRest over LogisticRegression or LGBMClassifier.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion

__all__ = ["FeatureConfig", "fit_vectorizer", "build_classifier", "CANDIDATES", "TOKEN_PATTERN"]

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


def fit_vectorizer(cfg: FeatureConfig, texts) -> FeatureUnion:
    """Fit word + char TF-IDF on pre-tokenised texts; vocabularies sized by ``cfg``."""
    parts = []
    for name, ngram, cap in (("word", cfg.word_ngram, cfg.word_max_features), ("char", cfg.char_ngram, cfg.char_max_features)):
        picker = _tfidf(name, ngram, cfg, min_df=cfg.min_df, max_features=cap).fit(texts)
        final = _tfidf(name, ngram, cfg, vocabulary=_closed_vocabulary(picker, name)).fit(texts)
        parts.append((name, final))
    return FeatureUnion(parts)


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
            n_jobs=2,
            verbose=-1,
        )
    else:
        raise ValueError(f"unknown classifier kind {kind!r}")
    return OneVsRestClassifier(base)


CANDIDATES = ("logreg", "lgbm")
