"""``rag eval --benchmark``: the paired metrics, a run on the slice with the fakes, the gold set beside the
baseline, and (slow) three questions end to end with the real models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag import cli
from rag.config import Settings
from rag.eval.backends import Reply
from rag.eval.benchmark import run_benchmark
from rag.eval.cmrc import BenchQuestion, is_right
from rag.eval.paired import ModelCall, Outcome, Pair, paired_metrics, system_metrics
from rag.eval.run import run_eval
from rag.ingest import ingest_paths
from rag.parts import Parts
from tests.fakes import FAKE_PARTS, FakeEmbedder, FakeGenerator

REPO = Path(__file__).resolve().parents[2]
SLICE_REPORT_IDS = ["TRIAL_800_QUERY_0", "TRIAL_800_QUERY_2", "TRIAL_800_QUERY_3", "TRIAL_154_QUERY_1",
                    "TRIAL_154_QUERY_2", "TRIAL_154_QUERY_4", "TRIAL_598_QUERY_2"]


def outcome(text: str, refused: bool, right: bool, seconds: float, tokens: int | None = None) -> Outcome:
    call = ModelCall(tokens, seconds / 2) if tokens else None
    return Outcome(Reply(text, (), refused, tokens or 0, seconds, seconds / 2), right, call)


def test_system_and_paired_metrics() -> None:
    questions = [BenchQuestion(f"Q{i}", "?", ("x",), "P", "report", left_out=i == 3) for i in range(4)]
    pairs = [
        Pair(questions[0], outcome("x", False, True, 1.0, 100), outcome("x", False, True, 4.0, 400)),
        Pair(questions[1], outcome("", True, False, 0.1), outcome("x", False, True, 2.0, 400)),
        Pair(questions[2], outcome("y", False, False, 2.0, 100), outcome("不知道", True, False, 6.0, 400)),
        Pair(questions[3], outcome("", True, True, 0.1), outcome("y", False, False, 8.0, 400)),
    ]
    service, baseline = system_metrics(pairs, "service"), system_metrics(pairs, "baseline")
    assert (service["answerable"], service["unanswerable"]) == (3, 1)
    assert (service["answer_accuracy"], service["false_refusal"], service["refusal_on_unanswerable"]) == (
        pytest.approx(1 / 3), pytest.approx(1 / 3), 1.0)
    assert (baseline["answer_accuracy"], baseline["false_refusal"], baseline["refusal_on_unanswerable"]) == (
        pytest.approx(2 / 3), pytest.approx(1 / 3), 0.0)
    assert (service["answer_p50_s"], service["answer_p90_s"]) == (pytest.approx(0.55), pytest.approx(1.7))
    assert (service["model_calls"], service["prompt_tokens_per_s"]) == (2, pytest.approx(200 / 1.5))
    assert baseline["prompt_tokens_per_s"] == pytest.approx(1600 / 10.0)
    paired = paired_metrics(pairs)
    assert paired == {"paired_questions": 4, "time_ratio_p50": pytest.approx(0.55 / 5.0),
                      "time_ratio_total": pytest.approx(3.2 / 20.0), "both_right": 1, "only_service_right": 0,
                      "only_baseline_right": 1}


def test_a_run_on_the_slice_pairs_every_question(tmp_path: Path, cmrc_slice: Path) -> None:
    settings = Settings(index_dir=tmp_path / "default-index", corpus_dir=tmp_path / "default-corpus")
    parts = Parts(embedder=lambda s: FakeEmbedder(), generator=lambda s: FakeGenerator(reply="踢爆"))
    out = tmp_path / "run"
    summary = run_benchmark(settings, out, part="report", benchmark=cmrc_slice, parts=parts, progress=False)
    assert summary["question_ids"] == SLICE_REPORT_IDS
    assert summary["paragraphs"] == {"total": 3, "kept": 2, "left_out": 1, "left_out_ids": ["TRIAL_598"]}
    assert summary["archive"]["documents"] == 2 and summary["archive"]["embedded"] > 0
    assert sorted(p.name for p in (out / "archive" / "corpus").iterdir()) == ["TRIAL_154.txt", "TRIAL_800.txt"]
    baseline = summary["metrics"]["baseline"]
    # the baseline always says 踢爆: right on TRIAL_800_QUERY_0 only, and it answers the left-out question
    assert (baseline["answerable"], baseline["unanswerable"]) == (6, 1)
    assert baseline["answer_accuracy"] == pytest.approx(1 / 6)
    assert (baseline["false_refusal"], baseline["refusal_on_unanswerable"], baseline["model_calls"]) == (0.0, 0.0, 7)
    rows = [json.loads(line) for line in (out / "report" / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == SLICE_REPORT_IDS
    assert [r["baseline"]["right"] for r in rows] == [True, False, False, False, False, False, False]
    assert [r["left_out"] for r in rows] == [False] * 6 + [True]
    for row in rows:  # every row has its peer, scored by the same rule
        question = BenchQuestion(row["id"], row["question"], tuple(row["answers"]), row["paragraph"], row["part"],
                                 row["left_out"])
        for system in ("service", "baseline"):
            r = row[system]
            assert r["error"] == "" and r["text"] is not None
            assert r["right"] == is_right(Reply(r["text"], (), r["refused"], 0, 0.0, 0.0), question)
    assert summary["metrics"]["paired"]["paired_questions"] == 7
    report = (out / "report" / "report.md").read_text(encoding="utf-8")
    assert "| metric | name | service | baseline |" in report
    assert "| TRIAL_598_QUERY_2 | yes | 辅助康忠的近清什么时候去世的？ | 天正16年（1588年） |" in report
    again = run_benchmark(settings, out, part="tune", benchmark=cmrc_slice, parts=parts, progress=False)
    assert again["archive"]["embedded"] == 0  # the same paragraphs: the archive's index is reused
    assert (out / "tune" / "summary.json").is_file() and (out / "report" / "summary.json").is_file()
    assert not settings.index_path.exists()


def test_the_command_prints_speeds_and_the_time_ratio(tmp_path: Path, cmrc_slice: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["eval", "--benchmark", str(cmrc_slice), "--part", "tune", "--limit", "2", "--out",
                       str(tmp_path / "run")], FAKE_PARTS)
    printed = capsys.readouterr().out
    assert status == 0
    assert "time service/baseline on the same 2 questions: p50" in printed
    assert "baseline: accuracy" in printed and "tokens/s" in printed
    assert json.loads((tmp_path / "run" / "tune" / "summary.json").read_text("utf-8"))["question_ids"] == [
        "TRIAL_800_QUERY_1", "TRIAL_154_QUERY_0"]


def test_the_command_needs_a_part(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["eval", "--benchmark", "cmrc2018"], FAKE_PARTS) == 2
    assert "--benchmark needs --part" in capsys.readouterr().err


def test_gold_questions_get_their_baseline_peer(tmp_path: Path) -> None:
    settings = Settings(index_dir=tmp_path / "index", corpus_dir=REPO / "corpus")
    index, _ = ingest_paths([settings.corpus_dir], settings, FakeEmbedder(), None)
    index.close()
    ids = ["q001", "q002", "q003"]
    summary = run_eval(settings, REPO / "eval" / "gold.jsonl", tmp_path / "out", ids=ids, parts=FAKE_PARTS,
                       baseline=True, progress=False)
    assert summary["baseline"]["metrics"]["questions"] == 3
    service_rows = (tmp_path / "out" / "results.jsonl").read_text(encoding="utf-8").splitlines()
    peer_rows = (tmp_path / "out" / "baseline" / "results.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(r)["item"]["id"] for r in service_rows] == ids
    assert [json.loads(r)["item"]["id"] for r in peer_rows] == ids
    assert all(json.loads(r)["answer"]["reply"]["citations"] == [] for r in peer_rows)
    with pytest.raises(Exception, match="drop --url and --no-llm"):
        run_eval(settings, REPO / "eval" / "gold.jsonl", tmp_path / "out", ids=ids, parts=FAKE_PARTS,
                 baseline=True, no_llm=True, progress=False)


@pytest.mark.slow
def test_three_questions_end_to_end_with_the_real_models(tmp_path: Path, cmrc_slice: Path) -> None:
    settings = Settings(models_dir=REPO / "models", index_dir=tmp_path / "default-index")
    ids = ["TRIAL_800_QUERY_1", "TRIAL_154_QUERY_3", "TRIAL_598_QUERY_0"]  # the tune part; the last left out
    summary = run_benchmark(settings, tmp_path / "run", part="tune", benchmark=cmrc_slice, ids=ids, progress=False)
    assert summary["question_ids"] == ids
    for system in ("service", "baseline"):
        m = summary["metrics"][system]
        assert (m["questions"], m["answerable"], m["unanswerable"], m["errors"]) == (3, 2, 1, 0)
    assert summary["metrics"]["baseline"]["prompt_tokens_per_s"] > 0
    assert summary["metrics"]["paired"]["time_ratio_p50"] > 0
    results = tmp_path / "run" / "tune" / "results.jsonl"
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ids
    assert all(r["baseline"]["context"] for r in rows)  # the baseline was shown the passages found
