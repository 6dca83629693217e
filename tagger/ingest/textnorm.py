"""Character-level normalisation shared by ingestion, training and serving.

Training and serving must see byte-identical text, so every path into the model goes
through :func:`normalize_text`.  Only what is unambiguous is changed: full-width ASCII
digits/letters/space and stray whitespace.  Chinese punctuation (，。；（）) is kept —
NFKC would turn it into ASCII and change clause boundaries and amounts.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize_text", "is_cjk", "is_blank"]

_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF10, 0xFF1A)}  # ０-９
_FULLWIDTH.update({cp: cp - 0xFEE0 for cp in range(0xFF21, 0xFF3B)})  # Ａ-Ｚ
_FULLWIDTH.update({cp: cp - 0xFEE0 for cp in range(0xFF41, 0xFF5B)})  # ａ-ｚ
_FULLWIDTH.update(
    {
        0x3000: 0x20,  # ideographic space
        0x00A0: 0x20,
        0x2002: 0x20,
        0x2003: 0x20,
        0x2009: 0x20,
        0x200B: None,  # zero-width space
        0xFEFF: None,  # stray BOM inside text
        0xFF05: ord("%"),
        0xFF0E: ord("."),  # full-width full stop inside numbers (1．5)
        0x000D: None,
    }
)

# A space is kept only between two ASCII word characters ("CPU X", "5G 网络" loses it).
_CJK = r"\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef“”‘’《》【】—…·"
_SPACE_NEAR_CJK = re.compile(rf"(?<=[{_CJK}]) +| +(?=[{_CJK}])")
_MULTISPACE = re.compile(r" {2,}")
_CJK_CHAR = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")


def is_cjk(ch: str) -> bool:
    return bool(_CJK_CHAR.match(ch))


# Letters that draw nothing (Hangul fillers, the blank Braille pattern): used to pass for text.
_INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def is_blank(text: str) -> bool:
    """True when ``text`` holds nothing to read: only white space, control characters (Cc),
    format characters (Cf: zero-width space, BOM, joiners, direction marks, soft hyphen),
    noncharacters (U+FDD0-U+FDEF, U+FFFE, U+FFFF and their copies in every plane), lone
    surrogates (Cs) and letters that draw nothing. The one rule by which the API (422) and
    ``tagger tag`` (a bad record) refuse an empty clause. (Unassigned code points count as
    text: they may be characters of a newer Unicode than this Python's.)"""
    for ch in text:
        if ch.isspace() or ch in _INVISIBLE_LETTERS or _is_noncharacter(ch):
            continue
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs"):
            continue
        return False
    return True


def _is_noncharacter(ch: str) -> bool:
    cp = ord(ch)
    return 0xFDD0 <= cp <= 0xFDEF or (cp & 0xFFFE) == 0xFFFE


def normalize_line(line: str) -> str:
    """Normalise one line (no newlines inside)."""
    line = line.translate(_FULLWIDTH)
    line = _SPACE_NEAR_CJK.sub("", line)
    line = _MULTISPACE.sub(" ", line)
    return line.strip()


def normalize_text(text: str) -> str:
    """Normalise a text line by line; newlines are kept, each line is stripped."""
    return "\n".join(normalize_line(line) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
