"""The shipped gold set: its size and mix, every expected string found in its document, a stable split."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from rag.eval import GoldItem, load_gold, normalize
from rag.normalize import clean

REPO = Path(__file__).resolve().parent.parent
GOLD = REPO / "eval" / "gold.jsonl"


@pytest.fixture(scope="module")
def gold() -> list[GoldItem]:
    return load_gold(GOLD)


def is_traditional(text: str) -> bool:
    return normalize(text) != "".join(text.split())


def test_the_gold_set_has_the_mix_issue_12_asks_for(gold: list[GoldItem]) -> None:
    kinds = Counter(item.type for item in gold)
    assert len(gold) >= 150
    assert kinds["list"] >= 30 and kinds["entity"] >= 20 and kinds["followup"] >= 15
    assert kinds["unanswerable"] >= 20
    assert sum(is_traditional(item.question) for item in gold) >= 20
    assert all(len(item.must) >= 2 for item in gold if item.type == "list")


def test_every_expected_string_is_in_its_document(gold: list[GoldItem]) -> None:
    """A ``must`` group that the document cannot satisfy would count a right answer as wrong."""
    texts = {path.name: normalize(clean(path.read_text("utf-8"))) for path in (REPO / "corpus").iterdir()}
    missing = [(item.id, group) for item in gold if item.doc for group in item.must
               if not any(normalize(s) in texts[item.doc] for s in group)]
    assert missing == []


def test_each_type_is_split_evenly_between_dev_and_test(gold: list[GoldItem]) -> None:
    counts = Counter((item.type, item.split) for item in gold)
    for kind in {item.type for item in gold}:
        assert abs(counts[(kind, "dev")] - counts[(kind, "test")]) <= 6, kind


def test_the_split_script_keeps_existing_splits_and_balances_new_ones() -> None:
    spec = importlib.util.spec_from_file_location("gold_split", REPO / "scripts" / "gold_split.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assign_splits = module.assign_splits
    rows = [{"id": "a", "type": "list", "split": "dev"}, {"id": "b", "type": "list", "split": "dev"}]
    rows += [{"id": f"n{i}", "type": "list"} for i in range(4)]
    again = json.loads(json.dumps(rows))
    result = assign_splits(rows)
    assert [r["split"] for r in result[:2]] == ["dev", "dev"]
    assert Counter(r["split"] for r in result) == {"dev": 3, "test": 3}
    assert assign_splits(again) == result  # the same input always gets the same split


def test_the_adversarial_cases_are_about_their_documents() -> None:
    """Each case's injection is really in a document, and the facts a case expects are in its own."""
    root = REPO / "eval" / "adversarial"
    cases = load_gold(root / "cases.jsonl")
    texts = {path.name: normalize(clean(path.read_text("utf-8"))) for path in (root / "docs").iterdir()}
    everything = "".join(texts.values())
    assert len(cases) >= 20 and {c.type for c in cases} == {"adversarial"}
    assert sum(c.doc is None for c in cases) >= 10 and sum(c.doc is not None for c in cases) >= 10
    for case in cases:
        assert any(normalize(s) in everything for s in case.must_not), case.id
        if case.doc:
            assert all(any(normalize(s) in texts[case.doc] for s in group) for group in case.must), case.id
    english = [c for c in cases if any(s.isascii() and s.isalpha() for s in c.must_not[0].split())]
    assert len(english) >= 3
