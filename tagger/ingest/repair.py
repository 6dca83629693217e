"""Repair text extracted from PDFs and web pages into clean paragraphs.

Input: normalised lines (see :mod:`tagger.ingest.textnorm`).  Output: paragraphs, one string
each, with page furniture removed and lines broken mid-sentence joined.  The rules
are deliberately conservative: a line is joined to the previous one only when the
previous line cannot end a paragraph (no sentence-final punctuation, not a heading,
not a title) and the next line does not start a new numbered item.
"""

from __future__ import annotations

import re
from collections import Counter

__all__ = ["ENUM_START", "TERMINAL", "repair_lines", "is_heading_like", "is_toc_line"]

_CN_NUM = "一二三四五六七八九十百零〇"
# Start of a numbered or bulleted item: 第三条, 一、, （一）, (1), 1. 1、, ①, bullets, ——.
ENUM_START = re.compile(
    rf"^(第[{_CN_NUM}\d]+[条章节款部分篇]|[{_CN_NUM}]+[、．.]|[（(][{_CN_NUM}\d]{{1,3}}[）)]"
    r"|\d{1,2}(?:\.\d{1,2})*[、．.](?!\d)|[①-⑳⑴-⒇]|[-•·●▪■◆➢]\s?|——)"
)
TERMINAL = "。；！？!?;"
_ARTICLE = re.compile(rf"^第[{_CN_NUM}\d]+条")
_ENDS_PARAGRAPH = re.compile(r"[。；！？!?;:：]\s*[”’」』）)]*$")
_CONTINUES = re.compile(r"[，、,（(“‘《〈【和与及或的在对按向为以、-]$")
_TITLE_END = re.compile(r"(通知|意见|办法|措施|方案|规划|计划|政策|细则|导则|规定|决定|纲要|条例|指南|公告|汇编|展望|[(（][^()（）]{2,20}[)）])$")
_PAGE_NUMBER = re.compile(r"^(?:[-—–]\s*\d{1,4}\s*[-—–]|第\s*\d{1,4}\s*页(?:\s*[/，,]?\s*共\s*\d{1,4}\s*页)?|\d{1,4}\s*/\s*\d{1,4}|\d{1,4}|page\s*\d+)$", re.I)
_TOC_LEADER = re.compile(r"(\.{3,}|…{2,}|·{3,})\s*\d{1,4}$")
_AD_ANCHOR = re.compile(r"二维码|公众号|分享群|扫码|扫一扫|关注微信|加入.*群|回复“")
_SYMBOLS_ONLY = re.compile(r"^[\W_]*$")
_CJK_CHARS = re.compile(r"[\u4e00-\u9fff]")
_INLINE_TAG = re.compile(r"</?(u|b|i|em|strong|span|sup|sub|font)\b[^>]*>")
_SOURCE_NOTE = re.compile(r"^(资料来源|数据来源|来源)[:：]")


def is_toc_line(line: str) -> bool:
    return bool(_TOC_LEADER.search(line)) or line in ("目录", "目 录")


def is_heading_like(line: str) -> bool:
    """A line that can stand alone as a heading or title: never continued by the next line."""
    if any(c in line for c in TERMINAL):
        return False
    if _CONTINUES.search(line):
        return False
    if ENUM_START.match(line) and len(line) <= 45:
        # "第二十九条对本区企业…承办人工" is an article cut mid-sentence, not a heading.
        return not (_ARTICLE.match(line) and len(line) > 16)
    if len(line) <= 14:
        return True
    return bool(_TITLE_END.search(line)) and len(line) <= 80


def _is_table_row(line: str) -> bool:
    return "\t" in line or " | " in line


def _drop_ads(lines: list[str]) -> list[str]:
    """Remove advertising blocks: an anchor line plus the short lines around it."""
    drop = set()
    for i, line in enumerate(lines):
        if not line or not _AD_ANCHOR.search(line) or len(line) > 80:
            continue
        drop.add(i)
        for step in (-1, 1):
            j = i + step
            while 0 <= j < len(lines):
                cand = lines[j]
                if cand and (
                    len(cand) > 60
                    or (ENUM_START.match(cand) and not cand.startswith("-"))
                    or (_ENDS_PARAGRAPH.search(cand) and not cand.startswith("-"))
                ):
                    break
                drop.add(j)
                j += step
    return [line for i, line in enumerate(lines) if i not in drop]


def _drop_running_lines(lines: list[str]) -> list[str]:
    """Drop running titles/headers/footers: short lines repeated on many pages."""
    counts = Counter(line for line in lines if line)
    repeated = {
        line
        for line, n in counts.items()
        if n >= 3 and len(line) <= 40 and not ENUM_START.match(line) and not any(c in line for c in TERMINAL + "。")
    }
    return [line for line in lines if line not in repeated]


def repair_lines(lines: list[str]) -> list[str]:
    """Normalised lines in, paragraphs out."""
    kept = []
    for line in lines:
        line = _INLINE_TAG.sub("", line.replace("\f", "")).strip()
        if not line:
            kept.append("")
            continue
        if _PAGE_NUMBER.match(line) or _SYMBOLS_ONLY.match(line) or is_toc_line(line) or _SOURCE_NOTE.match(line):
            continue
        kept.append(line)
    kept = _drop_ads(kept)
    kept = _drop_running_lines(kept)

    paragraphs: list[str] = []
    for line in kept:
        if not line:
            continue
        if _is_table_row(line):
            # Cells of numbers and units are not provisions; a row with real text is.
            if len(_CJK_CHARS.findall(line)) < 20:
                continue
            line = " | ".join(cell.strip() for cell in re.split(r"\t+| \| ", line) if cell.strip())
            paragraphs.append(line)
            continue
        if paragraphs and _should_join(paragraphs[-1], line):
            prev = paragraphs[-1]
            sep = " " if prev[-1:].isascii() and prev[-1:].isalnum() and line[:1].isascii() and line[:1].isalnum() else ""
            paragraphs[-1] = prev + sep + line
        else:
            paragraphs.append(line)
    return paragraphs


def _should_join(prev: str, line: str) -> bool:
    if _is_table_row(prev) or _is_table_row(line):
        return False
    if re.search(r"\d[:：]$", prev) and line[:1].isdigit():
        return True  # a ratio (1:2) cut by a sentence splitter
    if ENUM_START.match(line):
        return False
    if _ENDS_PARAGRAPH.search(prev):
        return False
    if _CONTINUES.search(prev):
        return True
    return not is_heading_like(prev)
