"""Evidence per tag: the few spans of a clause that contributed most to each assigned label.

Two methods, one output format (below); ``explain`` is the one entry point, used by the CLI,
the API, the store and (through the store) the page.

``contributions`` (the default): read off the model's own arithmetic, in the sparse serving
path (``SparseModel.explain``, C loops in ``_kernels.c``). Per assigned label, what each of
the clause's features added to the label's logit: coefficient x TF-IDF value for the linear
member, path contributions for the trees (Saabas-style, against the empty clause), the
members weighted by their share of the head's derivative (the details are in
``SparseModel.explain``). Logits, unlike probabilities, do not saturate: a label scored 0.99
still gets spans that carry its score. Each feature is then mapped to the text: a word
n-gram to its tokens, a char n-gram to its characters, a lexicon flag to the occurrences of
the guide's words behind it; a feature seen k times gives each occurrence 1/k of its
contribution, spread evenly over the occurrence's characters (spaces of the token string
get none; a feature containing a Private-Use-Area character, a marker token that is not in
the text, gets no span at all). Per model token the characters' shares are summed; spans
are phrases grown around the best tokens out of their neighbours that carry the label too,
ranked by summed contribution (see :func:`_pick_spans`), ``weight`` = the span's summed
contribution in logit units. About 1.5x the CPU of tagging the clause.

``occlusion`` (``--evidence-method occlusion``, ``?evidence_method=occlusion``): the earlier
method, kept as the model-agnostic reference; ~50 re-scorings per clause.

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

import re
from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np

from ..ingest.textnorm import normalize_text
from ..taxonomy import HEADS
from .features import model_text

__all__ = ["explain", "map_to_original", "remove_spans", "match_spans", "MAX_SPANS", "MIN_DROP", "METHODS", "DEFAULT_METHOD",
           "FUNCTION_WORDS", "is_trivial_span"]

MAX_SPANS = 3
# Scores are written rounded to 6 decimals and batch composition can move the 7th: a drop
# must be clearly above that noise to count as one (and to survive re-tagging).
MIN_DROP = 1e-4
WEIGHT_DECIMALS = 4
VARIANTS_PER_CALL = 4096

METHODS = ("contributions", "occlusion")
DEFAULT_METHOD = "contributions"

# Function words never make a span on their own (nor does a single character), unless a
# label has nothing else: they carry grammar, not the topic, and a reader shown 的 or 按 as
# the reason for "tax relief" learns nothing. The list: the closed classes of modern
# Chinese as they occur in the corpus: structural and aspect particles, prepositions and
# coverbs, conjunctions, pronouns and determiners, modal and degree adverbs, copula and
# "have", localisers. Content words that are frequent in policies (支持, 企业, 给予) are not
# function words: whether they justify a label is the model's business, and the quality
# figures in the README count them as evidence.
FUNCTION_WORDS = frozenset(
    # particles
    "的 地 得 之 了 着 过 所 者 等 等等 啊 吧 呢"
    # prepositions, coverbs
    " 对 对于 关于 在 于 为 为了 以 按 按照 依照 依据 根据 将 把 被 由 从 向 给 与 和 同 跟 至 到 自 经 通过 围绕 除 除了 随着"
    # conjunctions
    " 及 以及 及其 或 或者 并 并且 且 而 而且 但 但是 如 如果 若 则 即 以便 以免 从而 因此 因而 所以 并由"
    # pronouns, determiners
    " 其 该 本 此 这 那 这些 那些 各 每 其他 其它 其中 有关 相关 上述 以上 以下 我 我们 你 他 它 各类 各种 一些"
    # adverbs, modals, copula
    " 是 有 也 都 又 再 还 可 可以 应 应当 应该 须 需 需要 要 已 已经 不 未 没有 均 就 才 更 最 很 较 仍 便 能 能够 会"
    # localisers
    " 上 下 中 内 外 后 前 间 时 里 以上 以内 期间 方面".split()
)
# Boilerplate verbs and adverbs of policy text: content words, and the model leans on them
# (给予 "grant" comes with most subsidies), but shown alone they do not tell a reader why a
# clause has a label (issue #20's read: grant <- 给予/企业 where 奖励10000元 was the reason).
# They are not chosen for a span unless a label has nothing else.
GENERIC_WORDS = frozenset(
    "给予 予以 支持 鼓励 推进 推动 加强 加快 开展 进行 实施 积极 大力 促进 提升 提高 完善 建立 构建 打造 引导 组织"
    " 落实 深化 强化 优化 做好 加大 力度 进一步 全面 重点 有效 相应 按规定 一次性".split()
)
# A token takes part in a label's spans when its share is at least this fraction of the
# best token's: below it the spans would be the tail of the clause, not its reasons.
MIN_SHARE = 0.15
# A seed token's neighbour joins its phrase when it carries at least this fraction of the
# seed's share (a phrase is the words that carry the label together, not the clause's tail);
# phrases are at most this many characters long.
EXTEND_SHARE = 0.4
MAX_PHRASE_CHARS = 12
# The function words that may stand inside a phrase, between two of its content words:
# the ones that join the parts of a noun phrase (的, 和, 与, 及: 增值税和企业所得税,
# 政府质量奖的企业). Others (不, 在, 由, 按, ...) start a new clause part, not a longer name.
BRIDGE_WORDS = frozenset("的 之 和 与 及 以及 或 或者 及其".split())


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


# Letters, digits and CJK ideographs; marker characters (Private Use Area) are none of them.
_WORD = re.compile(r"[^\W_]")
# A number inside a phrase (每家最高给予 1 亿元): crossed on the way to a word that carries the label.
_NUMBER = re.compile(r"[0-9０-９.．%％]+")


def _is_word(token: str) -> bool:
    # Punctuation is never shown as evidence, and skipping it saves ~15% of the variants.
    return _WORD.search(token) is not None


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


def explain(tagger, texts: Sequence[str], wanted: Sequence[Mapping[str, Sequence[str]]], max_spans: int = MAX_SPANS,
            method: str = None, token_texts: Sequence[str] | None = None, entries: list | None = None) -> list[dict]:
    """Evidence for ``wanted[i]`` (``{head: [label ids]}``, normally the labels the model
    assigned) of ``texts[i]``; one dict per text (format in the module docstring).
    ``method``: one of :data:`METHODS` (default :data:`DEFAULT_METHOD`); ``token_texts``:
    the model's token strings of ``texts`` if the caller has them already (tagging does);
    ``entries``: the features the serving sparse path extracted from them while scoring
    (``Tagger.predict_detailed(keep=...)``), reused by ``contributions``."""
    method = method or DEFAULT_METHOD
    if method not in METHODS:
        raise ValueError(f"unknown evidence method {method!r} (one of {', '.join(METHODS)})")
    if len(texts) != len(wanted) or (token_texts is not None and len(token_texts) != len(texts)):
        raise ValueError("texts and wanted differ in length")
    if method == "contributions":
        sparse = _sparse_model(tagger)
        if sparse is not None:
            return _explain_contributions(tagger, sparse, texts, wanted, max_spans, token_texts,
                                          entries if sparse is tagger.sparse and token_texts is not None else None)
        # A bundle without sparse tables (an old one, served from the graph): the
        # model-agnostic method is the only one that can read it.
    return _explain_occlusion(tagger, texts, wanted, max_spans)


def _explain_occlusion(tagger, texts, wanted, max_spans) -> list[dict]:
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


# -- contributions --------------------------------------------------------------------------


def _sparse_model(tagger):
    """The bundle's sparse tables: the serving ones, or (served from the graph) loaded once."""
    if tagger.sparse is not None:
        return tagger.sparse
    cached = getattr(tagger, "_evidence_sparse", None)
    if cached is None:
        declared = tagger.manifest.raw.get("serving")
        if not isinstance(declared, dict) or not isinstance(declared.get("files"), dict):
            return None
        from .sparse import SparseModel

        cached = tagger._evidence_sparse = SparseModel(tagger.folder, declared["files"])
    return cached


def is_trivial_span(text: str) -> bool:
    """A single character or a function word (:data:`FUNCTION_WORDS`), as the model reads it."""
    t = model_text(text).replace(" ", "")
    return len(t) <= 1 or t in FUNCTION_WORDS


def _explain_contributions(tagger, sparse, texts, wanted, max_spans, token_texts, entries=None) -> list[dict]:
    cols = {h: {lab: k for k, lab in enumerate(tagger.manifest.labels(h))} for h in HEADS}
    out: list[dict] = [{h: {lab: [] for lab in w.get(h, ())} for h in HEADS} for w in wanted]
    todo = [i for i, w in enumerate(wanted) if any(w.get(h) for h in HEADS)]
    if not todo:
        return out
    asked = [[(h, lab) for h in HEADS for lab in wanted[i].get(h, ())] for i in todo]
    if entries is not None:
        # The features scoring extracted, chunk by chunk over all the texts: every text goes
        # in (those without a label ask for nothing), so that the chunks line up.
        strings = [token_texts[i] for i in todo]
        req = [[] for _ in texts]
        for i, a in zip(todo, asked):
            req[i] = [(h, cols[h][lab]) for h, lab in a]
        every = sparse.explain(token_texts, req, entries=entries)
        found = [every[i] for i in todo]
    else:
        strings = [token_texts[i] if token_texts is not None else tagger.tokenizer(texts[i]) for i in todo]
        found = sparse.explain(strings, [[(h, cols[h][lab]) for h, lab in a] for a in asked])
    for i, string, labels, scores in zip(todo, strings, asked, found):
        if scores is None:
            continue
        spans = _clause_spans(texts[i], string, scores, max_spans, [h for h, _ in labels])
        if spans is None:
            continue
        for (h, lab), sp in zip(labels, spans):
            out[i][h][lab] = sp
    return out


def _clause_spans(text: str, string: str, scores: np.ndarray, max_spans: int, heads: Sequence[str]) -> list[list[dict]] | None:
    """Spans per wanted label (the rows of ``scores``, one column per token of ``string``;
    ``heads``: each row's head), or None if the token string cannot be aligned with the text."""
    norm, pos = map_to_original(text)
    if pos is None:
        return None
    tokens = string.split(" ") if string else []
    if "".join(tokens) == norm.replace(" ", "") and len(norm) == len(norm.replace(" ", "")):
        # The common case (no spaces in the text, no markers): tokens tile the text.
        ends = np.cumsum([len(t) for t in tokens]).tolist()
        offs = [(e - len(t), e) for t, e in zip(tokens, ends)]
    else:
        offs = _token_offsets(norm, tokens)
    word = [o is not None and _WORD.search(t) is not None for t, o in zip(tokens, offs)]
    plain = [w and t not in FUNCTION_WORDS and t not in GENERIC_WORDS for t, w in zip(tokens, word)]
    generic = [w and t in GENERIC_WORDS for t, w in zip(tokens, word)]
    bridge = [w and t in BRIDGE_WORDS for t, w in zip(tokens, word)]
    link = [w and _NUMBER.fullmatch(t) is not None for t, w in zip(tokens, word)]
    orders = np.argsort(-scores, axis=1, kind="stable").tolist()
    # Boilerplate verbs join a phrase only for a measure: there the verb is part of the
    # instrument (给予1亿元, 免征契税); for a topic or an industry 给予/支持 say nothing of the
    # subject and only lengthen the span (a blind read of seed 25: 最高给予10万元 for talent).
    none = [False] * len(tokens)
    return [_pick_spans(text, pos, offs, word, plain, generic if h == "measure" else none, bridge, link, row, order, max_spans)
            for h, row, order in zip(heads, scores.tolist(), orders)]


def _pick_spans(text, pos, offs, word, plain, generic, bridge, link, score, order, max_spans) -> list[dict]:
    """Phrases around the label's best tokens, as spans of ``text``, ranked by summed contribution.

    1. Seeds: the label's tokens best first (positive share, a word that is neither a
       function word nor boilerplate (:data:`GENERIC_WORDS`), at least :data:`MIN_SHARE`
       of the best one's share).
    2. Each seed not already inside a phrase grows into one (:func:`_grow`), and phrases
       side by side are joined (:func:`_join`): the tokeniser often cuts the real phrase
       into several tokens (公共/服务/平台, 增值税/和/企业所得税, 车联网/示范) that all carry
       the label, and a reader shown one of them does not see the reason.
    3. A phrase's ``weight`` is its tokens' summed contribution (logit units); phrases
       are ranked by it. One span per distinct text (the occurrence with the largest
       weight: a word repeated in the clause shares its features' contribution among its
       occurrences, and showing it twice says nothing new); the best ``max_spans`` that are
       neither a single character nor a function word (:func:`is_trivial_span`).
    Only if a label has no such span at all does it get its best token anyway."""
    order = [k for k in order if score[k] > 0]
    cand = [k for k in order if plain[k]] or [k for k in order if word[k]][:1]
    if not cand:
        return []
    floor = MIN_SHARE * score[cand[0]]
    owner: dict[int, int] = {}  # token -> the phrase holding it
    phrases: list[tuple[int, int]] = []
    for k in cand:
        if score[k] < floor:
            break
        if k in owner:
            continue
        a, b = _grow(k, score, word, plain, generic, bridge, link, owner, offs)
        for j in range(a, b + 1):
            owner[j] = len(phrases)
        phrases.append((a, b))
    joined = [(round(sum(score[a : b + 1]), WEIGHT_DECIMALS), a, b) for a, b in _join(sorted(phrases), score, bridge, offs)]
    joined.sort(key=lambda x: (-x[0], x[1]))
    spans: list[dict] = []
    seen: set[str] = set()
    for w, a, b in joined:  # best first: the first occurrence of a text seen is its best one
        if w <= 0 or len(spans) == max_spans:
            break
        t = _span_text(text, pos, offs, a, b)
        if t in seen or is_trivial_span(t):
            continue
        seen.add(t)
        s, e = pos[offs[a][0]], pos[offs[b][1] - 1] + 1
        spans.append({"start": s, "end": e, "text": t, "weight": w})
    if not spans:
        k = cand[0]
        s, e = pos[offs[k][0]], pos[offs[k][1] - 1] + 1
        w = round(score[k], WEIGHT_DECIMALS)
        spans = [{"start": s, "end": e, "text": text[s:e], "weight": w}] if w > 0 else []
    return spans


def _grow(k, score, word, plain, generic, bridge, link, owner, offs) -> tuple[int, int]:
    """The phrase around seed token ``k``, as (first, last) token: the seed's neighbours are
    taken while they carry the label too, the better side first. A side's next step ends on
    the nearest token that carries at least :data:`EXTEND_SHARE` of the seed's share and is a
    content word (``plain``) or, for a measure, boilerplate (``generic``: 给予, 支持); on the
    way it may cross weaker numbers and bridge words with a positive share
    (:data:`BRIDGE_WORDS`: 的, 和, 与, ...), provided the step adds a positive share in all
    (给予 ← 1 → 亿元, 增值税和企业所得税). So a phrase never starts or ends on a function
    word, nor on a number that carries less than the others (a number that carries as much
    is a word like the others: 奖励10万元). Punctuation, other weak tokens, a token of another
    phrase or the end of
    :data:`MAX_PHRASE_CHARS` characters end a phrase."""
    need = EXTEND_SHARE * score[k]
    n = len(score)
    a = b = k

    def _tok_len(j):
        return offs[j][1] - offs[j][0]

    size = _tok_len(k)

    def step(j, d):  # (tokens to add going from j in direction d, their summed share), or None
        run, chars, gain = [], size, 0.0
        while 0 <= j < n and j not in owner and word[j]:
            chars += _tok_len(j)
            if chars > MAX_PHRASE_CHARS:
                return None
            run.append(j)
            gain += score[j]
            if (plain[j] or generic[j]) and score[j] >= need:
                return (run, gain) if gain > 0 else None
            if not (link[j] or (bridge[j] and score[j] > 0)):
                return None
            j += d
        return None

    while True:
        best = None
        for d, j in ((-1, a - 1), (1, b + 1)):
            found = step(j, d)
            if found and (best is None or found[1] > best[0]):
                best = (found[1], d, found[0])
        if best is None:
            return a, b
        _, d, add = best
        size += sum(_tok_len(x) for x in add)
        if d < 0:
            a = min(add)
        else:
            b = max(add)


def _join(phrases, score, bridge, offs) -> list[tuple[int, int]]:
    """Phrases that touch, or are one bridge word (:data:`BRIDGE_WORDS`, positive share)
    apart, are one phrase if it stays within :data:`MAX_PHRASE_CHARS` (the label's reasons
    side by side: 奖励 + 10万元)."""
    out: list[tuple[int, int]] = []
    for a, b in phrases:
        if out and offs[b][1] - offs[out[-1][0]][0] <= MAX_PHRASE_CHARS and (
                a == out[-1][1] + 1 or (a == out[-1][1] + 2 and bridge[a - 1] and score[a - 1] > 0)):
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _span_text(text, pos, offs, a, b) -> str:
    return text[pos[offs[a][0]] : pos[offs[b][1] - 1] + 1]
