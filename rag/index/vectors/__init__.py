"""Vector indexes behind one seam (``base.VectorIndex``), opened by the backend name the index manifest
records: embedded FAISS (``faiss-flat``, ``faiss-hnsw``, the default) and Qdrant (``qdrant``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rag.index.vectors.base import Opener, VectorIndex, VectorSpec

__all__ = ["BACKENDS", "VectorIndex", "VectorSpec", "open_vectors", "register"]


def _faiss(kind: str) -> Opener:
    def open_faiss(spec: VectorSpec, folder: Path | None) -> VectorIndex:
        from rag.index.vectors.faiss import opener

        return opener(kind)(spec, folder)
    return open_faiss


def _qdrant(spec: VectorSpec, folder: Path | None) -> VectorIndex:
    from rag.index.vectors.qdrant import open_qdrant  # a heavy client: imported only when chosen

    return open_qdrant(spec, folder)


BACKENDS: dict[str, Opener] = {"faiss-flat": _faiss("flat"), "faiss-hnsw": _faiss("hnsw"), "qdrant": _qdrant}


def register(name: str) -> Callable[[Opener], Opener]:
    """Decorator: make another opener available under ``name`` (the tests' fake registers so)."""
    def add(opener: Opener) -> Opener:
        BACKENDS[name] = opener
        return opener
    return add


def open_vectors(spec: VectorSpec, folder: Path | None = None) -> VectorIndex:
    """The vector index ``spec`` names, reopened from ``folder`` when it holds one."""
    if spec.backend not in BACKENDS:
        raise ValueError(f"unknown vector backend {spec.backend!r}; known: {sorted(BACKENDS)}")
    return BACKENDS[spec.backend](spec, folder)
