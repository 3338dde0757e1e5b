"""Tests for rag.refuse: each named check refuses with its name, and only when it should."""

from __future__ import annotations

import pytest

from rag.answer import refuse
from rag.config import Settings
from rag.normalize import to_simplified
from rag.types import Sentence

UNGROUNDED = "ungrounded: none of the answer's own words is in the sentences it rests on"
MEETING = "2月19日,2024年辽源市教育系统领导干部大会在市第五中学召开。"


def sentence(text: str) -> Sentence:
    return Sentence("d.txt", 0, len(text), text, to_simplified(text), "")


def test_every_check_is_named_once_with_a_real_setting() -> None:
    names = [c.name for c in refuse.CHECKS]
    assert len(names) == len(set(names))
    fields = Settings.model_fields
    assert all(c.setting in fields for c in refuse.CHECKS if c.setting)
    assert {c.setting for c in refuse.CHECKS if c.setting} == {"min_confidence"}


@pytest.mark.parametrize(("text", "structured"), [
    ('{"question": "校长是谁"}', True), ("[1, 2]", True), (' {"a": 1} ', True),
    ("{校长是谁}", False), ("校长是谁？", False), ("[1] 校长是谁", False),
])
def test_structured_messages_are_not_questions(text: str, structured: bool) -> None:
    assert refuse.is_structured(text) is structured
    assert refuse.before_retrieval(text) == ("not_a_question: the message is a JSON value, not a question"
                                             if structured else "")


@pytest.mark.parametrize(("answer", "question", "reason"), [
    ("资料中没有找到答案。", "会议在哪里召开？", "model_not_found: the model said the passages hold no answer"),
    ("", "会议在哪里召开？", "model_not_found: the model said the passages hold no answer"),
    ("共有38所。", "共有几所学校？", "invented_numbers: ['38'] not in the evidence"),
    ("2月19日。", "大会哪天召开？", ""),
    ("在市第五中学召开。", "大会在哪里召开？", ""),
    ("2023年。", "2023年的大会在哪里召开？", ""),  # a figure the question brought is no invention
    ("天空是蓝色的。", "大会在哪里召开？", UNGROUNDED),
    ("大会召开。", "大会在哪里召开？", ""),  # only the question's words: nothing invented
])
def test_after_generation(answer: str, question: str, reason: str) -> None:
    assert refuse.after(answer, [sentence(MEETING)], to_simplified(question)) == reason
