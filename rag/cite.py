"""Cite: narrow an answer to the sentences that support it, verify every span against the source file,
and judge whether the answer is supported at all (evidence for refusal beyond the model's word)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache

from rag.index import lexical_tokens
from rag.lang import CN_NUMBER, measure, numeral, overlap
from rag.normalize import clean, to_simplified
from rag.types import Citation, Sentence

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_MAX_LIST_CITATIONS = 10
_JOINERS = frozenset("是的了")
# How the model says it found nothing (Simplified).
_NOT_FOUND = re.compile("|".join(["没有找到", "未找到", "没有提到", "未提到", "没有提及", "未提及", "无法回答",
                                   "没有相关", "无相关", "无法确定", "不知道", "没有答案"]))


def says_not_found(answer: str) -> bool:
    return bool(_NOT_FOUND.search(to_simplified(answer)))


def numbers(text: str) -> set[str]:
    """Numbers written in digits or Chinese numerals, as digit strings."""
    found = set(_NUMBER.findall(text))
    for word in CN_NUMBER.findall(text):
        value = numeral(word)
        if value is not None:
            found.add(str(value))
    return found


def unsupported_numbers(answer: str, evidence: Sequence[Sentence], question: str = "") -> set[str]:
    """Numbers in the answer found neither in the evidence nor in the question: likely invented."""
    seen = numbers(question)
    for s in evidence:
        seen |= numbers(s.simplified)
    return {n for n in _NUMBER.findall(to_simplified(answer)) if n not in seen}


# What a figure counts: a number answers only when it counts what the evidence counts with it (47分 is not
# 47次; ``rag.lang.measure``).
# A magnitude (5.6万) belongs to the figure, and the unit is what follows it: 5.6万个 (places) is not 5.6万所.
_FIGURE = re.compile(r"(第?)(\d+(?:\.\d+)?|[零〇一二两三四五六七八九十百千]+)([万亿]?)(.?)")


def _figures(text_simplified: str) -> Iterator[tuple[str, str, bool, str]]:
    """Each number of the text: its value, its unit group ("" when no unit follows), whether it is an
    ordinal (第3), and how it is written."""
    for m in _FIGURE.finditer(text_simplified):
        value = m.group(2) if m.group(2)[0].isdigit() else numeral(m.group(2))
        if value is not None:
            yield f"{value}{m.group(3)}", measure(m.group(4)), bool(m.group(1)), m.group(0)


def miscounted(answer: str, evidence: Sequence[Sentence], question: str = "") -> set[str]:
    """Figures of the answer whose number the evidence holds only counting something else: 47分 when the
    evidence says 47次. A number the evidence also writes without a unit, or with the same one, passes, and so
    does 个, which counts anything."""
    seen: dict[str, set[str]] = {}
    for text in (to_simplified(question), *(s.simplified for s in evidence)):
        for value, unit, _, _ in _figures(text):
            seen.setdefault(value, set()).add(unit)
    return {written for value, unit, ordinal, written in _figures(to_simplified(answer))
            if unit not in ("", "个") and not ordinal and value in seen and not seen[value] & {unit, ""}}


def counts_in(answer: str, group: str, question: str = "") -> bool:
    """True when the answer holds a figure (not an ordinal) counted in the measure-word ``group`` or in none
    (47分 or 47 for 分; not 8个县 nor 第三), other than the figures the question states (50名中校长有多少名:
    not 50名)."""
    stated = {value for value, _, _, _ in _figures(to_simplified(question))}
    return any(not ordinal and unit in (group, "") and value not in stated
               for value, unit, ordinal, _ in _figures(to_simplified(answer)))


def own_terms(answer_simplified: str, question_simplified: str) -> list[str]:
    """The answer's terms that the question did not bring (all of them if it brought every one)."""
    return own_words(answer_simplified, question_simplified) or \
        list(dict.fromkeys(lexical_tokens(answer_simplified)))


def own_words(answer: str, question: str) -> list[str]:
    """The answer's terms that the question did not bring (none when it only repeats the question). A
    bigram across 是/的/了 (…第二项是|宣讲…) joins the question's words to the answer's and says nothing."""
    asked = set(lexical_tokens(to_simplified(question)))
    return [t for t in dict.fromkeys(lexical_tokens(to_simplified(answer)))
            if t not in asked and not (len(t) == 2 and _JOINERS.intersection(t))]


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
         max_citations: int = 2, question: str = "", collective: bool = False) -> list[Citation]:
    """Citations for the best-supporting sentences, each verified against its source text.

    ``collective`` (a list answer): when no one sentence supports enough, the sentences that each hold some
    of the items support it together, if together they hold ``min_support`` of it.
    """
    answer_s, question_s = to_simplified(answer), to_simplified(question)
    scored = [(support(answer_s, s, question_s), i, s) for i, s in enumerate(evidence)]
    ranked = sorted(scored, key=lambda x: (-x[0], x[1]))
    chosen = [s for score, _, s in ranked if score >= min_support][:max_citations]
    if not chosen and collective:
        parts = [s for score, _, s in sorted(scored, key=lambda x: x[1]) if score > 0][:_MAX_LIST_CITATIONS]
        joined = Sentence("", 0, 0, "", "\n".join(s.simplified for s in parts), "")
        chosen = parts if parts and support(answer_s, joined, question_s) >= min_support else []
    return [Citation(s.doc_id, s.start, s.end, s.text, s.section) for s in chosen if verify(s, sources)]


def verify(sentence: Sentence, sources: Mapping[str, str]) -> bool:
    """True when the span re-read from the source cleans to exactly the cited text."""
    source = sources.get(sentence.doc_id)
    return source is not None and 0 <= sentence.start < sentence.end <= len(source) and \
        clean(source[sentence.start:sentence.end]) == sentence.text


# --- who-questions: the answer must name someone or something of the evidence -----------------------------
# A name right after a title ("记者:段灿", "局长高凯"): the titles that introduce people in these documents.
_TITLED = re.compile(r"(?:记者|编辑|通讯员|作者|主持人|摄影|校长|园长|院长|局长|书记|主任|部长|县长|市长|区长|"
                     r"镇长|委员|组长|主席|教师|老师|同志)[:：\s]*([\u4e00-\u9fff]{2,3}?)"
                     r"(?=$|[\s,，。、;；:：]|出席|主持|讲话|作|在|指出|强调|表示|要求|参加|介绍|同志)")


@lru_cache(maxsize=4096)
def names_in(text_simplified: str) -> frozenset[str]:
    """People's names in a text: words jieba tags as person names, and names right after a title."""
    import jieba.posseg as pseg  # heavy dictionary: load on first use

    found = {w for w, flag in pseg.lcut(text_simplified) if flag.startswith("nr") and 2 <= len(w) <= 4}
    return frozenset(found | set(_TITLED.findall(text_simplified)))


# jieba's tags of names: of people, places, organisations, other proper nouns; words in Latin letters.
_NAME_TAGS = frozenset({"nr", "nrfg", "nrt", "ns", "nt", "nz", "eng"})


def named(answer: str, evidence: Sequence[Sentence], question: str = "") -> set[str]:
    """Who or what the answer names from the evidence: the people the evidence names (``names_in``), and the
    answer's own proper nouns (jieba's name tags) that an evidence sentence holds and the question did not
    bring. A who-question asks for someone or something named in the sources: a person, but also a team, a
    country, a company («泰国国家铁路局», «Kampon Tansacha»)."""
    import jieba.posseg as pseg  # heavy dictionary: load on first use

    answer_s, question_s = to_simplified(answer), to_simplified(question)
    text = "\n".join(s.simplified for s in evidence)
    people = {n for s in evidence for n in names_in(s.simplified) if n in answer_s}
    return people | {w for w, flag in pseg.lcut(answer_s)
                     if flag in _NAME_TAGS and len(w) >= 2 and w not in question_s and w in text}

