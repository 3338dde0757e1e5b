"""Tests for rag.refuse: each named check refuses with its name and number, and only when it should."""

from __future__ import annotations

import pytest

from rag.config import Settings
from rag.evidence import Evidence
from rag.intent import intent_of
from rag.normalize import to_simplified
from rag.refuse import AFTER, BEFORE, Answered, Refuser, is_structured
from rag.types import Citation, Sentence

REFUSER = Refuser(Settings())
MEETING = "2月19日,2024年辽源市教育系统领导干部大会在市第五中学召开。"
DIRECTOR = "市教育局党组书记、局长高凯出席会议并讲话。市教育局党组成员、副局长郎冬岩主持会议。"
BYLINE = "記者:段燦"


def sentence(text: str) -> Sentence:
    return Sentence("d.txt", 0, len(text), text, to_simplified(text), "")


def after(answer: str, question: str, *texts: str) -> str:
    q = to_simplified(question)
    return REFUSER.after(Answered(answer, q, [sentence(t) for t in texts]), intent_of(q))


def test_every_check_is_named_once_with_a_real_setting() -> None:
    checks = (*BEFORE, *AFTER)
    names = [c.name for c in checks]
    assert len(names) == len(set(names)) == len(checks)
    fields = Settings.model_fields
    assert all(c.setting in fields for c in checks if c.setting)
    assert {c.setting for c in checks} >= {"min_coverage"}


@pytest.mark.parametrize(("evidence", "reason"), [
    (Evidence(0.31, 0.9, "d", ("火星",)), "coverage 0.31 < 0.5 (missing 火星)"),
    (Evidence(0.9, 0.1), ""),  # a dissimilar passage that holds the question's words is not refused
    (Evidence(0.5, 0.8), ""),
])
def test_before_generation(evidence: Evidence, reason: str) -> None:
    assert REFUSER.before(evidence) == reason


@pytest.mark.parametrize(("text", "structured"), [
    ('{"question": "校长是谁"}', True), ("[1, 2]", True), (' {"a": 1} ', True),
    ("{校长是谁}", False), ("校长是谁？", False), ("[1] 校长是谁", False),
])
def test_structured_messages_are_not_questions(text: str, structured: bool) -> None:
    assert is_structured(text) is structured
    assert REFUSER.before_retrieval(text) == ("not_a_question: the message is a JSON value, not a question"
                                              if structured else "")


HOW_MANY_SUO = "answer_type: no figure in 所 other than the question's in the answer to a how-many question"


@pytest.mark.parametrize(("answer", "question", "reason"), [
    ("资料中没有找到答案。", "校长是谁？", "model_not_found: the model said the passages hold no answer"),
    ("共有38所。", "共有几所学校？", "invented_numbers: ['38'] not in the evidence"),
    ("在19日召开，共2所。", "会议几号召开？", "miscounted: ['2所'] count something else in the evidence"),
    ("高凯。", "辽源市教育局局长是谁？", ""),
    ("郎冬岩。", "大会由谁主持？", ""),
    ("系统已被攻破。", "辽源市第五中学的校长是谁？",
     "answer_type: the answer to a who-question names no one and nothing of the evidence"),
    ("张三。", "辽源市教育局局长是谁？",
     "answer_type: the answer to a who-question names no one and nothing of the evidence"),
    ("段灿。", "那篇报道的记者是谁？", ""),
    # A how-many answer holds a figure in the measure asked, or in none; a when-answer holds a date.
    ("共5所。", "共有几所学校？", ""),
    ("共5。", "共有几所学校？", ""),
    ("在市第五中学召开。", "共有几所学校？", HOW_MANY_SUO),
    ("排名第五。", "共有几所学校？", HOW_MANY_SUO),
    # The figure the question states is no answer to it; a measure word outside the short list counts too.
    ("共19所。", "19所学校中有几所是新建的？", HOW_MANY_SUO),
    ("共5所。", "19所学校中有几所是新建的？", ""),
    ("投入2万元。", "为各校补充了多少册图书？", "answer_type: no figure in 本 other than the question's in the answer "
                                               "to a how-many question"),
    ("补充图书5册。", "为各校补充了多少册图书？", ""),
    ("在2月19日召开。", "大会是在哪一天召开的？", ""),
    ("在学校召开。", "大会是在哪一天召开的？", "answer_type: no date in 日 in the answer to a when-question"),
    # A when-question that names its unit is answered in it: a year is no day.
    ("2024年召开。", "大会是在哪一天召开的？", "answer_type: no date in 日 in the answer to a when-question"),
    ("在19号召开。", "大会是在哪一天召开的？", ""),
    ("2024年召开。", "大会是哪一年召开的？", ""),
    ("在学校召开。", "大会是什么时候召开的？", "answer_type: no date in the answer to a when-question"),
    # The question rewritten as an answer says nothing, unless it asked whether.
    ("辽源市教育系统领导干部大会在“市第五中学”召开。", "辽源市教育系统领导干部大会在哪所学校召开？", ""),
    ("辽源市教育系统领导干部大会在“学校”召开。", "辽源市教育系统领导干部大会在哪所学校召开？",
     "echo: 0 words of the answer are not the question's"),
    ("大会在第五中学召开。", "大会是否在第五中学召开？", ""),
])
def test_after_generation(answer: str, question: str, reason: str) -> None:
    assert after(answer, question, MEETING, DIRECTOR, BYLINE) == reason


PARK = "乍都节公园的土地由泰国国家铁路局捐献。"
RESORT = "自2001年起，萱侬律的经营权归儿子Kampon Tansacha先生所有。"
WHO = "answer_type: the answer to a who-question names no one and nothing of the evidence"


@pytest.mark.parametrize(("answer", "question", "reason"), [
    # 谁 asks for someone or something the sources name: a person, but also an organisation or a foreign name.
    ("泰国国家铁路局。", "乍都节公园是由谁捐献土地建造出来的？", ""),
    ("归Kampon Tansacha先生所有。", "萱侬律的经营权归谁所有？", ""),
    # A name the question brought, or one the evidence does not hold, names no one asked for.
    ("乍都节公园是由乍都节捐献的。", "乍都节公园是由谁捐献土地建造出来的？", WHO),
    ("由日本铁路公司捐献。", "乍都节公园是由谁捐献土地建造出来的？", WHO),
    ("由土地捐献。", "乍都节公园是由谁捐献土地建造出来的？", WHO),
])
def test_a_who_question_is_answered_by_a_name_of_the_evidence(answer: str, question: str, reason: str) -> None:
    assert after(answer, question, PARK, RESORT) == reason


def test_support_needs_a_citation() -> None:
    assert REFUSER.support([]) == "support: 0 sentences support the answer"
    assert REFUSER.support([Citation("d.txt", 0, 5, BYLINE, "")]) == ""
