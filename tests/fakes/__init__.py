"""Deterministic fakes behind the seams (``Embedder``, ``Generator``, ``VectorIndex``), for tests and the
benchmarks that time everything but the models. None is selectable by a setting: tests hand them in as
``Parts`` (``create_app(settings, parts=FAKE_PARTS)``, ``build_service(settings, FAKE_PARTS)``,
``cli.main(argv, FAKE_PARTS)``); importing this package registers the fake vector backend ``fake``."""

from __future__ import annotations

from rag.parts import Parts
from tests.fakes.embed import FakeEmbedder
from tests.fakes.generate import FakeGenerator
from tests.fakes.vectors import FakeVectors

__all__ = ["FAKE_EMBEDDER", "FAKE_GENERATOR", "FAKE_PARTS", "FakeEmbedder", "FakeGenerator", "FakeVectors"]

FAKE_PARTS = Parts(embedder=lambda settings: FakeEmbedder(), generator=lambda settings: FakeGenerator())
"""The fake embedder and the fake generator."""

FAKE_GENERATOR = Parts(generator=lambda settings: FakeGenerator())
"""The embedder the settings name (the real one by default) and the fake generator."""

FAKE_EMBEDDER = Parts(embedder=lambda settings: FakeEmbedder())
"""The fake embedder and the generator the settings name."""
