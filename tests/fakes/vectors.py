"""A deterministic fake vector index: exact inner product in numpy over a dict of points. Importing this
module registers it as the vector backend ``fake`` (for tests only)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rag.index.vectors import register
from rag.index.vectors.base import Payload, VectorSpec, top_k

_FILE = "fake_vectors.npz"


class FakeVectors:
    """A ``VectorIndex`` that keeps every point in a dict and scores all of them per search."""

    name = "fake"

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._points: dict[str, tuple[np.ndarray, str]] = {}

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Payload]) -> None:
        for chunk_id, vector, payload in zip(ids, vectors, payloads, strict=True):
            self._points[chunk_id] = (np.asarray(vector, np.float32), str(payload["doc_id"]))

    def delete(self, ids: Sequence[str] | None = None, doc_ids: Sequence[str] | None = None) -> None:
        docs = set(doc_ids or ())
        gone = set(ids or ()) | {i for i, (_, d) in self._points.items() if d in docs}
        for chunk_id in gone:
            self._points.pop(chunk_id, None)

    def search(self, vector: np.ndarray, k: int, doc_ids: Sequence[str] | None = None) -> list[tuple[str, float]]:
        docs = None if doc_ids is None else set(doc_ids)
        ids = [i for i, (_, d) in self._points.items() if docs is None or d in docs]
        if not ids or k <= 0:
            return []
        matrix = np.stack([self._points[i][0] for i in ids])
        return top_k(ids, matrix @ np.asarray(vector, np.float32), k)

    def count(self) -> int:
        return len(self._points)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        ids = list(self._points)
        vectors = np.stack([self._points[i][0] for i in ids]) if ids else np.zeros((0, self.dim), np.float32)
        np.savez(folder / _FILE, vectors=vectors,
                 meta=np.array(json.dumps({"ids": ids, "docs": [self._points[i][1] for i in ids]})))

    @classmethod
    def load(cls, folder: Path, dim: int) -> FakeVectors:
        data = np.load(folder / _FILE)
        meta = json.loads(str(data["meta"]))
        fake = cls(dim)
        fake.upsert(meta["ids"], data["vectors"], [{"doc_id": d} for d in meta["docs"]])
        return fake


@register("fake")
def _open(spec: VectorSpec, folder: Path | None) -> FakeVectors:
    if folder is not None and (folder / _FILE).exists():
        return FakeVectors.load(folder, spec.dim)
    return FakeVectors(spec.dim)
