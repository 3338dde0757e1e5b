"""The CMRC 2018 benchmark: loading, the stable splits, scoring a reply, and the archive of kept paragraphs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.config import Settings
from rag.eval.backends import Reply
from rag.eval.cmrc import (
    BenchQuestion,
    build_archive,
    char_f1,
    is_left_out,
    is_right,
    load_cmrc,
    part_of,
    resolve_benchmark,
    select_questions,
    write_corpus,
)
from rag.eval.gold import EvalError
from rag.ingest import open_index
from tests.fakes import FakeEmbedder


def reply(text: str, refused: bool = False) -> Reply:
    return Reply(text, (), refused, 10, 1.0, 0.5)


def question(answers: tuple[str, ...], left_out: bool = False) -> BenchQuestion:
    return BenchQuestion("Q", "?", answers, "P", "tune", left_out)


# --- the splits ---------------------------------------------------------------------------------------


def test_parts_are_fixed_by_the_question_id() -> None:
    assert [part_of(f"TRIAL_800_QUERY_{i}") for i in range(4)] == ["report", "tune", "report", "report"]
    assert [part_of(f"TRIAL_154_QUERY_{i}") for i in range(5)] == ["tune", "report", "report", "tune", "report"]


def test_left_out_paragraphs_are_fixed_by_the_paragraph_id_and_grow_with_the_share() -> None:
    ids = ["TRIAL_800", "TRIAL_154", "TRIAL_598", "TRIAL_662", "TRIAL_863", "TRIAL_71"]
    assert [i for i in ids if is_left_out(i, 0.15)] == ["TRIAL_598", "TRIAL_863", "TRIAL_71"]
    assert [i for i in ids if is_left_out(i, 0.05)] == ["TRIAL_863"]
    assert not any(is_left_out(i, 0.0) for i in ids)


def test_the_real_file_splits_into_disjoint_parts(cmrc_file: Path) -> None:
    bench = load_cmrc(cmrc_file)
    tune = {q.id for q in select_questions(bench, "tune")}
    report = {q.id for q in select_questions(bench, "report")}
    assert (len(bench.paragraphs), len(bench.questions), len(tune), len(report)) == (256, 1002, 520, 482)
    assert not tune & report
    assert tune | report == {q.id for q in bench.questions}
    left_out = [p for p in bench.paragraphs if p.left_out]
    assert len(left_out) == 37
    assert sum(q.left_out for q in bench.questions) == 134
    # the same split on a second reading
    again = load_cmrc(cmrc_file)
    assert [(q.id, q.part, q.left_out) for q in again.questions] == [(q.id, q.part, q.left_out)
                                                                      for q in bench.questions]


def test_loading_the_slice(cmrc_slice: Path) -> None:
    bench = load_cmrc(cmrc_slice)
    assert [(p.id, p.title, p.left_out) for p in bench.paragraphs] == [
        ("TRIAL_800", "泡泡战士", False), ("TRIAL_154", "尤金袋鼠", False), ("TRIAL_598", "松平康忠", True)]
    assert [p.id for p in bench.kept] == ["TRIAL_800", "TRIAL_154"]
    first = bench.questions[0]
    assert (first.id, first.question, first.answers, first.paragraph, first.part, first.answerable) == (
        "TRIAL_800_QUERY_0", "生命数耗完即算为什么？", ("踢爆",), "TRIAL_800", "report", True)
    assert [q.id for q in bench.questions if not q.answerable] == [f"TRIAL_598_QUERY_{i}" for i in range(5)]
    assert bench.paragraphs[0].text.startswith("泡泡战士\n\n基于《跑跑卡丁车》")


def test_selecting_questions(cmrc_slice: Path) -> None:
    bench = load_cmrc(cmrc_slice)
    assert [q.id for q in select_questions(bench, "report")] == [
        "TRIAL_800_QUERY_0", "TRIAL_800_QUERY_2", "TRIAL_800_QUERY_3", "TRIAL_154_QUERY_1", "TRIAL_154_QUERY_2",
        "TRIAL_154_QUERY_4", "TRIAL_598_QUERY_2"]
    assert [q.id for q in select_questions(bench, "report", limit=2)] == ["TRIAL_800_QUERY_0", "TRIAL_800_QUERY_2"]
    # an id of the other part is not asked: the parts never mix
    assert [q.id for q in select_questions(bench, "report", ids=["TRIAL_800_QUERY_1", "TRIAL_598_QUERY_2"])] == [
        "TRIAL_598_QUERY_2"]
    with pytest.raises(EvalError, match="TRIAL_9_QUERY_0"):
        select_questions(bench, "report", ids=["TRIAL_9_QUERY_0"])
    with pytest.raises(EvalError, match="part must be one of tune, report"):
        select_questions(bench, "test")


def test_bad_files_and_shares_are_rejected(tmp_path: Path, cmrc_slice: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": [{"title": "x"}]}), encoding="utf-8")
    with pytest.raises(EvalError, match="not a CMRC 2018"):
        load_cmrc(bad)
    with pytest.raises(EvalError, match="left_out_share is 1.5"):
        load_cmrc(cmrc_slice, 1.5)
    with pytest.raises(EvalError, match="no benchmark file at"):
        resolve_benchmark(tmp_path / "missing.json")
    assert resolve_benchmark(cmrc_slice) == cmrc_slice


# --- scoring ----------------------------------------------------------------------------------------------


def test_a_reply_is_right_when_it_contains_a_gold_text_after_normalisation() -> None:
    assert is_right(reply("若遊戲中離，則 4 分鐘內不得配對。"), question(("4分钟",)))  # Traditional, spaces
    assert is_right(reply("永禄5年（1562年）"), question(("永禄5年 （1562年）",)))  # the gold's space
    assert not is_right(reply("四分钟"), question(("4分钟",)))
    assert is_right(reply("是踢爆。"), question(("踢飞", "踢爆")))  # any one of several gold texts
    assert not is_right(reply("踢爆", refused=True), question(("踢爆",)))  # a refusal is never right


def test_character_f1_credits_a_short_right_answer_and_docks_padding() -> None:
    assert char_f1("8公斤。", ["约只有8公斤重"]) == 0.6  # all 3 of its characters right, 3 of the gold's 7
    assert char_f1("泰國國家鐵路局", ["泰国国家铁路局", "铁路局"]) == 1.0  # the best gold text, in Simplified
    assert char_f1("泰国国家铁路局，它在曼谷，建于1950年", ["泰国国家铁路局"]) < 0.7
    assert char_f1("火星", ["泰国国家铁路局"]) == 0.0


def test_a_left_out_paragraphs_question_is_right_only_when_refused() -> None:
    assert is_right(reply("抱歉，没有找到。", refused=True), question(("1588年",), left_out=True))
    assert not is_right(reply("1588年"), question(("1588年",), left_out=True))


# --- the archive -------------------------------------------------------------------------------------------


def test_the_corpus_holds_the_kept_paragraphs_only(tmp_path: Path, cmrc_slice: Path) -> None:
    bench = load_cmrc(cmrc_slice)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "TRIAL_1.txt").write_text("a paragraph no longer kept", encoding="utf-8")
    assert write_corpus(bench.kept, corpus) == 2
    assert sorted(p.name for p in corpus.iterdir()) == ["TRIAL_154.txt", "TRIAL_800.txt"]
    assert (corpus / "TRIAL_154.txt").read_text(encoding="utf-8").startswith("尤金袋鼠\n\n")
    assert write_corpus(bench.kept, corpus) == 0  # unchanged: nothing rewritten


def test_the_archive_is_indexed_apart_and_reused(tmp_path: Path, cmrc_slice: Path) -> None:
    bench = load_cmrc(cmrc_slice)
    settings = Settings(index_dir=tmp_path / "default-index", corpus_dir=tmp_path / "default-corpus")
    folder = tmp_path / "run" / "archive"
    first = build_archive(settings, bench, folder, FakeEmbedder())
    assert (first.documents, first.added) == (2, ("TRIAL_154.txt", "TRIAL_800.txt"))
    assert first.embedded == first.chunks > 0
    index = open_index(settings.model_copy(update={"index_dir": folder / "index"}))
    assert sorted(index.documents) == ["TRIAL_154.txt", "TRIAL_800.txt"]
    assert index.documents["TRIAL_800.txt"].title == "泡泡战士"
    index.close()
    assert not settings.index_path.exists()  # never the configured index
    second = build_archive(settings, bench, folder, FakeEmbedder())
    assert (second.documents, second.chunks, second.embedded) == (2, first.chunks, 0)
