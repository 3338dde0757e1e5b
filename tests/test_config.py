"""Settings: documented in docs/operations.md, validated with the bad value in the message."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from rag.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented() -> None:
    page = (ROOT / "docs" / "operations.md").read_text("utf-8")
    missing = [name for name in Settings.model_fields if f"`RAG_{name.upper()}`" not in page]
    assert missing == []


def test_every_setting_has_a_description() -> None:
    assert [n for n, f in Settings.model_fields.items() if not f.description] == []


def test_environment_overrides_with_the_rag_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_PORT", "9123")
    monkeypatch.setenv("RAG_FUSION", "weighted")
    settings = Settings()
    assert (settings.port, settings.fusion) == (9123, "weighted")


@pytest.mark.parametrize(("field", "value"), [("port", 0), ("chunk_max_chars", 10), ("fusion", "max"),
                                              ("min_coverage", 1.5), ("index_name", "../x")])
def test_out_of_bounds_values_are_rejected(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value})


def test_default_model_paths_live_in_models_dir() -> None:
    settings = Settings(models_dir=Path("/m"))
    assert settings.resolved_llm_path == Path("/m/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
    assert settings.resolved_embedder_path == Path("/m/multilingual-e5-small")
    assert settings.index_path == Path("index/default")
