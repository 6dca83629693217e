"""Evidence per tag: the few spans of a clause that contributed most to each assigned label.

Method: occlusion, which needs nothing from the model but scores, so it holds for every
head whatever it is made of (the averaged logistic + LightGBM heads included), and it is
faithful by construction: a span's weight is how much the label's probability drops when
the span is taken out.

1. The clause is cut into the model's own tokens (``tagger.tokenizer.tokens``); the full
   token string and one variant per word token with that token left out are scored in one
   batch with the other clauses of the call (``tagger.probabilities_tokens``; in groups of
   about :data:`VARIANTS_PER_CALL` strings, so that memory stays bounded).
2. Per assigned label: the (at most) :data:`MAX_SPANS` tokens whose removal lowers the
   label's probability most; adjacent chosen tokens are merged into one span; spans are
   mapped from the normalised text the tokens come from back to offsets into the
   clause's original ``text`` (a span that cannot be mapped is dropped).
3. The spans are then checked on text, as a reader would check them: each span is cut
   out of the original text and the rest re-tokenised and re-scored; its ``weight`` is
   that drop (a span whose drop is below :data:`MIN_DROP` is dropped). Finally all kept
   spans of a label are cut out together, and the evidence is kept only if that lowers
   the label's probability by at least :data:`MIN_DROP`; otherwise the label gets ``[]``.

Output per clause: ``{head: {label: [{"start", "end", "text", "weight"}, ...]}}`` with every
head present, a key for every label asked for, spans sorted by weight (descending);
``text[start:end] == span["text"]`` on the clause's original text.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np

from ..ingest.textnorm import normalize_text
from ..taxonomy import HEADS
from .features import model_text

__all__ = ["explain", "map_to_original", "remove_spans", "match_spans", "MAX_SPANS", "MIN_DROP"]

MAX_SPANS = 3
# Scores are written rounded to 6 decimals and batch composition can move the 7th: a drop
# must be clearly above that noise to count as one (and to survive re-tagging).
MIN_DROP = 1e-4
WEIGHT_DECIMALS = 4
VARIANTS_PER_CALL = 4096


@lru_cache(maxsize=4096)
def _key(ch: str) -> str:
    """What one original character becomes in :func:`model_text`'s output: itself, its
    translation (full-width digit -> ASCII), " " (any white space, newline included: lines
    are joined with spaces), or "" (zero-width characters, which normalisation deletes)."""
    n = normalize_text(ch)
    if n == "\n" or (n == "" and ch.isspace()):
        return " "
    return n


def map_to_original(text: str) -> tuple[str, list[int] | None]:
    """``(model_text(text), pos)`` where ``pos[j]`` is the offset in ``text`` of the j-th
    character of the normalised text, or None if the two cannot be aligned.

    Normalisation only translates characters one to one or deletes white space and
    zero-width characters, never inserts: walking forward, each normalised character is
    the next original character with the same key. Only deleted white space can be
    skipped wrongly, and spans never start or end on white space."""
    norm = model_text(text)
    if norm == text:
        return norm, list(range(len(text)))
    pos: list[int] = []
    i = 0
    for ch in norm:
        while i < len(text) and _key(text[i]) != ch:
            i += 1
        if i == len(text):
            return norm, None
        pos.append(i)
        i += 1
    return norm, pos


def _original_span(text: str, pos: list[int], a: int, b: int) -> tuple[int, int] | None:
    """Normalised offsets [a, b) -> original offsets, or None for an empty span."""
    if b <= a:
        return None
    return pos[a], pos[b - 1] + 1


def match_spans(regex, text: str, limit: int = MAX_SPANS, norm: str | None = None) -> list[tuple[int, int]]:
    """Where ``regex`` matches the clause as the model sees it (normalised: full-width digits
    are ASCII, spaces next to Chinese are gone), as offsets into the original ``text``.
    ``norm``: ``model_text(text)`` if the caller has it already."""
    norm = model_text(text) if norm is None else norm
    hits = []
    for m in regex.finditer(norm):
        if m.end() > m.start():
            hits.append((m.start(), m.end()))
            if len(hits) >= limit:
                break
    if not hits or norm == text:
        return hits  # the offset map is built only when there is something to map
    _, pos = map_to_original(text)
    if pos is None:  # cannot happen for normalize_text as it is; match the raw text then
        return [(m.start(), m.end()) for m in regex.finditer(text) if m.end() > m.start()][:limit]
    return [span for a, b in hits if (span := _original_span(text, pos, a, b))]


def remove_spans(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """``text`` without the characters inside any of ``spans`` (offsets into ``text``)."""
    keep, last = [], 0
    for s, e in sorted(spans):
        if s > last:
            keep.append(text[last:s])
        last = max(last, e)
    keep.append(text[last:])
    return "".join(keep)


def _token_offsets(norm: str, tokens: list[str]) -> list[tuple[int, int] | None]:
    """Offsets of each token in the normalised text (tokens are its cut, in order; white
    space between them was dropped), None for a token not found where expected."""
    out: list[tuple[int, int] | None] = []
    cur = 0
    for t in tokens:
        i = norm.find(t, cur)
        if i < 0:
            out.append(None)
            continue
        out.append((i, i + len(t)))
        cur = i + len(t)
    return out


def _is_word(token: str) -> bool:
    # Punctuation is never shown as evidence, and skipping it saves ~15% of the variants.
    return any(ch.isalnum() for ch in token)


class _Scorer:
    """Collects token strings, scores them in one call, hands out columns; identical
    strings (the same span chosen for several labels) are scored once."""

    def __init__(self, tagger):
        self.tagger = tagger
        self.index: dict[str, int] = {}
        self.probs: dict[str, np.ndarray] | None = None

    def add(self, token_string: str) -> int:
        return self.index.setdefault(token_string, len(self.index))

    def add_text(self, text: str) -> int:
        return self.add(" ".join(self.tagger.tokenizer.tokens(text)))

    def run(self) -> None:
        self.probs = self.tagger.probabilities_tokens(list(self.index))

    def p(self, row: int, head: str, col: int) -> float:
        return float(self.probs[head][row, col])


def explain(tagger, texts: Sequence[str], wanted: Sequence[Mapping[str, Sequence[str]]], max_spans: int = MAX_SPANS) -> list[dict]:
    """Evidence for ``wanted[i]`` (``{head: [label ids]}``, normally the labels the model
    assigned) of ``texts[i]``; one dict per text (format in the module docstring)."""
    if len(texts) != len(wanted):
        raise ValueError("texts and wanted differ in length")
    cols = {h: {lab: k for k, lab in enumerate(tagger.manifest.labels(h))} for h in HEADS}
    out: list[dict] = [{h: {lab: [] for lab in w.get(h, ())} for h in HEADS} for w in wanted]
    todo = [(i, tagger.tokenizer.tokens(texts[i])) for i, w in enumerate(wanted) if any(w.get(h) for h in HEADS)]
    # Clauses are scored in groups of about VARIANTS_PER_CALL variant strings: one call per
    # group keeps the batching gain, and memory stays bounded (a request's 400,000
    # characters would otherwise be ~40 million characters of variants at once).
    group: list = []
    size = 0
    for item in todo:
        group.append(item)
        size += len(item[1]) + 1
        if size >= VARIANTS_PER_CALL:
            _explain_group(tagger, texts, wanted, group, cols, out, max_spans)
            group, size = [], 0
    if group:
        _explain_group(tagger, texts, wanted, group, cols, out, max_spans)
    return out


def _explain_group(tagger, texts, wanted, group, cols, out, max_spans) -> None:
    # 1. token occlusion: the full string and one variant per word token, the group at once
    s1 = _Scorer(tagger)
    jobs = []  # (i, tokens, candidate token indices, row of the full string, rows of the variants)
    for i, tokens in group:
        cand = [k for k, t in enumerate(tokens) if _is_word(t)]
        full = s1.add(" ".join(tokens))
        rows = [s1.add(" ".join(tokens[:k] + tokens[k + 1 :])) for k in cand]
        jobs.append((i, tokens, cand, full, rows))
    s1.run()

    # 2. per label: top tokens -> merged spans in original offsets; queue the text checks
    s2 = _Scorer(tagger)
    pending = []  # (i, head, label, full probability, [(start, end, row)])
    for i, tokens, cand, full, rows in jobs:
        text = texts[i]
        norm, pos = map_to_original(text)
        if pos is None:
            continue
        offs = _token_offsets(norm, tokens)
        for h in HEADS:
            for lab in wanted[i].get(h, ()):
                c = cols[h][lab]
                p_full = s1.p(full, h, c)
                drops = p_full - s1.probs[h][rows, c] if rows else np.zeros(0)
                order = [j for j in np.argsort(-drops, kind="stable")[:max_spans] if drops[j] >= MIN_DROP]
                chosen = sorted(cand[j] for j in order)
                groups: list[list[int]] = []
                for k in chosen:
                    if groups and groups[-1][-1] == k - 1:
                        groups[-1].append(k)
                    else:
                        groups.append([k])
                spans = []
                for g in groups:
                    a, b = offs[g[0]], offs[g[-1]]
                    if a is None or b is None:
                        continue  # a token not found in the normalised text: not mappable
                    span = _original_span(text, pos, a[0], b[1])
                    if span:
                        spans.append((span[0], span[1], s2.add_text(remove_spans(text, [span]))))
                if spans:
                    pending.append((i, h, lab, c, p_full, spans))
    if not pending:
        return
    s2.run()

    # 3. weights from the text checks; then all kept spans of a label removed together
    s3 = _Scorer(tagger)
    verify = []
    for i, h, lab, c, p_full, spans in pending:
        kept = []
        for s, e, row in spans:
            w = p_full - s2.p(row, h, c)
            if w >= MIN_DROP:
                kept.append((s, e, w))
        if kept:
            row = s3.add_text(remove_spans(texts[i], [(s, e) for s, e, _ in kept]))
            verify.append((i, h, lab, c, p_full, kept, row))
    if not verify:
        return
    s3.run()
    for i, h, lab, c, p_full, kept, row in verify:
        if p_full - s3.p(row, h, c) < MIN_DROP:
            continue  # the spans together do not explain the label: no evidence rather than wrong evidence
        kept.sort(key=lambda x: (-x[2], x[0]))
        out[i][h][lab] = [{"start": s, "end": e, "text": texts[i][s:e], "weight": round(w, WEIGHT_DECIMALS)} for s, e, w in kept]
