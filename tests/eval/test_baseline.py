"""The naive baseline: its refusal rule, its prompt, and what it asks the model."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from rag.config import Settings
from rag.eval.baseline import REFUSAL_PHRASES, Baseline, load_template, refusal_phrase, render
from rag.generate import Completion, Message
from rag.types import Chunk, Hit
from tests.fakes import FakeGenerator

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = "资料：\n{passages}\n问题：{question}"


def hit(doc_id: str, text: str, title: str = "") -> Hit:
    chunk = Chunk(chunk_id=f"{doc_id}#0", doc_id=doc_id, start=0, end=len(text), section=(), text=text,
                  simplified=text, title=title)
    return Hit(chunk, 1.0)


class RecordingGenerator(FakeGenerator):
    """The fake generator, keeping the messages it was sent."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply=reply)
        self.sent: list[list[Message]] = []

    def stream(self, messages: Sequence[Message], max_tokens: int,
               temperature: float) -> Iterator[str | Completion]:
        self.sent.append(list(messages))
        yield from super().stream(messages, max_tokens, temperature)


def test_a_reply_refuses_when_it_says_a_general_refusal_phrase() -> None:
    assert refusal_phrase("我不知道。") == "不知道"
    assert refusal_phrase("資料中沒有找到答案") == "没有找到"  # Traditional
    assert refusal_phrase("资料中未提及此事") == "未提及"
    assert refusal_phrase("  \n") == "(empty)"
    assert refusal_phrase("踢爆") == ""
    assert REFUSAL_PHRASES[0] == "不知道"  # the phrase the prompt asks for comes first


def test_the_prompt_numbers_the_passages_under_their_titles() -> None:
    hits = [hit("a.txt", "泡泡战士\n\n基于游戏。", "泡泡战士"), hit("b.txt", "分布在澳洲。", "尤金袋鼠"),
            hit("c.txt", "无题。")]
    text = render(TEMPLATE, hits, "在哪里？")
    assert text == "资料：\n[1] 泡泡战士\n\n基于游戏。\n[2] 《尤金袋鼠》分布在澳洲。\n[3] 无题。\n问题：在哪里？"


def test_the_shipped_template_loads_and_a_broken_one_is_refused(tmp_path: Path) -> None:
    shipped = load_template(REPO / "prompts")
    assert shipped.startswith("根据以下资料回答问题；资料中没有答案就说不知道。")
    (tmp_path / "baseline.txt").write_text("资料：{passages}", encoding="utf-8")
    with pytest.raises(ValueError, match=r"needs \{question\}"):
        load_template(tmp_path)


def test_ask_searches_the_question_and_sends_one_plain_prompt() -> None:
    searched: list[tuple[str, int]] = []

    def search(query: str, k: int) -> list[Hit]:
        searched.append((query, k))
        return [hit("a.txt", "生命数耗完即算为踢爆。")]

    model = RecordingGenerator("踢爆")
    baseline = Baseline(search, model, TEMPLATE, max_tokens=80, temperature=0.0)
    reply = baseline.ask([{"role": "user", "content": "生命数耗完即算为什么？"}])
    assert searched == [("生命数耗完即算为什么？", 5)]
    prompt = "资料：\n[1] 生命数耗完即算为踢爆。\n问题：生命数耗完即算为什么？"
    assert model.sent == [[{"role": "user", "content": prompt}]]
    assert (reply.text, reply.refused, reply.reason, reply.citations, reply.context) == (
        "踢爆", False, None, (), ("生命数耗完即算为踢爆。",))
    assert reply.prompt_tokens == len(model.sent[0][0]["content"])  # the fake counts characters
    assert reply.answer_s >= (reply.ttft_s or 0) > 0


def test_ask_refuses_only_by_what_the_reply_says() -> None:
    baseline = Baseline(lambda q, k: [], FakeGenerator(reply="资料里没有提到，不知道。"), TEMPLATE, max_tokens=80,
                        temperature=0.0)
    reply = baseline.ask([{"role": "user", "content": "谁？"}])
    assert (reply.refused, reply.reason) == (True, "says 不知道")


def test_a_follow_up_is_searched_with_the_earlier_question_and_sent_after_the_earlier_turns() -> None:
    searched: list[str] = []

    def search(query: str, k: int) -> list[Hit]:
        searched.append(query)
        return []

    model = RecordingGenerator("8公斤")
    baseline = Baseline(search, model, TEMPLATE, max_tokens=80, temperature=0.0)
    baseline.ask([{"role": "user", "content": "尤金袋鼠分布在哪里？"}, {"role": "assistant", "content": "澳洲。"},
                  {"role": "user", "content": "那体重呢？"}])
    assert searched == ["尤金袋鼠分布在哪里？ 那体重呢？"]
    assert [m["role"] for m in model.sent[0]] == ["user", "assistant", "user"]
    assert model.sent[0][-1]["content"] == "资料：\n\n问题：那体重呢？"


def test_top_k_must_be_positive() -> None:
    with pytest.raises(ValueError, match="top_k is 0"):
        Baseline(lambda q, k: [], FakeGenerator(), TEMPLATE, max_tokens=1, temperature=0.0, top_k=0)


def test_settings_give_the_baseline_the_services_answer_length() -> None:
    from rag.eval.baseline import beside

    class Searcher:
        def search(self, query: str, top_k: int = 5, doc_ids: list[str] | None = None) -> list[Hit]:
            return []

    from tests.fakes import FAKE_PARTS

    baseline = beside(Searcher(), Settings(max_tokens=33, temperature=0.5), FAKE_PARTS)  # type: ignore[arg-type]
    assert (baseline.max_tokens, baseline.temperature, baseline.top_k) == (33, 0.5, 5)
    assert baseline.template == load_template(REPO / "prompts")
