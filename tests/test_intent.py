"""Tests for rag.intent: the kind of answer a question asks for."""

from __future__ import annotations

import pytest

from rag.intent import Intent, intent_of
from rag.lang import numeral
from rag.normalize import to_simplified


@pytest.mark.parametrize(("question", "expected"), [
    ("山丹县的师德师风六位一体长效机制包括哪六个方面？", Intent("list", count=6)),
    ("这三所学校指的是哪些？", Intent("list", count=3)),
    ("东莞2023年争取哪两所高校的校区投入使用？", Intent("list", count=2)),
    ("该县年内计划创建为“最强党支部”的是哪6所学校和幼儿园？", Intent("list", count=6)),
    ("重点做好哪几个方面的工作？请列出", Intent("list")),
    ("山丹县提出了哪些措施？", Intent("list")),
    # The count is named where the list is asked for, or after it; one before counts what the question
    # builds on, and one item is no list.
    ("除了这两个重点，会议还部署了哪些工作？", Intent("list")),
    ("关于教学改革这一条，会议提出了哪些要求？", Intent("list")),
    ("全市用好了哪些阵地？请列出其中的四个课堂。", Intent("list", count=4)),
    ("党的二十大报告提出了哪些目标？", Intent("list")),  # a name, not a list's size
    ("全县的三十名考生来自哪几类学校？", Intent("list")),
    ("辽源市第五中学的校长是谁？", Intent("person")),
    ("那篇报道的通讯员和编辑分别是谁？", Intent("person")),
    ("大会由谁主持？", Intent("person")),
    ("每个园区至少建有几所镇办公办园？", Intent("quantity", quantity=True, measure="所")),
    ("共招聘了多少名教师？", Intent("quantity", quantity=True, measure="名人位")),
    ("全县共有多少万人？", Intent("quantity", quantity=True, measure="名人位")),
    ("建成了多少个基地？", Intent("quantity", quantity=True)),  # 个 counts anything
    ("中考成绩排第几名？", Intent("quantity", quantity=True)),  # a rank: no measure asked
    ("阳山县排名第几？", Intent("other")),
    ("动员部署会是在哪一天召开的？", Intent("other", measure="日号", when=True)),  # a day is written 5日, 5号
    ("该校是哪一年建成的？", Intent("other", measure="年", when=True)),
    ("大会在几号召开？", Intent("quantity", quantity=True, measure="日号", when=True)),
    ("他在哪个年级任教？", Intent("other")),  # 年级 is no year
    ("为各校补充了多少册图书？", Intent("quantity", quantity=True, measure="本册")),
    ("该校是什么时候建成的？", Intent("other", when=True)),
    ("哪十二所学校获评示范校？", Intent("list", count=12)),
    ("推动各项任务实现哪“三化”？", Intent("list", count=3)),
])
def test_intent_of(question: str, expected: Intent) -> None:
    assert intent_of(to_simplified(question)) == expected


def test_traditional_questions_are_read_in_simplified() -> None:
    assert intent_of(to_simplified("山丹縣的師德師風“六位一體”長效機制包括哪六個方面？")) == Intent("list", count=6)
    assert intent_of(to_simplified("遼源市教育局局長是誰？")).kind == "person"


@pytest.mark.parametrize(("text", "value"), [("三", 3), ("两", 2), ("十", 10), ("十二", 12), ("二十", 20),
                                             ("二十五", 25), ("6", 6), ("12", 12), ("一百二十三", 123),
                                             ("〇", 0), ("", None), ("三年", None)])
def test_numeral(text: str, value: int | None) -> None:
    assert numeral(text) == value
