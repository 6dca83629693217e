"""Structured facts in a clause's text: the support amount and its kind, ratio, duration, beneficiary.

- ``amount_kind``: what the clause's money is. Each money mention is classified, then the
  clause takes the first kind present in the order cap > budget > ratio > statistic:

  - ``cap``: what one beneficiary can get, a cap or a fixed award (单个企业最高500万元,
    每家每年不超过30万元, 给予300万元奖励, 补贴总额不超过150万元 per firm, 10000元/人).
  - ``budget``: money a government sets aside for a programme, not for one recipient: fund
    sizes (设立总规模20亿元的基金, 子基金，规模50亿元), appropriations (每年安排4000万元,
    专项资金每年投入不低于10亿元, 相关资金262亿元, 预算安排14.2亿元), voucher pools
    (算力券总额2.5亿元). A budget outranks a ratio and a statistic: it is still support money.
  - ``ratio``: a subsidy given only as a share (ratio_pct: 按采购额4%奖励, 按工程造价70%补助)
    with no money of its own; its money, if any, is the threshold or base the share is
    bound to (采购额150万元以上), and that is what ``amount_wan`` holds.
  - ``statistic``: money that measures something instead of being paid: targets and market
    figures (产业规模达到200亿元, 营收突破1000亿元, 投资金额总量达87亿元) and eligibility
    thresholds (营业收入达到2000万元以上, 单位价值不超过500万元的资产).
  - ``None``: no money and no support ratio (or only per-area prices, see below).

- ``amount_wan``: the largest amount *of that kind*, in 万元 (最高1000万元 → 1000, 1亿元 → 10000,
  2.13万亿元 → 213000000, 5000元 → 0.5, 20-30万元 → 30). It is kept for every kind, so a budget
  of 262亿元 is ``2620000`` with kind ``budget``: whoever compares what one firm gets must
  filter or sort on ``cap`` (the store does so by default). Unit prices per area or per unit of
  something other than a beneficiary (50元/平方米, 60万元/亩, 0.35元/度, 0.05元/美元) are rates,
  not amounts, and are never counted; per-beneficiary units (10000元/人, 1000元/个工位) are.
- ``amount_per_year``: that amount is stated per year (每年最高300万元, 30万元/年).
- ``amount_text``: the words that state that amount, from a word start (what the page highlights).
- ``ratio_pct``: the largest support ratio (按投资额的30%, 50%的比例给予补贴).
- ``duration_years``: the longest support duration (连续支持三年, 补贴期限3年, 免租三年).
- ``beneficiaries``: who receives it, where stated: enterprise, talent, platform, park.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

__all__ = ["Facts", "extract_facts", "cn_number", "format_amount", "AMOUNT_KINDS"]

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
AMOUNT_KINDS = ("cap", "budget", "ratio", "statistic")
_UNIT = {"万亿元": 1e8, "亿元": 10000.0, "千万元": 1000.0, "百万元": 100.0, "万元": 1.0, "千元": 0.1, "元": 0.0001}
_MONEY = re.compile(
    rf"(?P<a>{_NUM})(?:\s*(?:[-~～—至到]|－)\s*(?P<b>{_NUM}))?\s*(?P<unit>万亿元|亿元|千万元|百万元|万元|千元|元)(?P<tail>/年|每年)?"
)
# Words that make money a payment. "投资金额" is not "资金"; "给予不低于" is a payment, not a threshold.
_SUPPORT_CUE = re.compile(
    r"给予不低于|给予不少于|给予|可获得|可获|奖励|补助|补贴|资助|支持|贴息|最高|不超过|不高于|上限|限额|一次性|配套|(?<![投募融集])资金|奖|扶持|减免|返还|券|补偿|经费|津贴|限补|限奖|限$|每人|每户|每家|每个|单个|单家|每项|每件"
)
# Bounds say "at most"; whose bound it is decides: 补贴不超过 (a cap) vs 收入不超过 (a threshold).
_BOUND = re.compile(r"最高|不超过|不高于|上限|限额")
# Money that measures something (a condition, a target, a market) instead of being paid.
_THRESHOLD_CUE = re.compile(
    r"达到|(?<![可高贴助励持])达|超过|突破|(?<!最高不)超|以上|以下|不少于|不低于|低于|大于|规模|营业收入|营收|收入|产值|销售|纳税|税收|"
    r"投资|注册资本|实到|融资额|增加值|贡献|价值|成交额|交易额|贸易额|签约额|采购额|营业额|造价|贷款额|留成|出让"
)
_THRESHOLD_NOUN_BEFORE_BOUND = re.compile(
    r"(?:规模|收入|营收|产值|销售额?|纳税额?|税收|投资额?|注册资本|融资额|增加值|贡献|价值|成交额|交易额|贸易额|采购额|营业额|造价|贷款额)"
    r"(?:总额)?[在须应均]?$"
)
# Budgets: money set aside for a programme. The cue must lead straight to the amount (at most
# a few words of "size" between), so that 专项资金给予不超过3000万元 (paid to one recipient) or
# 基金退出时…贡献达到500万元 (a threshold) are not budgets.
_BUDGET_CUE = re.compile(
    r"安排|列支|预算|财政投入|(?:财政|政府)[^，,。；;]{0,10}出资|首期|捐资|相关资金|专项资金|创建资金|工作经费|基金|资金池|基金池|风险池|总规模|设立总额|发放总额|每年发放|券”?总额|整合投入"
)
_BUDGET_BLOCK = re.compile(r"给予|申请|奖励|补助|补贴|资助|支持|扶持|补偿|贴息|奖补|管理|退出|投资|对|按|每家|每个|单个|单家|每人|[。；;]")
# "给予每年补助工作经费3万元": funds named after a payment verb go to that recipient.
_PAID_BEFORE_BUDGET = re.compile(r"给予|补助|奖励|资助|补贴")
_BUDGET_AFTER = re.compile(r"^[^，,。；;]{0,15}?(?:基金|资金池|财政投入|算力券|模型券)")
# A price per area or per unit of something other than a beneficiary is a rate, not an amount.
_RATE_AFTER = re.compile(r"^\s*(?:/|／|每)\s*(?:平方米|平米|㎡|m2|亩|度|美元|吨|立方米)")
_RATE_BEFORE = re.compile(r"每(?:平方米|平米|亩|度)\S{0,6}$")
_THRESHOLD_AFTER = re.compile(r"^\s*(?:[（(]含[^）)]{0,8}[）)])?\s*(?:以上|以下|及以上|及以下)")
# "10万元奖励", "100万元的一次性补助": money named as the payment itself.
_PAID_AFTER = re.compile(r"^\s*(?:的)?(?:一次性)?(?:奖励|补助|补贴|资助|资金|扶持|奖金|贴息|支持|津贴|启动资金)")
# Comparatives take their subject: 支持额度不低于5000万元 is a payment, 收入不低于8000万元 is not.
_COMPARATIVE = re.compile(r"达到|达|超过|突破|超|不少于|不低于|低于|大于")
# "达到1亿元、5000万元及3000万元", "1000万元（含）-2000万元": the later amounts of a list or a
# range have the role of the first (the cue stands before the first one only).
_LIST_CONTINUES = re.compile(r"^\s*(?:[（(]含[）)])?\s*[、及和或与至到\-－—~～]\s*$")
_PER_YEAR = re.compile(r"每年|年度|/年|年(?:贴息|补贴|补助|奖励|资助)(?:上限|总额|最高)")
_RATIO = re.compile(r"(?P<v>\d+(?:\.\d+)?)\s*%")
_RATIO_CUE_BEFORE = re.compile(r"按|的$|比例|标准|不超过|最高")
# "地方留成部分…第一年返40%": a tax refund stated as a share is a support ratio by itself.
_RATIO_REFUND = re.compile(r"返还?$")
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
_SENTENCE_END = re.compile(r"[。；;！!？?\n]")


@dataclass
class Facts:
    amount_wan: float | None = None
    amount_per_year: bool = False
    amount_text: str = ""
    amount_kind: str | None = None  # cap | budget | ratio | statistic (see the module docstring)
    ratio_pct: float | None = None
    duration_years: float | None = None
    beneficiaries: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _is_budget(wide_left: str, right: str, near_left: str) -> bool:
    cues = list(_BUDGET_CUE.finditer(wide_left))
    if cues and not _PAID_BEFORE_BUDGET.search(wide_left[max(0, cues[-1].start() - 8) : cues[-1].start()]):
        between = wide_left[cues[-1].end() :]
        # "基金，首期规模达" / "专项资金每年投入不低于" lead to the amount; "专项资金给予" pays a recipient.
        if len(between) <= 12 and not _BUDGET_BLOCK.search(between):
            return True
    # "设立500万元的风险补偿基金", "增加2亿元左右的财政投入": the fund is named after the amount.
    return bool(_BUDGET_AFTER.search(right)) and not _BUDGET_BLOCK.search(near_left)


def _role(left: str, right: str, wide_left: str, upto_next: str) -> str | None:
    """The kind of one money mention: cap, budget, statistic, or None for a rate.

    ``left``/``right``: its comma-delimited part of the sentence before and after it;
    ``wide_left``: up to 25 characters before it within the sentence; ``upto_next``: the
    text after it up to the next amount."""
    if _RATE_AFTER.match(right) or _RATE_BEFORE.search(left):
        return None
    # Budgets first: 基金规模不低于200亿元, 每年保持3000万元以上的基金 use threshold words.
    if _is_budget(wide_left, right, left[-8:]):
        return "budget"
    if _THRESHOLD_AFTER.match(right):  # 营业收入2000万元以上, 15万元以下
        return "statistic"
    if _PAID_AFTER.match(right):
        return "cap"
    near = left[-12:]
    th = list(_THRESHOLD_CUE.finditer(near))
    sup = list(_SUPPORT_CUE.finditer(near))
    if sup and _BOUND.fullmatch(sup[-1].group(0)) and _THRESHOLD_NOUN_BEFORE_BOUND.search(near[: sup[-1].start()]):
        # "年销售收入不超过2000万元": the bound belongs to the revenue, a condition.
        return "statistic"
    if th and (not sup or th[-1].end() > sup[-1].end()):
        if _COMPARATIVE.fullmatch(th[-1].group(0)) and re.search(r"(?:补贴|补助|奖励|资助|支持|扶持)(?:额度|金额|资金)?$", near[: th[-1].start()]):
            return "cap"
        return "statistic"  # the nearest cue decides: "达到2000万元" / "营业收入2000万元"
    # No cue near the amount: a payment if support is spoken of in its part of the sentence
    # ("租房补贴:拔尖人才5000元/月", "…每年6万元…标准发放住房租赁补贴").
    if sup or _SUPPORT_CUE.search(wide_left + upto_next):
        return "cap"
    return "statistic"  # money nobody is given: a figure (产业规模…, 旅游投资100亿元)


# Where a snippet may begin: after punctuation or a space, or where a cue word starts. A fixed
# count of characters back cut words in two ("业租用经认定的…", "持有限额…").
_SNIPPET_LEAD = 14
_WORD_START = re.compile(r"(?<=[\s、）)“\"《/])|给予|对|按|最高|不超过|单个|单家|每家|每个|每年|每人|一次性|可获得?|分别")


def _snippet(seg: str, m: re.Match) -> str:
    """The words around one money mention within its comma-delimited part ``seg``: from a word
    start at most ``_SNIPPET_LEAD`` characters back (the part's own start when it is that
    close) to the amount, plus the payment noun right after it (10万元奖励). Always a
    substring of the clause: the page finds it there to highlight it."""
    lo = max(0, m.start() - _SNIPPET_LEAD)
    if lo == 0:
        start = 0
    else:
        starts = [x.start() for rx in (_WORD_START, _SUPPORT_CUE, _BUDGET_CUE, _THRESHOLD_CUE) for x in rx.finditer(seg, lo, m.start())]
        start = min(starts, default=m.start())
    end = m.end()
    if paid := _PAID_AFTER.match(seg[end:]):
        end += paid.end()
    return seg[start:end]


def _mentions(text: str):
    """(kind, amount in 万元, per year, surrounding text) for every money mention."""
    for seg in _SEGMENT.finditer(text):
        s = seg.group(0)
        prev_end, prev_kind = None, None
        found = list(_MONEY.finditer(s))
        for i, m in enumerate(found):
            left, right = s[: m.start()], s[m.end() :]
            # Up to 25 characters back across commas, within the sentence: "子基金，规模50亿元".
            start = seg.start() + m.start()
            wide = text[max(0, start - 25) : start]
            ends = list(_SENTENCE_END.finditer(wide))
            wide = wide[ends[-1].end() :] if ends else wide
            if prev_end is not None and _LIST_CONTINUES.match(s[prev_end : m.start()]):
                kind = prev_kind
            else:
                upto_next = s[m.end() : found[i + 1].start()] if i + 1 < len(found) else right
                kind = _role(left, right, wide, upto_next)
            prev_end, prev_kind = m.end(), kind
            if kind is None:
                continue
            a = cn_number(m.group("a"))
            b = cn_number(m.group("b")) if m.group("b") else None
            if a is None or (m.group("unit") == "元" and not m.group("a")[0].isdigit()):
                continue  # "人机物三元": 元 after a Chinese numeral is rarely money
            value = max(a, b or a) * _UNIT[m.group("unit")]
            per_year = bool(m.group("tail")) or bool(_PER_YEAR.search(left))
            yield kind, value, per_year, _snippet(s, m)


def extract_facts(text: str) -> Facts:
    f = Facts()
    found = list(_mentions(text))
    ratios = []
    for m in _RATIO.finditer(text):
        seg_start = max(text.rfind(c, 0, m.start()) for c in "，,；;。") + 1
        before, after = text[max(seg_start, m.start() - 30) : m.start()], text[m.end() : m.end() + 10]
        if (
            (_RATIO_CUE_BEFORE.search(before) and _SUPPORT_CUE.search(text[m.end() : m.end() + 25]))
            or _RATIO_CUE_AFTER.search(after)
            or _RATIO_REFUND.search(before)
        ):
            v = float(m.group("v"))
            if 0 < v <= 100:
                ratios.append(v)
    f.ratio_pct = max(ratios) if ratios else None
    by_kind = {k: [x for x in found if x[0] == k] for k in ("cap", "budget", "statistic")}
    if by_kind["cap"]:
        f.amount_kind, pick = "cap", by_kind["cap"]
    elif by_kind["budget"]:
        f.amount_kind, pick = "budget", by_kind["budget"]
    elif f.ratio_pct is not None:
        # A share with no money of its own: its money is the threshold/base it is bound to.
        f.amount_kind, pick = "ratio", by_kind["statistic"]
    elif by_kind["statistic"]:
        f.amount_kind, pick = "statistic", by_kind["statistic"]
    else:
        pick = []
    if pick:
        best = max(pick, key=lambda x: x[1])  # the first of equal amounts
        f.amount_wan, f.amount_per_year, f.amount_text = round(best[1], 4), best[2], best[3]
    years = []
    for m in _DURATION.finditer(text):
        n = cn_number(m.group("n") or m.group("m") or m.group("o"))
        if n is not None and 0 < n <= 20:
            years.append(n)
    f.duration_years = max(years) if years else None
    # Who receives support; a clause that only states figures (kind statistic) names nobody.
    if f.amount_kind in ("cap", "budget", "ratio") or f.duration_years is not None:
        f.beneficiaries = [k for k, rx in _BENEFICIARY.items() if rx.search(text)]
    return f


def format_amount(wan: float | None, per_year: bool = False) -> str:
    """An amount in 万元 as policy documents write it: 1亿元 and up in 亿元 (10000000 → 1000亿元),
    1万亿元 and up in 万亿元, under 1万元 in 元 (0.5 → 5000元), else 万元; at most four
    decimals, none when whole. The page's ``formatAmount`` does the same (tested against it)."""
    if wan is None:
        return ""
    for unit, size in (("万亿元", 1e8), ("亿元", 1e4), ("万元", 1.0)):
        if abs(wan) >= size:
            break
    else:
        unit, size = "元", 1e-4
    text = f"{wan / size:.4f}".rstrip("0").rstrip(".")
    return text + unit + ("/年" if per_year else "")
