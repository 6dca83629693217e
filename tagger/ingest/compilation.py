"""Split a compilation (汇编) of many policies into its documents.

A compilation opens with front matter and a table of contents (目录) listing numbered
titles, grouped under headings such as ``九、成都国家新一代人工智能创新发展试验区``.
Each listed title is then searched for, in order, in the body; the lines between
two titles belong to the first.  Front matter and the table of contents are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .repair import ENUM_START

__all__ = ["Part", "split_compilation"]

_TOC_ENTRY = re.compile(
    r"^(?:[-•]\s*)?(\d{1,3})[.、．]\s*(.+?)\s*(?:[.…·]{2,}\s*\d{1,4}|\s\d{1,4}|(?<=[)）\u4e00-\u9fff])\d{2,4})?$"
)
_GROUP = re.compile(r"^[一二三四五六七八九十]+、(.+)$")


@dataclass
class Part:
    number: int
    title: str
    group: str  # the heading the title is listed under in the table of contents
    lines: list[str] = field(default_factory=list)

    @property
    def region_hint(self) -> str:
        """The place named by the group heading: '成都国家新一代…试验区' -> '成都'."""
        m = re.match(r"^(.+?)(国家|新一代|人工智能)", self.group)
        return m.group(1) if m else self.group


def _key(s: str) -> str:
    s = s.replace("（", "(").replace("）", ")").replace("—", "-").replace("–", "-")
    return re.sub(r"[\s《》<>“”\"']", "", s)


def _parse_toc(lines: list[str]) -> tuple[int, list[Part]] | None:
    try:
        start = next(i for i, line in enumerate(lines[:400]) if _key(line) == "目录")
    except StopIteration:
        return None
    parts: list[Part] = []
    group = ""
    end = start + 1
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if not line:
            continue
        m = _TOC_ENTRY.match(line)
        if m and int(m.group(1)) == len(parts) + 1:
            parts.append(Part(int(m.group(1)), m.group(2).strip(), group))
            end = i + 1
            continue
        g = _GROUP.match(line)
        if g and not any(c in line for c in "。；"):
            group = g.group(1).strip()
            end = i + 1
            continue
        break
    return (end, parts) if len(parts) >= 2 else None


def _title_at(lines: list[str], i: int, title: str) -> int:
    """Number of lines the title occupies at ``i`` (0 if it does not start there)."""
    want = _key(title)
    first = _key(lines[i])
    if len(first) < 4 or ENUM_START.match(lines[i]):
        return 0
    if first == want:
        return 1
    j = i + 1
    while j < len(lines) and not lines[j]:
        j += 1
    if j < len(lines):
        both = first + _key(lines[j])
        if both == want or (want.startswith(both) and len(both) >= 0.8 * len(want)):
            return j - i + 1
    # A title cut short at the end of the line, or listed with its period in the
    # table of contents but printed without it.
    if want.startswith(first) and len(first) >= max(10, 0.7 * len(want)):
        return 1
    if first.startswith(want) and len(first) - len(want) <= 12 and not any(c in lines[i] for c in "。；，"):
        return 1
    return 0


def split_compilation(lines: list[str]) -> list[Part] | None:
    """Return the compilation's parts, or None if ``lines`` is not a compilation."""
    toc = _parse_toc(lines)
    if toc is None:
        return None
    cursor, parts = toc
    starts: list[tuple[int, int]] = []
    for part in parts:
        found = None
        for i in range(cursor, len(lines)):
            if lines[i] and (n := _title_at(lines, i, part.title)):
                found = (i, n)
                break
        if found is None:
            return None  # a listed title is missing: better not to guess the split
        starts.append(found)
        cursor = found[0] + found[1]
    for k, (part, (i, n)) in enumerate(zip(parts, starts)):
        stop = starts[k + 1][0] if k + 1 < len(starts) else len(lines)
        part.lines = lines[i + n : stop]
    return parts
