"""Cite: narrow an answer to the sentences that support it, verify every span against the source file,
and judge whether the answer is supported at all (evidence for refusal beyond the model's word)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from rag.index import lexical_tokens
from rag.normalize import clean, to_simplified
from rag.prompt import overlap
from rag.types import Citation, Sentence

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_CN_DIGITS = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"两": 2, "〇": 0}
_CN_NUMBER = re.compile(r"[零〇一二两三四五六七八九十百千]+")
_QUANTITY_QUESTION = re.compile(r"多少|几[个名所项位次年月日天人家条种类岁倍处批届期]")
_QUANTITY_ANSWER = re.compile(
    r"\d|[零〇一二两三四五六七八九十百千万亿]+[个名所项位次年月日天人家条种类岁倍元处批届期%]")
# How the model says it found nothing (Simplified).
_NOT_FOUND = re.compile("|".join(["没有找到", "未找到", "没有提到", "未提到", "没有提及", "未提及", "无法回答",
                                   "没有相关", "无相关", "无法确定", "不知道", "没有答案"]))


def says_not_found(answer: str) -> bool:
    return bool(_NOT_FOUND.search(to_simplified(answer)))


def _cn_to_int(word: str) -> int | None:
    """Value of a Chinese numeral up to the thousands (一百二十三 → 123); None if it is not one."""
    total, current = 0, 0
    units = {"十": 10, "百": 100, "千": 1000}
    for c in word:
        if c in _CN_DIGITS:
            current = _CN_DIGITS[c]
        elif c in units:
            total += (current or 1) * units[c]
            current = 0
        else:
            return None
    return total + current


def numbers(text: str) -> set[str]:
    """Numbers written in digits or Chinese numerals, as digit strings."""
    found = set(_NUMBER.findall(text))
    for word in _CN_NUMBER.findall(text):
        value = _cn_to_int(word)
        if value is not None:
            found.add(str(value))
    return found


def unsupported_numbers(answer: str, evidence: Sequence[Sentence], question: str = "") -> set[str]:
    """Numbers in the answer found neither in the evidence nor in the question: likely invented."""
    seen = numbers(question)
    for s in evidence:
        seen |= numbers(s.simplified)
    return {n for n in _NUMBER.findall(to_simplified(answer)) if n not in seen}


def grounding(answer: str, question: str, evidence: Sequence[Sentence], context: str = "") -> float:
    """Share of the answer's own terms (those the question did not bring) found in the evidence.

    A small model sometimes fills a gap with a plausible name or figure; those terms are nowhere in the
    evidence, so a low share means the answer is not grounded.
    """
    asked = set(lexical_tokens(to_simplified(question)))
    terms = [t for t in dict.fromkeys(lexical_tokens(to_simplified(answer))) if t not in asked]
    if not terms:
        return 1.0
    text = "\n".join([to_simplified(context), *(s.simplified for s in evidence)])
    written = numbers(text)  # 第3 is grounded by 第三
    return sum(t in text or t in written for t in terms) / len(terms)


def own_terms(answer_simplified: str, question_simplified: str) -> list[str]:
    """The answer's terms that the question did not bring (all of them if it brought every one)."""
    asked = set(lexical_tokens(question_simplified))
    terms = list(dict.fromkeys(lexical_tokens(answer_simplified)))
    return [t for t in terms if t not in asked] or terms


def asks_quantity(question: str) -> bool:
    """多少… / 几个… questions: their answer must hold a number."""
    return bool(_QUANTITY_QUESTION.search(to_simplified(question)))


def has_quantity(answer: str) -> bool:
    return bool(_QUANTITY_ANSWER.search(to_simplified(answer)))


def support(answer_simplified: str, sentence: Sentence, question_simplified: str = "") -> float:
    """How much of the answer's own content the sentence contains (numbers count double)."""
    terms = own_terms(answer_simplified, question_simplified)
    score = overlap(terms, sentence.simplified)
    asked = set(_NUMBER.findall(question_simplified))
    nums = set(_NUMBER.findall(answer_simplified)) - asked
    if nums:
        score = (score + sum(n in numbers(sentence.simplified) for n in nums) / len(nums) * 2) / 3
    return score


def cite(answer: str, evidence: Sequence[Sentence], sources: Mapping[str, str], *, min_support: float = 0.25,
         max_citations: int = 2, question: str = "") -> list[Citation]:
    """Citations for the best-supporting sentences, each verified against its source text."""
    answer_s, question_s = to_simplified(answer), to_simplified(question)
    scored = [(support(answer_s, s, question_s), i, s) for i, s in enumerate(evidence)]
    ranked = sorted(scored, key=lambda x: (-x[0], x[1]))
    citations: list[Citation] = []
    for score, _, s in ranked:
        if score < min_support or len(citations) >= max_citations:
            break
        if verify(s, sources):
            citations.append(Citation(s.doc_id, s.start, s.end, s.text, s.section))
    return citations


def verify(sentence: Sentence, sources: Mapping[str, str]) -> bool:
    """True when the span re-read from the source cleans to exactly the cited text."""
    source = sources.get(sentence.doc_id)
    return source is not None and 0 <= sentence.start < sentence.end <= len(source) and \
        clean(source[sentence.start:sentence.end]) == sentence.text
