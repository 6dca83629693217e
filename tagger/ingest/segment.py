"""Cut a repaired document into clauses (see labels/guidelines.md, "What a clause is").

A clause is one numbered article/item or one paragraph; a paragraph over
``MAX_CHARS`` is split at sentence ends into pieces of roughly 80-300 characters (a
sentence over ``HARD_MAX_CHARS`` at commas). No clause is longer than ``HARD_MAX_CHARS``:
a stretch with neither (a run without punctuation, 1 MB of it in one upload) is cut
every ``MAX_CHARS`` characters, at white space where there is some near the cut, and
its clauses carry ``hard_cut=True``. Downstream cost (evidence is quadratic in a
clause's length) stays bounded whatever the document holds.
Headings are never clauses: they become the ``section`` path of the clauses below.

Clause ids are ``<doc>-<12 hex of sha1(doc, text)>`` (plus ``-2``, ``-3`` for a text
repeated within one document), so an edit to one paragraph changes only the ids of
the clauses whose text changed; annotators' labels are keyed by these ids.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Iterator

from .documents import Document
from .repair import ENUM_START, TERMINAL

__all__ = ["Clause", "segment", "clause_id", "split_long", "MAX_CHARS", "MIN_CHARS", "HARD_MAX_CHARS"]

MAX_CHARS = 300
MIN_CHARS = 80
HARD_MAX_CHARS = 400
SECTION_SEP = " > "

_CN = "一二三四五六七八九十百零〇"
_LEVELS = [
    (re.compile(rf"^第[{_CN}\d]+[章篇部分]"), 1),
    (re.compile(rf"^第[{_CN}\d]+节"), 2),
    (re.compile(rf"^[{_CN}]+[、．.]"), 3),
    (re.compile(rf"^[（(][{_CN}]+[）)]"), 4),
    (re.compile(rf"^第[{_CN}\d]+条"), 5),
    (re.compile(r"^\d{1,2}[、．.](?!\d)"), 5),
    (re.compile(r"^([（(]\d{1,2}[）)]|[①-⑳⑴-⒇])"), 6),
]
_UNMARKED_LEVEL = 7
_ARTICLE = re.compile(rf"^第[{_CN}\d]+条")
_LEVEL_MARKER = re.compile("|".join(rx.pattern for rx, _ in _LEVELS))
_SENTENCE_END = re.compile(rf"[{TERMINAL}][”’」』）)]*")
_SOFT_END = re.compile(r"[，,、：:][”’」』）)]*")
_SPACE = re.compile(r"\s+")
# Lines that are neither provisions nor headings: dates, publication notes, salutations.
_NOISE = re.compile(
    r"^(\d{4}年\d{1,2}月\d{1,2}日|[（(]此件[^）)]*[）)]|.{0,14}[:：]|[（(]?(公开征求意见稿|征求意见稿)[）)]?"
    r"|各[^。；]{0,80}(人民政府|委办局|各部门|直属[^。；]{0,6}单位|有关单位)[^。；]{0,30}[:：])$"
)


@dataclass
class Clause:
    id: str
    doc: str
    section: str
    text: str
    start: int
    end: int
    # True when the clause was cut out of a longer stretch at the hard length limit (no
    # sentence end or comma to cut at): it may start or end mid-sentence.
    hard_cut: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.hard_cut:
            del d["hard_cut"]  # only marked where it happened: other lines stay as they were
        return d

    def record(self) -> dict:
        """The fields tagging works on (and passes through): id, doc, section, text."""
        return {"id": self.id, "doc": self.doc, "section": self.section, "text": self.text}


def clause_id(doc_id: str, text: str, occurrence: int = 1) -> str:
    digest = hashlib.sha1(f"{doc_id}\x1f{text}".encode("utf-8")).hexdigest()[:12]
    return f"{doc_id}-{digest}" if occurrence == 1 else f"{doc_id}-{digest}-{occurrence}"


def _marker_level(paragraph: str) -> int | None:
    return next((lvl for rx, lvl in _LEVELS if rx.match(paragraph)), None)


def _heading_level(paragraph: str) -> int | None:
    """The heading level of a paragraph, or None if it is a provision."""
    if paragraph.endswith(("：", ":")) or "|" in paragraph:
        return None  # a lead-in to a list, or a table row: content, not a heading
    terminals = sum(c in TERMINAL for c in paragraph)
    if terminals:
        # "（一）组织领导。" — an item title alone on its line is a heading, not a provision.
        # An item ending in "；" is one entry of a list (materials, conditions), never a title.
        if terminals == 1 and paragraph[-1] in TERMINAL and paragraph[-1] not in "；;" and not _ARTICLE.match(paragraph):
            level = _marker_level(paragraph)
            body = _LEVEL_MARKER.sub("", paragraph, count=1)
            if level is not None and len(body) <= 18 and not re.search(r"\d", body):
                return level
        return None
    marked = _marker_level(paragraph)
    if marked is not None and len(paragraph) <= (16 if paragraph.startswith("第") and "条" in paragraph[:6] else 60):
        return marked
    if len(paragraph) <= 50 and not paragraph.endswith(("，", "、")):
        return _UNMARKED_LEVEL
    return None


def _cuts(text: str, boundary: re.Pattern) -> list[int]:
    ends = [m.end() for m in boundary.finditer(text)]
    return [e for e in ends if e < len(text)]


def _pack(text: str, cuts: list[int], limit: int) -> list[tuple[int, int]]:
    """Greedily pack the spans between cuts into pieces of at most ``limit`` chars."""
    bounds = [0, *cuts, len(text)]
    pieces: list[list[int]] = []
    for a, b in zip(bounds, bounds[1:]):
        if pieces and b - pieces[-1][0] <= limit:
            pieces[-1][1] = b
        else:
            pieces.append([a, b])
    # A short tail reads badly alone: give it to its neighbour if that stays legal.
    merged: list[list[int]] = []
    for piece in pieces:
        if merged and (piece[1] - piece[0] < MIN_CHARS or merged[-1][1] - merged[-1][0] < MIN_CHARS) and piece[1] - merged[-1][0] <= HARD_MAX_CHARS:
            merged[-1][1] = piece[1]
        else:
            merged.append(piece)
    return [(a, b) for a, b in merged]


def _hard_cuts(text: str, limit: int) -> list[int]:
    """Cut points at most ``limit`` apart: at the end of the last white space in the last
    quarter of each window if there is one (words stay whole), else exactly at ``limit``."""
    cuts: list[int] = []
    pos = 0
    while len(text) - pos > limit:
        lo, end = pos + limit * 3 // 4, pos + limit
        last = None
        for last in _SPACE.finditer(text, lo, end):
            pass
        pos = last.end() if last is not None and last.end() < end else end
        cuts.append(pos)
    return cuts


def _split(text: str) -> list[tuple[int, int, bool]]:
    """``(start, end, hard_cut)`` spans of ``text``: see :func:`split_long`."""
    if len(text) <= MAX_CHARS:
        return [(0, len(text), False)]
    spans: list[tuple[int, int, bool]] = []
    for a, b in _pack(text, _cuts(text, _SENTENCE_END), MAX_CHARS):
        if b - a <= HARD_MAX_CHARS:
            spans.append((a, b, False))
            continue
        # One sentence longer than the hard limit: fall back to commas.
        sub = text[a:b]
        for x, y in _pack(sub, _cuts(sub, _SOFT_END), MAX_CHARS):
            if y - x <= HARD_MAX_CHARS:
                spans.append((a + x, a + y, False))
                continue
            # No comma either (a run without punctuation): cut it at the length limit.
            run = sub[x:y]
            spans.extend((a + x + p, a + x + q, True) for p, q in _pack(run, _hard_cuts(run, MAX_CHARS), MAX_CHARS))
    return spans


def split_long(text: str) -> list[tuple[int, int]]:
    """Character spans of ``text`` split at sentence ends, each ~80-300 chars; a sentence
    over ``HARD_MAX_CHARS`` at commas, and a stretch without either at the length limit,
    so that no span is longer than ``HARD_MAX_CHARS``."""
    return [(a, b) for a, b, _ in _split(text)]


def _paragraphs(text: str) -> Iterator[tuple[int, str]]:
    pos = 0
    for para in text.split("\n"):
        yield pos, para
        pos += len(para) + 1


def segment(doc: Document) -> list[Clause]:
    clauses: list[Clause] = []
    stack: list[tuple[int, str]] = []
    seen: Counter[str] = Counter()
    for offset, para in _paragraphs(doc.text):
        if not para.strip() or _NOISE.match(para):
            continue
        level = _heading_level(para)
        if level is not None:
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, para))
            continue
        section = SECTION_SEP.join(h for _, h in stack)
        for a, b, hard in _split(para):
            piece = para[a:b]
            lead = len(piece) - len(piece.lstrip())
            piece = piece.strip()
            if not piece:
                continue
            seen[piece] += 1
            start = offset + a + lead
            clauses.append(
                Clause(
                    id=clause_id(doc.id, piece, seen[piece]),
                    doc=doc.id,
                    section=section,
                    text=piece,
                    start=start,
                    end=start + len(piece),
                    hard_cut=hard,
                )
            )
    return clauses


def is_item(text: str) -> bool:
    """True if a clause starts with an item number (used by tests and stats)."""
    return bool(ENUM_START.match(text))
