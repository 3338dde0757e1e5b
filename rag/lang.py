"""General Chinese text helpers that several stages read: clauses, numbering, how-many questions, term
overlap. Kept once here, below the stages, so that a stage never imports a later one for them."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag.chunk import HEADINGS
from rag.normalize import to_simplified

# One clause: the text between clause and sentence punctuation.
CLAUSE = re.compile(r"[^，,；;：:。！？!?]+")
# A question answered yes or no, or by picking one of its own options: its answer may use only its words.
CHOICE_QUESTION = re.compile(r"是否|还是|是不是|有没有|吗")
# An ordinal that opens an item sentence: 一是…, 首先…, 第二，…
ORDINAL = re.compile(r"^(?:[一二三四五六七八九十]+是|首先|其次|再次|最后|第[一二三四五六七八九十]+[,，、是])")
# A list of more items than this is a catalogue, not an answer (nor is a larger number a list's size).
MAX_LIST_ITEMS = 12
# What a figure counts, by the measure word after it; the words of one group count the same thing (182名 and
# 182人 are the same people; 3场 and 3次). The common measure words of one character, individual (张, 辆),
# of events (次, 届), of time and date (天, 日/号) and of measurement (吨, 米, 元); 点, 口, 里 and 道 are left
# out, being words of their own as often (两点要求, 人口, 公里).
MEASURE_GROUPS = ("名人位", "所", "个", "项", "场次回遍趟", "分", "元", "家", "座", "条", "篇", "本册", "岁", "倍",
                  "届", "批", "天", "年", "月", "日号", "周", "%％", "亩", "户", "期", "种", "类", "件", "台", "套",
                  "处", "张", "辆", "架", "艘", "间", "栋幢", "层", "部", "首", "支", "棵株", "只头匹", "块", "份",
                  "轮", "门", "节", "页", "章", "双", "对", "组", "队", "箱", "瓶", "吨", "斤", "克", "米")
_MEASURE = {u: group for group in MEASURE_GROUPS for u in group}
# 多少… / 几所…: a question for a figure (几 alone is also "a few": 十几, 几乎).
_QUANTITY_QUESTION = re.compile(rf"多少|几[{''.join(u for u in _MEASURE if u.isalpha())}]")
# A number in Chinese numerals, up to the thousands (一百二十三, 两, 〇).
CN_NUMBER = re.compile(r"[零〇一二两三四五六七八九十百千]+")
_CN_DIGITS = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"两": 2, "〇": 0}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}


def overlap(terms: Sequence[str], text_simplified: str, weights: Sequence[float] | None = None) -> float:
    """Share of ``terms`` (by weight, if given) that occur in the text."""
    if not terms:
        return 0.0
    weights = weights or [1.0] * len(terms)
    return sum(w for t, w in zip(terms, weights, strict=True) if t in text_simplified) / sum(weights)


def asks_quantity(question: str) -> bool:
    """多少… / 几个… questions: their answer must hold a number."""
    return bool(_QUANTITY_QUESTION.search(to_simplified(question)))


def measure(char: str) -> str:
    """The measure-word group ``char`` belongs to ("" when it is no measure word)."""
    return _MEASURE.get(char, "")


def numeral(text: str) -> int | None:
    """Value of a number written in digits (12) or in Chinese numerals up to the thousands (十二, 一百二十三,
    两); None if it is not one."""
    if text.isdigit():
        return int(text)
    total, current = 0, 0
    for c in text:
        if c in _CN_DIGITS:
            current = _CN_DIGITS[c]
        elif c in _CN_UNITS:
            total += (current or 1) * _CN_UNITS[c]
            current = 0
        else:
            return None
    return total + current if text else None


def unnumbered(text: str) -> str:
    """``text`` without the numbering that opens it (（一）, 1., 一、, 一是, 首先…)."""
    for _, pattern in HEADINGS:
        if m := pattern.match(text):
            return text[m.end():].strip()
    return ORDINAL.sub("", text, count=1).strip()


def item_name(simplified: str) -> str:
    """What names an item sentence: its first clause, without its numbering (（一）坚持党建引领，… → 坚持党建引领)."""
    text = unnumbered(simplified.strip())
    first = CLAUSE.match(text)
    return first.group() if first else text
