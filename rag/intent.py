"""Intent: whether a question asks for a list of items (and how many), read from its wording once.

A list question gets the structure that holds its items as candidates (``rag.answer.candidates``) and its answer is
completed from the source list the model names (``rag.answer.listing``). Other kinds of answer (a person, a place,
a figure) need no rule: the model chooses the sentences that answer, whatever they hold.
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
    """What the question asks for: ``kind`` "list" or "other"; ``count`` is the number of items a list
    question names (0: unknown)."""

    kind: str = "other"
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
    """Whether ``question_simplified`` asks for a list, and of how many items. 哪几个方面 asks for the items,
    not for how many."""
    q = question_simplified
    if counted := _COUNTED_WHICH.search(q):
        return Intent("list", numeral(counted.group(1)))
    if _LIST_WORDS.search(q):
        noun = _COUNTED_NOUN.search(q)
        return Intent("list", numeral(noun.group(1)) if noun else 0)
    return Intent()
