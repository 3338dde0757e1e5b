"""Tests for rag.cite: number extraction, unsupported numbers, not-found answers, verified citations."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from rag.cite import cite, miscounted, numbers, says_not_found, support, unsupported_numbers, verify
from rag.index import Index
from rag.prompt import candidate_sentences
from rag.question import analyse
from rag.retrieve import search
from rag.types import Citation, Sentence
from tests.fakes import FakeEmbedder

REPO = Path(__file__).resolve().parent.parent
DOC_000 = "000_ae0e48cc884afd96.txt"
# Document 000 has no headings: its passages sit under its title (no title line: the file's name).
TITLE_000 = "000_ae0e48cc884afd96"
RANKED = ("2022年,省人民政府教育督導室反饋2021年市縣政府履行教育職責評價的結果公布,"
          "陽山縣在清遠市八個縣(市、區)中排名第三,在北部生態發展區37個縣(市區)排名第六,獲優秀等次。")
FOCUS = "要聚焦內涵發展,在提升辦學質量和水平上持續發力。"


@pytest.fixture(scope="module")
def sentences(index: Index) -> list[Sentence]:
    """The sentences of the doc 000 chunk that says 阳山县 ranked third."""
    return candidate_sentences(index, search(index, analyse("阳山县在清远市排名第三", FakeEmbedder()), 1))


def by_start(sentences: list[Sentence], start: int) -> Sentence:
    return next(s for s in sentences if s.start == start)


# --- numbers --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("2022年有37个县", {"2022", "37"}),
    ("增长12.5%,达到0.2740", {"12.5", "0.2740"}),
    ("排名第三", {"3"}),
    ("十二所学校", {"12"}),
    ("二十", {"20"}),
    ("第十名", {"10"}),
    ("一百二十三人", {"123"}),
    ("两千零五年", {"2005"}),
    ("三千", {"3000"}),
    ("排名第三,在37個縣中排名第六", {"3", "37", "6"}),
    ("没有数字", set()),
])
def test_numbers(text: str, expected: set[str]) -> None:
    assert numbers(text) == expected


@pytest.mark.parametrize(("answer", "wrong"), [
    ("47分", {"47分"}),          # the evidence counts 47 activities, not points
    ("共37所", {"37所"}),         # 37 counts counties
    ("47次", set()), ("47场", set()),  # 场 and 次 count the same
    ("5000人", set()), ("5000名学生", set()),  # 名/人/位 count people
    ("第3名", set()), ("三年", set()),  # an ordinal; 三 stands bare in the evidence (第三,)
    ("37个县", set()), ("47个", set()),  # 个 counts anything
    ("1.2万人", set()), ("2022年", set()),
    ("5.6万所", {"5.6万所"}), ("5.6万个", set()),  # 5.6万 places (学位), not schools
])
def test_miscounted(answer: str, wrong: set[str]) -> None:
    evidence = [Sentence("d", 0, 1, t, t, "") for t in ("2022年全县共开展主题活动47次,参与学生5000余人。",
                                                        "排名第三,在37个县中排名第六", "新增公办中小学学位5.6万个。")]
    assert miscounted(answer, evidence, "2022年最高分是多少？") == wrong


def test_unsupported_numbers(sentences: list[Sentence]) -> None:
    evidence = [by_start(sentences, 451)]
    assert unsupported_numbers("阳山县在37个县中排名第六,2021年", evidence) == set()
    assert unsupported_numbers("共38个县,增长12.5%", evidence) == {"38", "12.5"}
    assert unsupported_numbers("排名第3", evidence) == set()  # 第三 in the evidence supports 3
    assert unsupported_numbers("2023年排名第3", evidence) == {"2023"}
    assert unsupported_numbers("2023年排名第3", evidence, question="2023年排名第几") == set()
    assert unsupported_numbers("共有5所", []) == {"5"}


@pytest.mark.parametrize(("answer", "expected"), [
    ("文中没有找到相关信息。", True),
    ("資料中沒有找到相關內容。", True),
    ("参考资料未提及该县的排名。", True),
    ("无法回答这个问题", True),
    ("我不知道。", True),
    ("阳山县在清远市排名第三。", False),
    ("找到了:排名第三。", False),
])
def test_says_not_found(answer: str, expected: bool) -> None:
    assert says_not_found(answer) is expected


# --- verify and cite --------------------------------------------------------------------------------------------
def test_candidate_sentences_of_the_ranked_chunk(sentences: list[Sentence]) -> None:
    assert [(s.start, s.end) for s in sentences] == [(451, 580), (581, 752), (753, 788), (788, 824), (824, 875),
                                                     (875, 957)]
    assert by_start(sentences, 451).text == RANKED
    assert by_start(sentences, 451).simplified.startswith("2022年,省人民政府教育督导室反馈")
    assert by_start(sentences, 824).text == FOCUS


def test_every_candidate_sentence_verifies(index: Index) -> None:
    embedder = FakeEmbedder()
    checked = 0
    for query in ["阳山县在清远市排名第三", "山丹县教育改革", "东莞市教育", "教学成绩有突破", "辽源教育高质量发展"]:
        for s in candidate_sentences(index, search(index, analyse(query, embedder), 5)):
            assert verify(s, index.sources), (s.doc_id, s.start, s.end)
            checked += 1
    assert checked > 100


def test_verify_rejects_tampered_spans(index: Index, sentences: list[Sentence]) -> None:
    genuine = by_start(sentences, 451)
    assert verify(genuine, index.sources) is True
    assert index.sources[DOC_000][451:580].startswith("2022年,省人民政府教育督導(dǎo)室")  # pinyin in the span
    for tampered in [replace(genuine, start=genuine.start + 1), replace(genuine, end=genuine.end - 1),
                     replace(genuine, start=genuine.start + 200, end=genuine.end + 200),
                     replace(genuine, text=genuine.text.replace("第三", "第一")),
                     replace(genuine, doc_id="other.txt"), replace(genuine, end=10**6),
                     replace(genuine, start=-1), replace(genuine, start=genuine.end)]:
        assert verify(tampered, index.sources) is False, tampered


def test_cite_returns_the_supporting_sentence(index: Index, sentences: list[Sentence]) -> None:
    citations = cite("陽山縣在清遠市八個縣（市、區）中排名第三。", sentences, index.sources)
    assert citations == [Citation(DOC_000, 451, 580, RANKED, TITLE_000)]


def test_cite_orders_by_support_and_caps(index: Index, sentences: list[Sentence]) -> None:
    answer = "阳山县排名第三，要聚焦内涵发展，提升办学质量"
    assert support(answer, by_start(sentences, 824)) > support(answer, by_start(sentences, 451)) >= 0.25
    assert [(c.start, c.end) for c in cite(answer, sentences, index.sources)] == [(824, 875), (451, 580)]
    assert [(c.start, c.end) for c in cite(answer, sentences, index.sources, max_citations=1)] == [(824, 875)]
    assert cite("天气很好", sentences, index.sources) == []


def test_cite_drops_a_tampered_span(index: Index, sentences: list[Sentence]) -> None:
    answer = "阳山县排名第三，要聚焦内涵发展，提升办学质量"
    tampered = replace(by_start(sentences, 824), start=830, end=881)  # same text, wrong place
    evidence = [tampered if s.start == 824 else s for s in sentences]
    assert cite(answer, evidence, index.sources) == [Citation(DOC_000, 451, 580, RANKED, TITLE_000)]
    forged = replace(by_start(sentences, 451), text=RANKED.replace("第三", "第一"))
    assert cite("阳山县排名第一", [forged], index.sources) == []
