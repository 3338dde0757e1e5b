"""Shared fixtures: the sample corpus and settings that use the fake embedder and generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.config import Settings

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def corpus_dir() -> Path:
    """The repository's sample corpus (five Chinese education reports)."""
    return REPO / "corpus"


@pytest.fixture
def fake_settings(tmp_path: Path, corpus_dir: Path) -> Settings:
    """Settings with the fake backends and every writable location under ``tmp_path``."""
    return Settings(embed_backend="fake", llm_backend="fake", index_dir=tmp_path / "index",
                    corpus_dir=corpus_dir, models_dir=tmp_path / "models")
