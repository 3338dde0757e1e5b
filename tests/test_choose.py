"""Tests for the choose stage (``RAG_ANSWER_STAGE=choose``, ``rag.answer``): the model chooses numbered
sentences, a fitted model may refuse, the answer is written from the chosen sentences and checked for facts.
The fake generator (``tests.fakes``) chooses the sentences sharing the most pairs of characters with the
question, else 无; the stage itself is the real code."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from rag.answer import refuse
from rag.answer.select import answer_sources, follow_up_sources
from rag.config import Settings
from rag.generate import Completion
from rag.generate.base import Choice, parse_choice
from rag.generate.openai import _after_answer_mark, _answer_after, _may_repeat_turn
from rag.index import Index
from rag.ingest import ingest_paths
from rag.normalize import to_simplified, to_traditional
from rag.service import RagService
from rag.types import Answer, Sentence
from tests.fakes import FakeEmbedder, FakeGenerator
from tests.test_service import DOC0, FOLLOW_UP, RANK_QUESTION, REFUSAL, assert_verified, make_settings, user

UNGROUNDED = "ungrounded: none of the answer's own words is in the sentences it rests on"


class RecordingGenerator(FakeGenerator):
    """The fake, remembering each turn's chat (every turn begins with ``choose``) and each answer's lead."""

    def __init__(self, reply: str | None = None, choice: str | None = None) -> None:
        super().__init__(reply=reply, choice=choice)
        self.calls: list[list[dict[str, str]]] = []
        self.leads: list[str] = []

    def choose(self, messages: Sequence[dict[str, str]], lead: str, options: int) -> Choice:
        self.calls.append([dict(m) for m in messages])
        return super().choose(messages, lead, options)

    def stream_on(self, messages: Sequence[dict[str, str]], lead: str, max_tokens: int,
                  temperature: float) -> Iterator[str | Completion]:
        self.leads.append(lead)
        yield from super().stream_on(messages, lead, max_tokens, temperature)


@pytest.fixture(scope="module")
def chosen_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Index]:
    settings = make_settings(tmp_path_factory.mktemp("choose"), answer_stage="choose", min_confidence=0.0)
    index, _ = ingest_paths([settings.corpus_dir], settings, FakeEmbedder(), None)
    return settings, index


def service_with(chosen_index: tuple[Settings, Index], generator: FakeGenerator, **overrides: object) -> RagService:
    settings, index = chosen_index
    return RagService(settings.model_copy(update=overrides), FakeEmbedder(), generator, index)


def test_answered_from_the_chosen_sentence_with_a_verified_citation(chosen_index: tuple[Settings, Index]) -> None:
    generator = RecordingGenerator()
    answer = service_with(chosen_index, generator).answer([user(RANK_QUESTION)])
    assert not answer.refused, answer.reason
    assert answer.citations[0].doc_id == DOC0 and "排名第三" in answer.citations[0].text
    assert_verified(answer.citations[0], chosen_index[0].corpus_dir)
    # The chat numbers the candidates under the choose stage's own system prompt; the lead copies the choice.
    (chat,) = generator.calls
    assert chat[0]["content"].startswith("你是文档问答助手") and "句子：" in chat[0]["content"]
    numbered = dict(line[1:].split("] ", 1) for line in chat[1]["content"].splitlines() if line.startswith("["))
    assert [s.text for s in answer.context] == [numbered[str(n)] for n in range(1, len(numbered) + 1)]
    assert generator.leads[0].startswith("句子：") and generator.leads[0].endswith("回答：")
    assert answer.signals["chosen"] >= 1 and 0.0 <= answer.signals["p_none"] <= 1.0


def test_the_answer_is_written_from_the_choice_and_the_best_ranked_sentence(
        chosen_index: tuple[Settings, Index]) -> None:
    generator = RecordingGenerator(choice="2")
    answer = service_with(chosen_index, generator).answer([user(RANK_QUESTION)])
    first, second = answer.context[0].text, answer.context[1].text
    assert generator.leads[0] == f"句子：2\n依据：{first}{second}\n回答："


@pytest.mark.parametrize(("picked", "sources"), [((3, 2), [1, 2, 3]), ((1,), [1]), ((), [])])
def test_answer_sources_are_the_picks_and_the_first_in_the_order_shown(picked: tuple[int, ...],
                                                                        sources: list[int]) -> None:
    candidates = [Sentence("d", n, n + 1, str(n), str(n), "") for n in range(1, 5)]
    assert [s.start for s in answer_sources(candidates, Choice(picked, "", 0.0))] == sources


@pytest.mark.parametrize(("text", "shown"), [
    ("阳山县在清远市排名第三,在北部生态发展区排名第六,获优秀等次。", "在北部生态发展区排名第六。"),
    ("全县有小学12所,初中5所。", "全县有小学12所,初中5所。"),  # no clause is pointed at more than another
    ("北部生态发展区共37个县。", "北部生态发展区共37个县。"),  # one clause only
])
def test_a_follow_up_is_shown_the_clause_its_own_words_point_at(text: str, shown: str) -> None:
    (narrowed,) = follow_up_sources([_sentence(text)], ["北部", "生态", "发展区"], lambda term: 1.0)
    assert narrowed.text == shown
    assert (narrowed.start, narrowed.end) == (0, len(text))  # cited as the whole sentence


def test_a_follow_up_answers_from_the_clause_and_cites_the_sentence(chosen_index: tuple[Settings, Index]) -> None:
    generator = RecordingGenerator(reply="第六。")
    answer = service_with(chosen_index, generator).answer(
        [user(RANK_QUESTION), {"role": "assistant", "content": "第三。"}, user(FOLLOW_UP)])
    assert not answer.refused, answer.reason
    shown = to_simplified(generator.leads[0].split("依据：")[1])  # the corpus is in Traditional script
    assert shown.startswith("在北部生态发展区37个县(市区)排名第六。") and "排名第三" not in shown
    assert "排名第六" in answer.citations[0].text and "排名第三" in answer.citations[0].text


def test_nothing_chosen_is_refused_before_an_answer_is_written(chosen_index: tuple[Settings, Index]) -> None:
    generator = RecordingGenerator()
    answer = service_with(chosen_index, generator).answer([user("火星基地的预算是多少？")])
    assert answer.refused and answer.text == REFUSAL and answer.citations == ()
    assert answer.reason.startswith("model_none: the model chose no sentence")
    assert len(generator.calls) == 1 and generator.leads == []
    traditional = service_with(chosen_index, RecordingGenerator()).answer([user("火星基地的預算是多少？")])
    assert traditional.text == to_traditional(REFUSAL)


def test_below_the_threshold_the_answerability_model_refuses(chosen_index: tuple[Settings, Index]) -> None:
    generator = RecordingGenerator()
    service = service_with(chosen_index, generator, min_confidence=1.0)
    *deltas, answer = list(service.stream([user(RANK_QUESTION)]))
    # The verdict reads the written answer (how well its sentence holds the question), so it comes after
    # the answer was written and before any of it was sent.
    assert isinstance(answer, Answer) and answer.refused and answer.reason.startswith("answerability ")
    assert "p_none" in answer.reason and "alignment" in answer.reason and len(generator.leads) == 1
    assert "".join(d for d in deltas if isinstance(d, str)) == ""


@pytest.mark.parametrize(("said", "reason"), [
    ("资料中没有找到答案。", "model_not_found: the model said the passages hold no answer"),
    ("阳山县共有学校9999所。", "invented_numbers: ['9999'] not in the evidence"),
    ("天空是蓝色的。", UNGROUNDED),
    ("", "model_not_found: the model said the passages hold no answer"),
])
def test_only_facts_refuse_after_the_answer(chosen_index: tuple[Settings, Index], said: str, reason: str) -> None:
    answer = service_with(chosen_index, RecordingGenerator(reply=said)).answer([user(RANK_QUESTION)])
    assert (answer.refused, answer.reason, answer.citations) == (True, reason, ())


@pytest.mark.parametrize("said", ["排名第三，获优秀等次。", "阳山县共有学校9999所。", "天空是蓝色的。"])
def test_the_stream_equals_the_answer(chosen_index: tuple[Settings, Index], said: str) -> None:
    service = service_with(chosen_index, RecordingGenerator(reply=said))
    *deltas, final = list(service.stream([user(RANK_QUESTION)]))
    assert isinstance(final, Answer)
    # Nothing a refusal retracts was sent (the HTTP layer sends the refusal itself).
    assert "".join(d for d in deltas if isinstance(d, str)) == ("" if final.refused else final.text)
    whole = service.answer([user(RANK_QUESTION)])
    assert (whole.text, whole.refused, whole.reason) == (final.text, final.refused, final.reason)


def test_a_traditional_question_is_answered_in_traditional(chosen_index: tuple[Settings, Index]) -> None:
    answer = service_with(chosen_index, RecordingGenerator()).answer([user("陽山縣在清遠市排名第幾？")])
    assert not answer.refused and to_traditional(answer.text) == answer.text


@pytest.mark.parametrize(("said", "options", "picked", "p_none"), [
    ("2,5", 6, (2, 5), 0.0), ("无", 6, (), 1.0), ("2,2,9", 6, (2,), 0.0), ("句子：3", 4, (3,), 0.0),
    ("没有", 4, (), 1.0),
])
def test_parse_choice(said: str, options: int, picked: tuple[int, ...], p_none: float) -> None:
    choice = parse_choice(said, options)
    assert (choice.picked, choice.p_none) == (picked, p_none)


def test_a_chat_server_that_repeats_the_turn_is_cut_to_its_answer() -> None:
    assert _may_repeat_turn("句") and _may_repeat_turn("句子：2\n依据") and not _may_repeat_turn("排名第三")
    assert _after_answer_mark("句子：2\n依据：…\n回答：排名第三。") == "排名第三。"


def test_a_chat_server_is_asked_for_the_answer_alone_after_the_turn_so_far() -> None:
    # Asked to go on from 句子：…依据：…回答：, llama-cpp-python's server wrote the lead again and stopped.
    system, user_turn = {"role": "system", "content": "S"}, {"role": "user", "content": "资料…问题：Q"}
    asked = _answer_after([system, user_turn], "句子：2\n依据：排名第三。\n回答：")
    expected = "资料…问题：Q\n句子：2\n依据：排名第三。\n请只写出简短的回答："
    assert asked == [system, {"role": "user", "content": expected}]


def _sentence(text: str) -> Sentence:
    return Sentence("d.txt", 0, len(text), text, to_simplified(text), "")


@pytest.mark.parametrize(("answer", "question", "reason"), [
    ("共有38所。", "共有几所学校？", "invented_numbers: ['38'] not in the evidence"),
    ("2月19日。", "大会哪天召开？", ""),
    ("2023年。", "2023年的大会在哪里召开？", ""),  # a figure the question brought is no invention
    ("天空是蓝色的。", "大会在哪里召开？", UNGROUNDED),
    ("大会在哪里召开。", "大会在哪里召开？", "echo: the answer holds no word the question did not"),
    ("大会是在市第五中学召开的。", "大会在哪里召开？", ""),
    ("是，大会召开了。", "大会是否召开？", ""),  # a yes/no question is answered in its own words
])
def test_the_facts_checked_after_the_answer(answer: str, question: str, reason: str) -> None:
    meeting = _sentence("2月19日,2024年辽源市教育系统领导干部大会在市第五中学召开。")
    assert refuse.after(answer, [meeting], to_simplified(question)) == reason


def test_every_check_of_the_stage_is_named_once() -> None:
    names = [c.name for c in refuse.CHECKS]
    assert len(names) == len(set(names))
    assert {c.setting for c in refuse.CHECKS if c.setting} == {"min_confidence"}
    assert all(c.setting in Settings.model_fields for c in refuse.CHECKS if c.setting)
    assert Path(refuse.__file__).name == "refuse.py"
