"""Structured facts in a clause's text: the support amount, ratio, duration, beneficiary.

- ``amount_wan``: the largest *support* amount, in 万元 (最高1000万元 → 1000, 1亿元 → 10000,
  5000元 → 0.5, 20-30万元 → 30). Money that is a threshold or a target (营业收入达到2000万元,
  产业规模1200亿元) is not a support amount: an amount counts only with a support cue
  (给予, 奖励, 补助, 最高, 不超过 …) in its own comma-delimited segment.
- ``amount_per_year``: the amount is stated per year (每年最高300万元, 30万元/年).
- ``ratio_pct``: the largest support ratio (按投资额的30%, 50%的比例给予补贴).
- ``duration_years``: the longest support duration (连续支持三年, 补贴期限3年, 免租三年).
- ``beneficiaries``: who receives it, where stated: enterprise, talent, platform, park.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

__all__ = ["Facts", "extract_facts", "cn_number"]

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}


def cn_number(s: str) -> float | None:
    """'30' -> 30, '三' -> 3, '十五' -> 15, '二十' -> 20, '一百' -> 100; None if not a number."""
    s = s.strip()
    if not s:
        return None
    try:
        return float(s)
    except ValueError:
        pass
    total, cur = 0, 0
    for ch in s:
        if ch in _CN_DIGITS:
            cur = _CN_DIGITS[ch]
        elif ch in _CN_UNITS:
            total += (cur or 1) * _CN_UNITS[ch]
            cur = 0
        else:
            return None
    return float(total + cur)


_NUM = r"\d+(?:\.\d+)?|[一二两三四五六七八九十百千]+"
_UNIT = {"亿元": 10000.0, "千万元": 1000.0, "百万元": 100.0, "万元": 1.0, "千元": 0.1, "元": 0.0001}
_MONEY = re.compile(rf"(?P<a>{_NUM})(?:\s*(?:[-~～—至到]|－)\s*(?P<b>{_NUM}))?\s*(?P<unit>亿元|千万元|百万元|万元|千元|元)(?P<tail>/年|每年)?")
_SUPPORT_CUE = re.compile(r"给予|奖励|补助|补贴|资助|支持|贴息|最高|不超过|上限|一次性|配套|资金|奖|扶持|减免|返还|券")
# Money that describes a condition or a target, not what is paid.
_THRESHOLD_CUE = re.compile(r"达到|超过|以上|不少于|不低于|低于|规模|营业收入|营收|产值|销售|纳税|税收|投资额|总投资|注册资本|实到|融资额|增加值|贡献")
_PER_YEAR = re.compile(r"每年|年度|/年|年(?:贴息|补贴|补助|奖励|资助)(?:上限|总额|最高)")
_RATIO = re.compile(r"(?P<v>\d+(?:\.\d+)?)\s*%")
_RATIO_CUE_BEFORE = re.compile(r"按|的$|比例|标准|不超过|最高")
_RATIO_CUE_AFTER = re.compile(r"^(?:的)?(?:比例|标准)?(?:给予|予以|进行)?(?:一次性)?[\u4e00-\u9fff]{0,4}?(?:补助|补贴|奖励|资助|支持|贴息|配套|扶持|减免)")
_DURATION = re.compile(
    rf"(?:连续|期限|最长|前|免租|减免|为期|支持|补贴|资助|补助|奖励|享受)\D{{0,4}}?(?P<n>{_NUM})\s*(?:个)?(?:年|周年)"
    rf"|(?P<m>{_NUM})\s*(?:个)?年(?:内|期限|免租|减半|内免|租金|房租)"
    # "前三年…，第四、第五年按50%": the last ordinal year bounds the support period.
    rf"|第(?P<o>{_NUM})年(?:按|给予|起|补)"
)
_BENEFICIARY = {
    "enterprise": re.compile(r"企业|公司|厂商"),
    "talent": re.compile(r"人才|个人|团队|博士|毕业生|专家|每人|技师|员工|职工"),
    "platform": re.compile(r"平台|机构|实验室|研究院|创新中心|孵化器|众创空间|协会|联盟|高校|院所"),
    "park": re.compile(r"园区|基地|产业园|小镇|集聚区"),
}
_SEGMENT = re.compile(r"[^，,；;。：:]+")


@dataclass
class Facts:
    amount_wan: float | None = None
    amount_per_year: bool = False
    amount_text: str = ""
    ratio_pct: float | None = None
    duration_years: float | None = None
    beneficiaries: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _amounts(text: str):
    for seg in _SEGMENT.finditer(text):
        s = seg.group(0)
        for m in _MONEY.finditer(s):
            left = s[: m.start()]
            if not _SUPPORT_CUE.search(left + s[m.end() : m.end() + 6]):
                continue
            # "达到2000万元" / "营业收入2000万元以上": the nearest cue decides.
            near = left[-8:]
            th = list(_THRESHOLD_CUE.finditer(near))
            sup = list(_SUPPORT_CUE.finditer(near))
            if th and (not sup or th[-1].end() > sup[-1].end()):
                continue
            if re.match(r"\s*(以上|以下|及以上|[（(]含[）)](以上|以下))", s[m.end() :]):
                continue
            # A unit price (50元/平方米) is a rate, not an amount paid.
            if re.match(r"\s*(/|每)\s*(平方米|平米|㎡|m2)", s[m.end() :]) or re.search(r"每平方米\S{0,4}$", left):
                continue
            a = cn_number(m.group("a"))
            b = cn_number(m.group("b")) if m.group("b") else None
            if a is None:
                continue
            value = max(a, b or a) * _UNIT[m.group("unit")]
            per_year = bool(m.group("tail")) or bool(_PER_YEAR.search(left))
            yield value, per_year, s[max(0, m.start() - 10) : m.end()]


def extract_facts(text: str) -> Facts:
    f = Facts()
    found = sorted(_amounts(text), key=lambda x: x[0], reverse=True)
    if found:
        f.amount_wan, f.amount_per_year, f.amount_text = round(found[0][0], 4), found[0][1], found[0][2]
    ratios = []
    for m in _RATIO.finditer(text):
        seg_start = max(text.rfind(c, 0, m.start()) for c in "，,；;。") + 1
        before, after = text[max(seg_start, m.start() - 30) : m.start()], text[m.end() : m.end() + 10]
        if (_RATIO_CUE_BEFORE.search(before) and _SUPPORT_CUE.search(text[m.end() : m.end() + 25])) or _RATIO_CUE_AFTER.search(after):
            v = float(m.group("v"))
            if 0 < v <= 100:
                ratios.append(v)
    f.ratio_pct = max(ratios) if ratios else None
    years = []
    for m in _DURATION.finditer(text):
        n = cn_number(m.group("n") or m.group("m") or m.group("o"))
        if n is not None and 0 < n <= 20:
            years.append(n)
    f.duration_years = max(years) if years else None
    if f.amount_wan is not None or f.ratio_pct is not None or f.duration_years is not None:
        f.beneficiaries = [k for k, rx in _BENEFICIARY.items() if rx.search(text)]
    return f
