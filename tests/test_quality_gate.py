"""The evaluation quality gate, run with the real models: retrieval on the whole gold set, the full
pipeline on the fixed subset in eval/thresholds.json. Fails when a metric drops below its threshold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag import cli
from rag.config import Settings

pytestmark = pytest.mark.slow


def test_quality_gate_passes(real_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("models_dir", "corpus_dir", "index_dir"):
        monkeypatch.setenv(f"RAG_{name.upper()}", str(getattr(real_settings, name)))
    code = cli.main(["eval", "--gate", "--out", str(tmp_path / "gate")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "quality gate: passed" in out
    full = json.loads((tmp_path / "gate" / "full" / "summary.json").read_text("utf-8"))
    assert full["metrics"]["citation_span_valid"] == 1.0
