"""Shared fixtures: the sample corpus and settings that use the fake embedder and generator."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rag.config import Settings
from rag.embed import build_embedder
from rag.index import Index
from rag.ingest import ingest_paths, open_or_create
from tests.fakes import FakeEmbedder

REPO = Path(__file__).resolve().parent.parent

# Starlette's TestClient sends `Host: testserver`; the service serves only the hosts it is told to.
os.environ.setdefault("RAG_ALLOWED_HOSTS", "127.0.0.1,localhost,::1,testserver")


@pytest.fixture
def corpus_dir() -> Path:
    """The repository's sample corpus (five Chinese education reports)."""
    return REPO / "corpus"


@pytest.fixture
def fake_settings(tmp_path: Path, corpus_dir: Path) -> Settings:
    """Settings with the fake backends and every writable location under ``tmp_path``."""
    return Settings(index_dir=tmp_path / "index",
                    corpus_dir=corpus_dir, models_dir=tmp_path / "models")


@pytest.fixture(scope="session")
def index(tmp_path_factory: pytest.TempPathFactory) -> Index:
    """The sample corpus indexed with the fake embedder (default chunker settings)."""
    settings = Settings(index_dir=tmp_path_factory.mktemp("fake-index"))
    built, _ = ingest_paths([REPO / "corpus"], settings, FakeEmbedder(), None)
    return built


@pytest.fixture(scope="session")
def real_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for the real models in ``models/`` and a private copy of the corpus, indexed once per session.

    An index that ``make`` already built for the same corpus is copied in first, so ingestion finds every
    document unchanged and embeds nothing.
    """
    import shutil

    tmp = tmp_path_factory.mktemp("real")
    shutil.copytree(REPO / "corpus", tmp / "corpus")
    settings = Settings(models_dir=REPO / "models", corpus_dir=tmp / "corpus", index_dir=tmp / "index")
    built = REPO / "index" / "default"
    if (built / "corpus.sqlite").exists():
        shutil.copytree(built, settings.index_path)
    embedder = build_embedder(settings)
    index, _ = ingest_paths([settings.corpus_dir], settings, embedder, open_or_create(settings))
    index.snapshot(force=True)
    index.close()
    return settings
