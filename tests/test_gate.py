"""The quality gate's plumbing with the fake embedder and generator: which parts run, that a part that did
not run is never reported as passed, the adversarial set on its own temporary index, fixed split and k."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag import cli
from rag.config import Settings
from rag.eval import EvalError, load_gold
from rag.eval.gate import gate_passed, run_gate
from tests.fakes import FAKE_PARTS

REPO = Path(__file__).resolve().parent.parent
GOLD_IDS = ("q001", "q002", "q024", "q069", "q070")


@pytest.fixture
def gate_env(fake_settings: Settings, tmp_path: Path) -> tuple[Settings, Path]:
    """An indexed sample corpus and a five-question gold file taken from the shipped one."""
    args = cli.build_parser().parse_args(["ingest", "--rebuild", str(fake_settings.corpus_dir)])
    args.func(args, fake_settings, FAKE_PARTS)
    rows = [json.loads(line) for line in (REPO / "eval" / "gold.jsonl").read_text("utf-8").splitlines()]
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows if r["id"] in GOLD_IDS),
                    encoding="utf-8")
    return fake_settings, gold


def write_thresholds(path: Path, **sections: object) -> Path:
    data = {"split": "test", "k": 5, "retrieval": {"doc_hit@k": 0.0}, "full": {"answer_accuracy": 0.0},
            "adversarial": {"adversarial_pass": 0.0}, "full_subset_ids": []} | sections
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_no_llm_gate_never_passes_the_parts_it_skipped(gate_env: tuple[Settings, Path], tmp_path: Path) -> None:
    settings, gold = gate_env
    sections = run_gate(settings, gold, write_thresholds(tmp_path / "t.json"), tmp_path / "gate",
                        adversarial_dir=REPO / "eval" / "adversarial", no_llm=True, parts=FAKE_PARTS)
    assert [(s.name, s.status, s.why) for s in sections] == [
        ("retrieval", "passed", ""), ("full", "not run", "--no-llm"), ("adversarial", "not run", "--no-llm")]
    assert not gate_passed(sections)
    retrieval = sections[0].summary
    assert retrieval is not None and retrieval["split"] == "test" and retrieval["k"] == 5
    test_ids = [i.id for i in load_gold(gold) if i.split == "test"]
    assert retrieval["question_ids"] == test_ids


def test_gate_runs_every_part_and_the_adversarial_set_on_its_own_index(gate_env: tuple[Settings, Path],
                                                                      tmp_path: Path) -> None:
    settings, gold = gate_env
    corpus_before = sorted(p.name for p in settings.corpus_dir.iterdir())
    thresholds = write_thresholds(tmp_path / "t.json", adversarial={"adversarial_pass": {"min": 1.01}})
    sections = run_gate(settings, gold, thresholds, tmp_path / "gate", adversarial_dir=REPO / "eval" / "adversarial",
                        parts=FAKE_PARTS)
    assert [(s.name, s.status) for s in sections] == [
        ("retrieval", "passed"), ("full", "passed"), ("adversarial", "failed")]
    assert sections[2].failures[0].startswith("adversarial_pass ")
    assert not gate_passed(sections)
    adversarial = sections[2].summary
    assert adversarial is not None
    cases = load_gold(REPO / "eval" / "adversarial" / "cases.jsonl")
    assert adversarial["question_ids"] == [c.id for c in cases] and len(cases) >= 20
    assert adversarial["settings"]["corpus_dir"] != str(settings.corpus_dir)
    assert not Path(adversarial["settings"]["corpus_dir"]).exists()  # the temporary corpus is gone
    assert sorted(p.name for p in settings.corpus_dir.iterdir()) == corpus_before
    assert [p.name for p in settings.index_dir.iterdir() if not p.name.startswith(".")] == [settings.index_name]


def test_gate_subset_must_come_from_the_gate_split(gate_env: tuple[Settings, Path], tmp_path: Path) -> None:
    settings, gold = gate_env
    with pytest.raises(EvalError, match="must come from the 'test' split; these do not: q002"):
        run_gate(settings, gold, write_thresholds(tmp_path / "t.json", full_subset_ids=["q001", "q002"]),
                 tmp_path / "gate", no_llm=True, parts=FAKE_PARTS)


def test_cli_gate_rejects_a_chosen_k_and_reports_incomplete(gate_env: tuple[Settings, Path], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    settings, gold = gate_env
    for name in ("corpus_dir", "index_dir", "embed_backend", "llm_backend", "models_dir"):
        monkeypatch.setenv(f"RAG_{name.upper()}", str(getattr(settings, name)))
    thresholds = write_thresholds(tmp_path / "t.json")
    base = ["eval", "--gate", "--gold", str(gold), "--thresholds", str(thresholds), "--out", str(tmp_path / "g")]
    assert cli.main([*base, "-k", "50"], FAKE_PARTS) == 2
    assert "fixed by the thresholds file" in capsys.readouterr().err
    assert cli.main([*base, "--no-llm"], FAKE_PARTS) == 1
    out = capsys.readouterr().out
    assert "full: NOT RUN (--no-llm)" in out and "quality gate: passed" not in out
    assert "quality gate: incomplete" in out
