"""The evaluation quality gate, run with the real models: retrieval on the whole test split, the full
pipeline on the test split (or the fixed subset in eval/thresholds.json), the adversarial set on its own
temporary index. Fails when a metric drops below its threshold or a part does not run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag import cli
from rag.config import Settings

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def test_quality_gate_passes(real_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("models_dir", "corpus_dir", "index_dir"):
        monkeypatch.setenv(f"RAG_{name.upper()}", str(getattr(real_settings, name)))
    code = cli.main(["eval", "--gate", "--out", str(tmp_path / "gate"), "--gold", str(REPO / "eval" / "gold.jsonl"),
                     "--thresholds", str(REPO / "eval" / "thresholds.json"),
                     "--adversarial-dir", str(REPO / "eval" / "adversarial")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "quality gate: passed" in out
    full = json.loads((tmp_path / "gate" / "full" / "summary.json").read_text("utf-8"))
    assert full["metrics"]["citation_span_valid"] == 1.0
    assert full["split"] == "test"
    adversarial = json.loads((tmp_path / "gate" / "adversarial" / "summary.json").read_text("utf-8"))
    assert adversarial["metrics"]["questions"] >= 20
