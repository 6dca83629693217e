"""Text -> model input, identical at training and serving time.

The ONNX graph takes one string per clause: the normalised text cut by jieba (with the
policy user dictionary that travels in the bundle), tokens joined by single spaces.
The word vectoriser splits on " " and the char vectoriser reads the same string, so
ONNX's RE2 tokeniser never sees Chinese word boundaries it cannot handle (see
../shared notes: skl2onnx's default token pattern silently drops every Chinese token).

With ``structure=True`` (a bundle whose manifest says ``tokenizer.structure_markers``) the
tokens start with two marker tokens, the clause's length class and how it ends, and a
start marker follows a leading enumerator ("（一）", "1.", "第三条"): what sort of sentence a
clause is (``kind``) shows in its shape as much as in its words, and n-grams alone cannot see
"short, no full stop" or "the first word after the number". Markers are single
Private-Use-Area characters (U+E000-U+E0FF): they never occur in normalised text, are not
word characters (evidence never offers them as spans) and have no offsets in the text.

``jieba_next`` (Rust) is used when installed: parity with jieba is tested on the corpus;
``TAGGER_TOKENIZER=jieba`` forces the pure-Python engine.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from ..ingest.textnorm import normalize_text

__all__ = ["Tokenizer", "DEFAULT_USERDICT", "model_text", "userdict_hash", "structure_markers", "is_marker"]

DEFAULT_USERDICT = Path(__file__).resolve().parent.parent / "resources" / "userdict.txt"


def userdict_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@lru_cache(maxsize=8192)
def model_text(text: str) -> str:
    """Normalise a clause for the model: same rules as ingestion, one line.

    Cached (a batch's worth): tokenising and the override rules both need it per clause."""
    return " ".join(normalize_text(text).split("\n")).strip()


# Length classes (characters without spaces): <=8, <=16, <=32, <=64, <=128, longer.
_LENGTHS = ((8, "\ue001"), (16, "\ue002"), (32, "\ue003"), (64, "\ue004"), (128, "\ue005"))
_LONGER = "\ue006"
# Last character: full stop, semicolon, colon, comma, closing bracket, digit, anything else.
_ENDS = {"。": "\ue011", "！": "\ue011", "；": "\ue012", ";": "\ue012", "：": "\ue013", ":": "\ue013",
         "，": "\ue014", ",": "\ue014", "）": "\ue015", ")": "\ue015"}
_END_DIGIT, _END_OTHER = "\ue016", "\ue017"
START_MARKER = "\ue020"
_ENUM = re.compile(r"^(第[一二三四五六七八九十百零〇\d]+[条章节款]|[（(][一二三四五六七八九十\d]+[）)]|"
                   r"[一二三四五六七八九十]+[、.．]|\d+[.、．](?!\d)|[①-⑳]|——|—|[-•·])\s*")


_MARKER_CHARS = re.compile("[\ue000-\ue0ff]")


def is_marker(token: str) -> bool:
    """A structure marker token (not text): one Private-Use-Area character."""
    return len(token) == 1 and "\ue000" <= token <= "\ue0ff"


def structure_markers(tokens: list[str], norm: str) -> list[str]:
    """``tokens`` (the cut of ``norm``) with the length and ending markers in front and the
    start marker after a leading enumerator (at the very start when the enumerator does not
    end on a token boundary)."""
    flat = norm.replace(" ", "")
    length = next((m for n, m in _LENGTHS if len(flat) <= n), _LONGER)
    last = flat[-1:]
    end = _ENDS.get(last) or (_END_DIGIT if last.isdigit() else _END_OTHER)
    k = 0
    m = _ENUM.match(flat)
    if m:
        enum, acc = m.group(0).replace(" ", ""), ""
        while k < len(tokens) and len(acc) < len(enum):
            acc += tokens[k]
            k += 1
        if acc != enum:
            k = 0
    return [length, end, *tokens[:k], START_MARKER, *tokens[k:]]


def _merge_dashes(tokens: list[str]) -> list[str]:
    """jieba keeps a run of hyphens ("--") as one token, jieba_next cuts it into single "-";
    joining adjacent hyphen tokens gives both engines jieba's tokens (parity test)."""
    out: list[str] = []
    for t in tokens:
        if out and t and out[-1] and not t.strip("-") and not out[-1].strip("-"):
            out[-1] += t
        else:
            out.append(t)
    return out


class Tokenizer:
    """A private jieba instance with the user dictionary loaded once, at start-up."""

    def __init__(self, userdict: Path = DEFAULT_USERDICT, engine: str | None = None, structure: bool = False):
        self.userdict = Path(userdict)
        self.structure = structure
        self.engine = engine or os.environ.get("TAGGER_TOKENIZER", "auto")
        mod = None
        if self.engine in ("auto", "jieba_next"):
            try:
                import jieba_next as mod  # type: ignore[no-redef]

                self.engine = "jieba_next"
            except ImportError:
                if self.engine == "jieba_next":
                    raise
        if mod is None:
            import jieba as mod  # type: ignore[no-redef]

            self.engine = "jieba"
        logging.getLogger("jieba").setLevel(logging.WARNING)
        self._tok = mod.Tokenizer()
        # jieba_next builds its Rust prefix table in initialize() and again after add_word()
        # drops it: build it once, at the first cut after the user dictionary (~0.5 s saved).
        defer = self.engine == "jieba_next" and hasattr(self._tok, "_ensure_rust_prefix")
        if defer:
            self._tok._ensure_rust_prefix = lambda: None
        try:
            self._tok.initialize()
            self._load_userdict()
        finally:
            if defer:
                del self._tok._ensure_rust_prefix
        self._fast = False
        if self.engine == "jieba_next":
            try:  # the internals _cut() reads; any other jieba_next layout uses lcut()
                from jieba_next import finalseg
                from jieba_next._patterns import re_han_default, re_skip_default

                self._re_han, self._re_skip, self._hmm_cut = re_han_default, re_skip_default, finalseg.cut
                self._fast = hasattr(self._tok, "_rust_prefix") and hasattr(self._tok, "FREQ")
            except ImportError:
                pass

    def _load_userdict(self) -> None:
        # add_word rather than load_userdict: same behaviour in jieba and jieba_next,
        # and words with full-width brackets are accepted.
        for line in self.userdict.read_text(encoding="utf-8").splitlines():
            parts = line.strip().split()
            if not parts or parts[0].startswith("#"):
                continue
            freq = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
            self._tok.add_word(parts[0], freq=freq)

    def tokens(self, text: str) -> list[str]:
        text = model_text(text)
        toks = self._cut(text) if self._fast else self._tok.lcut(text)
        if "-" in text:
            toks = _merge_dashes(toks)
        if not self.structure:
            return [t for t in toks if t.strip()]
        # A Private-Use-Area character in the text itself would pose as a marker: dropped
        # (looked for per token only in a text that has one).
        if _MARKER_CHARS.search(text):
            return structure_markers([t for t in toks if t.strip() and not is_marker(t)], text)
        return structure_markers([t for t in toks if t.strip()], text)

    def _cut(self, sentence: str) -> list[str]:
        """jieba_next's ``Tokenizer.cut(sentence)`` (accurate mode, HMM) in one loop that
        builds a list: the same regexes, Rust DAG route, dictionary and HMM, without a
        generator per block and per word (measured 6-13% faster than ``lcut``). Parity with
        jieba on the whole corpus is tested (tests/training/test_parity.py)."""
        tok = self._tok
        prefix = tok._rust_prefix
        if prefix is None:
            tok._ensure_rust_prefix()
            prefix = tok._rust_prefix
            if prefix is None:  # the Rust table could not be built: jieba_next's own path
                return tok.lcut(sentence)
        freq, hmm = tok.FREQ, self._hmm_cut
        re_han, re_skip = self._re_han, self._re_skip
        words: list[str] = []
        append, extend = words.append, words.extend
        for blk in re_han.split(sentence):
            if not blk:
                continue
            if not re_han.match(blk):
                for x in re_skip.split(blk):
                    if re_skip.match(x):
                        append(x)
                    else:
                        extend(x)  # one token per character
                continue
            route = prefix.get_dag_and_calc(blk)
            x, n, buf = 0, len(blk), ""
            while x < n:
                y = route[x] + 1
                word = blk[x:y]
                x = y
                if len(word) == 1:
                    buf += word  # runs of single characters go to the HMM together
                    if x < n:
                        continue
                    word = ""
                if buf:  # flushed before a longer word, and at the end of the block
                    if len(buf) == 1:
                        append(buf)
                    elif not freq.get(buf):
                        extend(hmm(buf))
                    else:
                        extend(buf)
                    buf = ""
                if word:
                    append(word)
        return words

    def __call__(self, text: str) -> str:
        # Empty/space tokens are dropped: ONNX does not collapse whitespace like sklearn.
        return " ".join(self.tokens(text))

    def batch(self, texts: Iterable[str]) -> list[str]:
        return [self(t) for t in texts]
