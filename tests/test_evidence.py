"""Tests for rag.evidence: content words of a question and how well retrieved documents cover them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rag.evidence import MUST_PENALTY, Evidence, EvidenceJudge
from rag.index import Index
from rag.question import analyse, content_words
from rag.retrieve import search
from tests.fakes import FakeEmbedder

REPO = Path(__file__).resolve().parent.parent
DOC_000 = "000_ae0e48cc884afd96.txt"
ANSWERABLE = "阳山县在2021年市县政府履行教育职责评价中排名第几"
OTHER_COUNTY = "山丹县在2021年市县政府履行教育职责评价中排名第几"
OTHER_YEAR = "阳山县在2020年市县政府履行教育职责评价中排名第几"
THRESHOLD = 0.6


@pytest.fixture(scope="module")
def judge(index: Index) -> EvidenceJudge:
    return EvidenceJudge(index)


def assess(index: Index, judge: EvidenceJudge, question: str) -> Evidence:
    analysed = analyse(question, FakeEmbedder())
    return judge.assess(search(index, analysed, 5), analysed.words)


# --- content words ------------------------------------------------------------------------------------------------
def test_content_words_of_the_ranking_question() -> None:
    assert content_words(ANSWERABLE) == [("阳山县", True), ("2021", True), ("县政府", False), ("履行", False),
                                         ("教育", False), ("职责", False), ("评价", False), ("排名", False)]


@pytest.mark.parametrize(("question", "expected"), [
    ("2023年全县新增几名党员", [("2023", True), ("全县", False), ("新增", False), ("党员", False)]),
    ("山丹县提出了哪些措施", [("山丹县", True), ("措施", False)]),
    ("辽源市2024年教育系统领导干部大会在哪里召开",
     [("辽源市", True), ("2024", True), ("教育", False), ("系统", False), ("领导", False), ("干部", False),
      ("大会", False), ("召开", False)]),
    ("文章中提到几所学校", [("学校", False)]),
    ("请问是什么", []),
    # 这次 / 该项 point at what is named elsewhere; 具体、主要、方面 shape any question.
    ("这次会议具体提出了哪几个方面的要求", [("会议", False), ("要求", False)]),
    ("该项工作主要包括什么", [("工作", False)]),
])
def test_content_words_drop_question_words_and_counters(question: str, expected: list[tuple[str, bool]]) -> None:
    assert content_words(question) == expected


def test_question_words_and_counters_never_survive() -> None:
    words = {w for q in [ANSWERABLE, "东莞市有哪些学校", "一共有多少所学校", "第几名", "有几个县", "哪三种方式"]
             for w, _ in content_words(q)}
    assert not words & {"什么", "哪些", "多少", "第几", "几个", "一共", "第几名", "哪三种", "多少所"}


def test_years_are_musts_other_numbers_are_not() -> None:
    words = dict(content_words("1999年和2035年共有37所学校"))
    assert words["1999"] is True and words["2035"] is True
    assert words.get("37") is False


# --- weights and coverage -------------------------------------------------------------------------------------------
def test_weight_is_rarity_across_chunks(index: Index, judge: EvidenceJudge) -> None:
    n = index.chunk_count()
    df = sum("阳山县" in c.simplified for c in index.all_chunks())
    assert (n, df) == (84, 1)
    assert judge.weight("阳山县") == pytest.approx(math.log1p(84 / 2))
    assert judge.weight("不存在的词") == pytest.approx(math.log1p(84))
    assert judge.weight("教育") < judge.weight("阳山县") < judge.weight("不存在的词")


def test_answerable_question_is_covered(index: Index, judge: EvidenceJudge) -> None:
    evidence = assess(index, judge, ANSWERABLE)
    assert evidence.coverage >= THRESHOLD
    assert (evidence.coverage, evidence.doc_id, evidence.missing) == (1.0, DOC_000, ())
    assert -1.0 <= evidence.best_dense <= 1.0


def test_traditional_question_is_covered_too(index: Index, judge: EvidenceJudge) -> None:
    evidence = assess(index, judge, "陽山縣在2021年市縣政府履行教育職責評價中排名第幾")
    assert (evidence.coverage, evidence.doc_id, evidence.missing) == (1.0, DOC_000, ())


@pytest.mark.parametrize(("question", "missing"), [(OTHER_COUNTY, "山丹县"), (OTHER_YEAR, "2020")])
def test_question_about_another_county_or_year_is_not_covered(index: Index, judge: EvidenceJudge, question: str,
                                                              missing: str) -> None:
    evidence = assess(index, judge, question)
    assert evidence.coverage < THRESHOLD
    assert (evidence.doc_id, evidence.missing) == (DOC_000, (missing,))
    total = sum(judge.weight(w) for w, _ in content_words(question))
    assert evidence.coverage == pytest.approx(1 - judge.weight(missing) / total - MUST_PENALTY)


def test_no_hits_means_no_evidence(judge: EvidenceJudge) -> None:
    assert judge.assess([], content_words(ANSWERABLE)) == Evidence(0.0, -1.0)


def test_question_without_content_words_is_not_covered(index: Index, judge: EvidenceJudge) -> None:
    question = analyse("请问是什么", FakeEmbedder())
    hits = search(index, question, 3)
    evidence = judge.assess(hits, question.words)
    assert (evidence.coverage, evidence.doc_id) == (0.0, "")
    assert evidence.best_dense == max(h.dense for h in hits)


def test_answerable_what_is_question_is_covered(index: Index, judge: EvidenceJudge) -> None:
    # jieba segments 什么是五育并举 as 什么/是五育/并举; ``content_words`` (rag/question.py) must not keep
    # "是五育", which no text contains, or a question the corpus answers (001: 1.突出五育並舉) is judged
    # uncovered and refused.
    evidence = assess(index, judge, "什么是五育并举")
    assert evidence.missing == ()
    assert evidence.coverage >= THRESHOLD
