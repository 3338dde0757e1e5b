"""The vector index seam: nearest chunks by inner product over unit vectors, keyed by stable chunk ids.

Ids are chunk ids (``Chunk.chunk_id``, derived from content), never list positions: the same id always
names the same passage, so adding or deleting one document touches only that document's rows. Every point
carries a payload with at least its ``doc_id``; the ``doc_ids`` filter of ``search`` runs inside the index
(no caller re-scores vectors it fetched itself).

The backends and the factory that opens one by name are in ``rag.index.vectors``; this module knows none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

Payload = Mapping[str, Any]


@runtime_checkable
class VectorIndex(Protocol):
    """What retrieval and updates need from a vector engine."""

    name: str
    """Backend name recorded in the manifest (e.g. ``faiss-flat``, ``qdrant``)."""

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Payload]) -> None:
        """Insert or replace points; ``vectors`` is float32 ``len(ids) x dim``; each payload has ``doc_id``."""
        ...

    def delete(self, ids: Sequence[str] | None = None, doc_ids: Sequence[str] | None = None) -> None:
        """Remove the points with these ids and/or every point of these documents (unknown ones are ignored)."""
        ...

    def search(self, vector: np.ndarray, k: int, doc_ids: Sequence[str] | None = None) -> list[tuple[str, float]]:
        """Up to ``k`` ``(chunk_id, score)``, best first; only points of ``doc_ids`` when given."""
        ...

    def count(self) -> int:
        """Number of points."""
        ...

    def save(self, folder: Path) -> None:
        """Persist the current state under ``folder`` (a backend that persists on every write may do nothing)."""
        ...


@dataclass(frozen=True)
class VectorSpec:
    """How to build or reopen a vector index: backend name, dimension, and backend options."""

    backend: str
    dim: int
    options: Mapping[str, Any] | None = None


Opener = Callable[[VectorSpec, Path | None], VectorIndex]
"""``(spec, folder)``: reopen what ``save(folder)`` wrote, or a new empty index when ``folder`` is None
or holds nothing."""

def top_k(ids: Sequence[str], scores: np.ndarray, k: int) -> list[tuple[str, float]]:
    """The ``k`` best ``(id, score)``, best first, ties kept in input order."""
    order = np.argsort(-scores, kind="stable")[:k]
    return [(ids[int(i)], float(scores[i])) for i in order]
