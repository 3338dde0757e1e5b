"""Tests for scripts/ablate_checks.py: replaying a recorded answer with every check gives the service's own reply,
and leaving a check out changes only what that check decided."""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from pathlib import Path
from unittest import mock

import pytest

from rag.config import Settings
from rag.index import Index
from rag.ingest import ingest_paths
from rag.service import RagService
from tests.fakes import FakeEmbedder, FakeGenerator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import ablate_checks  # noqa: E402
import ablate_prompt  # noqa: E402

SAMPLE_CORPUS = Path(__file__).resolve().parent.parent / "corpus"
QUESTION = "阳山县在清远市八个县（市、区）中排名第几？"


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Index]:
    root = tmp_path_factory.mktemp("ablate")
    shutil.copytree(SAMPLE_CORPUS, root / "corpus")
    settings = Settings(index_dir=root / "index", corpus_dir=root / "corpus", models_dir=root / "models")
    index, _ = ingest_paths([settings.corpus_dir], settings, FakeEmbedder(), None)
    return settings, index


def replayed(settings: Settings, index: Index, reply: str, skip: frozenset[str]) -> tuple[str, bool]:
    """The (text, refused) the replay gives a model answer of ``reply`` without the checks in ``skip``."""
    service = RagService(settings, FakeEmbedder(), FakeGenerator(reply=reply), index)
    question = ablate_checks.Question("q", [{"role": "user", "content": QUESTION}],
                                      lambda text, refused, citations: text, True)
    row = ablate_checks.draft(service, question)
    assert "".join(row["pieces"]) == reply
    return ablate_checks.replay(service, question, row, skip, {})


@pytest.mark.parametrize("reply", [
    "排名第三。",  # passes
    "阳山县在清远市八个县（市、区）中排名。",  # echo: only the question's words
    "天空是蓝色的。",  # support
    "排名第三，共有99个县。",  # a passing clause, then an invented number: cut to the clause
])
def test_replay_with_every_check_is_the_service_reply(sample_index: tuple[Settings, Index], reply: str) -> None:
    settings, index = sample_index
    answer = RagService(settings, FakeEmbedder(), FakeGenerator(reply=reply), index).answer(
        [{"role": "user", "content": QUESTION}])
    assert replayed(settings, index, reply, frozenset()) == ("" if answer.refused else answer.text, answer.refused)


def test_leaving_a_check_out_changes_only_its_decision(sample_index: tuple[Settings, Index]) -> None:
    settings, index = sample_index
    echo = "阳山县在清远市八个县（市、区）中排名。"
    assert replayed(settings, index, echo, frozenset())[1]
    assert replayed(settings, index, echo, frozenset({"echo"})) == (echo, False)
    assert replayed(settings, index, echo, frozenset({"support"}))[1]  # echo still refuses


def test_a_prompt_rule_switched_off_redrafts_only_the_prompts_it_changes(
        sample_index: tuple[Settings, Index]) -> None:
    """scripts/ablate_prompt.py: with the list structure off, the list question is shown other sentences and
    drafted again; the figure question's prompt is the same and keeps its draft, as does the question refused
    before the model either way; the rule is back after."""
    settings, index = sample_index
    service = RagService(settings, FakeEmbedder(), FakeGenerator(reply="排名第三。"), index)
    asked = {"rank": QUESTION, "list": "辽源市教育局2023年全面实施了哪四个行动？", "absent": "火星的首都是哪里？"}
    questions = [ablate_checks.Question(k, [{"role": "user", "content": q}], lambda text, refused, citations: True,
                                        True) for k, q in asked.items()]
    run = ablate_checks.Run("r", service, questions, {q.id: ablate_checks.draft(service, q) for q in questions})
    assert run.rows["absent"]["refusal"]
    ablate_checks.outcomes([run], frozenset())  # the plans with every rule
    original = ablate_prompt.prompting.list_items
    redrafted = []
    with mock.patch.object(ablate_checks, "draft", lambda s, q, plan=None: redrafted.append(q.id) or run.rows[q.id]):
        _, changed = ablate_prompt.without(run, "list_structure")
    assert (changed, redrafted) == (1, ["list"])
    assert ablate_prompt.prompting.list_items is original


def test_a_draft_is_reused_only_while_the_code_makes_the_same_prompt(sample_index: tuple[Settings, Index]) -> None:
    """A drafts file kept across a change of template: the list question, whose prompt the list hint changes,
    is drafted again; the figure question keeps its draft."""
    settings, index = sample_index
    asked = {"rank": QUESTION, "list": "辽源市教育局2023年全面实施了哪四个行动？"}
    questions = [ablate_checks.Question(k, [{"role": "user", "content": q}], lambda text, refused, citations: True,
                                        True) for k, q in asked.items()]
    before = RagService(settings, FakeEmbedder(), FakeGenerator(reply="甲。"), index)
    done = {q.id: ablate_checks.draft(before, q) for q in questions}
    after = RagService(settings, FakeEmbedder(), FakeGenerator(reply="乙。"), index)
    assert list(ablate_checks.redrafted(after, questions, done)) == [done["rank"], done["list"]]
    after.templates = replace(after.templates, list_hint="（列出问题所问的项目。）")
    rows = {r["id"]: r for r in ablate_checks.redrafted(after, questions, done)}
    assert rows["rank"] == done["rank"]
    assert "".join(rows["list"]["pieces"]) == "乙。" and rows["list"]["prompt"] != done["list"]["prompt"]
