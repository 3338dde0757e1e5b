"""Intent: what kind of answer a question asks for — a list of items (and how many), a person, a quantity —
read from its wording once, before retrieval.

The kind steers the prompt (a list question gets the sentences or headings that hold every item) and one refusal
check (a who-question must be answered by someone or something the evidence names, a how-many question by a
figure in the measure asked, a when-question by a date).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.lang import MAX_LIST_ITEMS, asks_quantity, measure, numeral

_NUMERAL = "一二三四五六七八九十两"
_COUNTER = "个种所项家名位条类大点级学方面"
# 哪五个 / 哪6所 / 哪两所 / 哪“三化”: a count after 哪 asks for that many items, also when it opens a quoted
# slogan (哪一天, 哪一年 ask for one thing).
_COUNTED_WHICH = re.compile(rf"哪[“\"「『]?([{_NUMERAL.replace('一', '')}][{_NUMERAL}]*|\d+)[{_COUNTER}]?")
# “五学” / 这三所学校 / 六个方面: a number before the noun names how many items the answer holds.
_COUNTED_NOUN = re.compile(rf"([{_NUMERAL}]+|\d+)(?:[{_COUNTER}]|位一体)")
_CLAUSE_MARKS = "，,；;：:。！？!?"
_LIST_WORDS = re.compile(r"哪几|哪些|列出|列举|有哪|包括哪|包含哪|分别是什么|分别有")
_PERSON = re.compile(r"谁")
# 多少分 / 几名 / 多少万元: the measure word a how-many question asks its figure in (个 counts anything; 第几名
# asks for a rank, not a count).
_ASKED_MEASURE = re.compile(r"(?:多少|(?<!第)几)[万亿]?(.)")
# 哪一天 / 哪年 / 什么时候: a question for a time, answered by a date; one that names the unit (哪一天, 哪一年)
# is answered in it (a day is written 5日, 5号).
_WHEN = re.compile(r"哪一?个?([天年月日])(?![级纪])|何时|什么时候|什么时间|几月|几号")
_DATE_UNIT = {"天": "日"}


@dataclass(frozen=True)
class Intent:
    """What the question asks for. ``count`` is the number of items a list question names (0: unknown);
    ``measure`` the measure-word group a how-many question asks its figure in, or a when-question its date
    (``rag.lang.measure``; "" for none or 个); ``when`` says it asks for a time."""

    kind: str = "other"  # list | person | quantity | other
    quantity: bool = False
    count: int = 0
    measure: str = ""
    when: bool = False


def intent_of(question_simplified: str) -> Intent:
    """The kind of answer ``question_simplified`` asks for."""
    q = question_simplified
    quantity = asks_quantity(q)
    # 哪几个方面 asks for the items, not for how many.
    if counted := _COUNTED_WHICH.search(q):
        return Intent("list", "多少" in q, numeral(counted.group(1)) or 0)
    if asking := _LIST_WORDS.search(q):
        # The count is named where the list is asked for, or after (请列出…三个课堂); a number before that
        # clause counts what the question builds on (除了这三个聚焦，还部署了哪些举措). A list has two items or
        # more, and a larger number names a thing (党的二十大), not a list's size.
        noun = _COUNTED_NOUN.search(q, max(q.rfind(p, 0, asking.start()) for p in _CLAUSE_MARKS) + 1)
        count = (numeral(noun.group(1)) or 0) if noun else 0
        return Intent("list", "多少" in q, count if 2 <= count <= MAX_LIST_ITEMS else 0)
    if _PERSON.search(q):
        return Intent("person", quantity)
    asked = _ASKED_MEASURE.search(q)
    unit = measure(asked.group(1)) if asked and quantity else ""
    if (when := _WHEN.search(q)) and when.group(1):
        unit = measure(_DATE_UNIT.get(when.group(1), when.group(1)))
    return Intent("quantity" if quantity else "other", quantity, measure="" if unit == "个" else unit,
                  when=bool(when))

