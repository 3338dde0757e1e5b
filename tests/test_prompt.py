"""Tests for rag.prompt: sentence ranking and selection, rendering, list structure, and the service's use of
the sentence-vector cache. Each pins one decision of the prompt stage, so changing it turns a test red."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rag import prompt as prompting
from rag.index import Index
from rag.lang import overlap
from rag.normalize import to_simplified
from rag.prompt import (
    candidate_sentences,
    counted_heading,
    enumerates,
    list_items,
    rank_sentences,
    render,
    select,
    select_list,
)
from rag.question import analyse
from rag.retrieve import search
from rag.service import RagService
from rag.types import Hit, Sentence
from tests.fakes import FakeEmbedder, FakeGenerator

REPO = Path(__file__).resolve().parent.parent
DOC_000 = "000_ae0e48cc884afd96.txt"
DOC_001 = "001_079ce6fb03cbab58.txt"
DOC_004 = "004_c849ceb370c41d84.txt"


def sentence(text: str, score: float, doc: str = "d.txt", start: int = 0) -> Sentence:
    return Sentence(doc, start, start + len(text), text, to_simplified(text), "", score)


def doc_sentences(index: Index, doc_id: str) -> list[Sentence]:
    return candidate_sentences(index, [Hit(c, 0.0) for c in index.chunks_of(doc_id)])


# --- select -------------------------------------------------------------------------------------------------
def test_select_stops_at_sixty_percent_of_the_best_score() -> None:
    ranked = [sentence("甲" * 10, 1.0), sentence("乙" * 10, 0.61, start=20), sentence("丙" * 10, 0.59, start=40)]
    assert [s.text[0] for s in select(ranked, 1000, 4)] == ["甲", "乙"]


def test_select_keeps_the_budget_and_the_count_but_always_one() -> None:
    ranked = [sentence("甲" * 50, 1.0), sentence("乙" * 40, 0.9, start=60), sentence("丙" * 5, 0.8, start=120)]
    assert [s.text[0] for s in select(ranked, 60, 4)] == ["甲", "丙"]
    assert [s.text[0] for s in select(ranked, 10, 4)] == ["甲"]
    assert [s.text[0] for s in select(ranked, 1000, 2)] == ["甲", "乙"]


# --- rank ---------------------------------------------------------------------------------------------------
def test_rank_scores_half_meaning_half_rarity_weighted_terms(index: Index) -> None:
    question = "阳山县在清远市排名第几"
    hits = search(index, analyse(question, FakeEmbedder()), 2)
    sentences = candidate_sentences(index, hits)
    vector = FakeEmbedder().embed_query(question)
    ranked = rank_sentences(sentences, question, vector, FakeEmbedder(), idf=index.idf)
    terms = prompting.content_terms(question)
    for s in ranked:
        dense = float(FakeEmbedder().embed_documents([s.simplified])[0] @ vector)
        lexical = overlap(terms, s.simplified, [index.idf(t) for t in terms])
        assert s.score == pytest.approx(0.5 * dense + 0.5 * lexical, abs=1e-6)
    assert "排名第三" in ranked[0].text


def test_rank_drops_the_title_line_and_ignores_title_terms() -> None:
    title = "山海县教育工作会议"
    sentences = [sentence(title, 0), sentence("会议部署了山海县的工作。", 0, start=20),
                 sentence("全县新建学校三所。", 0, start=40)]
    question = "山海县教育工作会议上全县新建了几所学校"
    vector = FakeEmbedder().embed_query(question)
    ranked = rank_sentences(sentences, question, vector, FakeEmbedder(), {"d.txt": title})
    assert [s.text for s in ranked][0] == "全县新建学校三所。"
    assert title not in [s.text for s in ranked]
    untitled = rank_sentences(sentences, question, vector, FakeEmbedder())
    assert title in [s.text for s in untitled]


# --- render -------------------------------------------------------------------------------------------------
def test_render_quotes_numbered_passages_under_their_title(index: Index) -> None:
    templates = prompting.Templates.load(REPO / "prompts")
    chosen = [sentence("全县新建学校三所。", 1.0, DOC_000), sentence("教师一千名。", 0.9, DOC_000, 20)]
    chat = render(templates, chosen, "新建了几所学校？", {DOC_000: "近日,陽山召開2023年縣委教育工作領導小組會議"})
    assert chat[0] == {"role": "system", "content": templates.system}
    assert chat[1]["content"] == ("资料：\n「\n《近日,陽山召開2023年縣委教育工作領導》\n[1] 全县新建学校三所。\n"
                                  "[2] 教师一千名。\n」\n问题：新建了几所学校？")


# --- lists --------------------------------------------------------------------------------------------------
def test_enumerates_counts_items_joined_by_commas_and_and() -> None:
    assert enumerates(sentence("办好中心园、中心小学和寄宿制学校。", 1), 3)
    assert not enumerates(sentence("办好中心园、中心小学。", 1), 3)
    assert not enumerates(sentence("办好中心园。", 1), 0)


def test_list_items_are_the_headings_of_the_sections_children(index: Index) -> None:
    """Doc 004's sections 一、… 五、 hold the five tasks; asked for five items, the headings come back."""
    anchor = next(s for s in doc_sentences(index, DOC_004) if s.text.startswith("一、坚持党建引领"))
    items = list_items(index, anchor, 5)
    assert [s.text[:2] for s in items] == ["一、", "二、", "三、", "四、", "五、"]
    assert items[0].text == "一、坚持党建引领,凝聚教育发展持久原动力。"
    source = index.sources[DOC_004]
    assert all(source[s.start:s.end].startswith(s.text[:4]) for s in items)


def test_a_heading_with_as_many_parts_as_asked_holds_the_list(index: Index) -> None:
    """The heading «(六)聚焦“规范”,强化“双减”工作» has three numbered parts; a sentence ranked above it that
    lists other things (督查反馈8个方面16项共性问题、3项个性问题) must not win when three are asked for."""
    doc = "003_727ffb95bee0db86.txt"
    sentences = doc_sentences(index, doc)
    head = next(s for s in sentences if s.text.startswith("(六)聚焦“规范”"))
    other = next(s for s in sentences if "3项个性问题" in s.text)
    ranked = [replace(other, score=1.0), replace(head, score=0.9)]
    anchor, items = counted_heading(index, ranked, 3)
    assert anchor.text == head.text
    assert [s.text for s in items] == ["1.规范校内教学。", "2.规范校外服务。", "3.规范家庭教育。"]
    assert counted_heading(index, ranked, 4) == (ranked[0], [])
    assert counted_heading(index, ranked, 0) == (ranked[0], [])


def test_list_items_are_the_clauses_closed_by_semicolons_the_anchor_announces(index: Index) -> None:
    """Doc 004 names the four ways of 抓落实 in four clauses closed by ；after the sentence that announces them."""
    anchor = next(s for s in doc_sentences(index, DOC_004) if s.text.endswith("确定为“抓落实”年。"))
    items = list_items(index, anchor, 0)
    assert [s.text[:7] for s in items] == ["要深入调研抓落", "要结果导向抓落", "要转变作风抓落", "要创新思维抓落"]


def test_list_items_are_the_clauses_closed_by_semicolons_after_the_anchor(index: Index) -> None:
    """The section 一、坚持党建引领 opens with a sentence, then names four tasks in clauses closed by ；.
    Its parent's headings (一、… 五、) are the section and its siblings, not what it holds."""
    anchor = next(s for s in doc_sentences(index, DOC_004) if s.text.startswith("要站在讲政治的高度"))
    items = list_items(index, anchor, 0)
    assert [s.text[:5] for s in items] == ["要强化党的", "要增强基层", "要抓实党员", "要建设高素"]


def test_list_items_under_an_ordinal_item_the_question_names(index: Index) -> None:
    """Asked what «服务支撑制造业高质量发展» involved, the items are the sentences under «二是…», up
    to «三是…»; asked about something else, not those sentences."""
    doc = "002_9f3d902dfed96728.txt"
    anchor = next(s for s in doc_sentences(index, doc) if s.simplified.startswith("二是服务支撑制造业"))
    under = list_items(index, anchor, 0, "为了服务支撑制造业高质量发展，东莞教育主要做了哪些工作？")
    assert under and not any(s.simplified[1] == "是" for s in under)
    assert any("科普教育" in s.simplified for s in under) and any("子女入学" in s.simplified for s in under)
    whole = list_items(index, anchor, 0, "东莞2023年的重点工作有哪几项？")
    assert not any("科普教育" in s.simplified for s in whole)


def test_select_list_puts_the_anchor_then_every_item_within_the_budget() -> None:
    ranked = [sentence("重点做好以下工作。", 1.0), sentence("别的。", 0.9, start=100)]
    items = [sentence(f"{n}是工作{n}。", 0.0, start=10 + i * 10) for i, n in enumerate("一二三")]
    chosen = select_list(ranked, items, 40, 10)
    assert [s.text for s in chosen] == ["重点做好以下工作。", "一是工作一。", "二是工作二。", "三是工作三。"]
    assert [s.text for s in select_list(ranked, items, 20, 10)] == ["重点做好以下工作。", "一是工作一。"]
    # With no structure found, the best sentences fill the budget.
    assert [s.text for s in select_list(ranked, [], 40, 10)] == ["重点做好以下工作。", "别的。"]


# --- the service's prompt stage -----------------------------------------------------------------------------
class CountingEmbedder(FakeEmbedder):
    """The fake embedder, counting the passages it embeds."""

    def __init__(self) -> None:
        super().__init__()
        self.embedded = 0

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.embedded += len(texts)
        return super().embed_documents(texts)


def test_sentence_vectors_are_cached_across_questions(index: Index, fake_settings) -> None:  # type: ignore[no-untyped-def]
    embedder = CountingEmbedder()
    service = RagService(fake_settings, embedder, FakeGenerator(),
                         index)
    service.prepare([{"role": "user", "content": "阳山县在清远市排名第几？"}])
    first = embedder.embedded
    assert first > 0
    service.prepare([{"role": "user", "content": "阳山县在清远市排名第几？"}])
    assert embedder.embedded == first
