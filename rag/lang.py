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
_QUANTITY_QUESTION = re.compile(r"多少|几[个名所项位次年月日天人家条种类岁倍处批届期]")


def overlap(terms: Sequence[str], text_simplified: str, weights: Sequence[float] | None = None) -> float:
    """Share of ``terms`` (by weight, if given) that occur in the text."""
    if not terms:
        return 0.0
    weights = weights or [1.0] * len(terms)
    return sum(w for t, w in zip(terms, weights, strict=True) if t in text_simplified) / sum(weights)


def asks_quantity(question: str) -> bool:
    """多少… / 几个… questions: their answer must hold a number."""
    return bool(_QUANTITY_QUESTION.search(to_simplified(question)))


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
