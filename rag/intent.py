"""Intent: whether a question asks for a list of items (and how many), read from its wording once, before
retrieval. A list question gets the sentences or headings that hold every item, and its answer is completed
from them (``rag.listing``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMERAL = "一二三四五六七八九十两"
_CN_VALUE = {c: i for i, c in enumerate("零一二三四五六七八九十", 0)} | {"两": 2}
_COUNTER = "个种所项家名位条类大点级学方面"
# 哪五个 / 哪6所 / 哪两所 / 哪“三化”: a count after 哪 asks for that many items, also when it opens a quoted
# slogan (哪一天, 哪一年 ask for one thing).
_COUNTED_WHICH = re.compile(rf"哪[“\"「『]?([{_NUMERAL.replace('一', '')}][{_NUMERAL}]*|\d+)[{_COUNTER}]?")
# “五学” / 这三所学校 / 六个方面: a number before the noun names how many items the answer holds.
_COUNTED_NOUN = re.compile(rf"([{_NUMERAL}]|\d+)(?:[{_COUNTER}]|位一体)")
_LIST_WORDS = re.compile(r"哪几|哪些|列出|列举|有哪|包括哪|包含哪|分别是什么|分别有")


@dataclass(frozen=True)
class Intent:
    """What the question asks for: a list (``count``: how many items it names, 0 when it names none) or
    something else."""

    kind: str = "other"  # list | other
    count: int = 0


def numeral(text: str) -> int:
    """Value of a small number written in digits or Chinese (一 … 九十九); 0 if it is not one."""
    if text.isdigit():
        return int(text)
    if len(text) == 1:
        return _CN_VALUE.get(text, 0)
    if text.startswith("十"):
        return 10 + _CN_VALUE.get(text[1:], 0)
    tens, _, ones = text.partition("十")
    return _CN_VALUE.get(tens, 0) * 10 + (_CN_VALUE.get(ones, 0) if ones else 0)


def intent_of(question_simplified: str) -> Intent:
    """The kind of answer ``question_simplified`` asks for."""
    q = question_simplified
    # 哪几个方面 asks for the items, not for how many.
    if counted := _COUNTED_WHICH.search(q):
        return Intent("list", numeral(counted.group(1)))
    if _LIST_WORDS.search(q):
        noun = _COUNTED_NOUN.search(q)
        return Intent("list", numeral(noun.group(1)) if noun else 0)
    return Intent()
