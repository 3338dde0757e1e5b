"""The embedded default vector index: FAISS inner product over unit vectors (= cosine), keyed by chunk.

``flat`` is exact; ``hnsw`` is approximate and faster on large corpora. Points are keyed by the chunk id's
64-bit key (``IndexIDMap2``), so deleting one document removes only its rows. HNSW graphs cannot drop a
node: a deleted HNSW point is masked out of every search and dropped for good when the index is rebuilt
from its vectors (``compact``). A ``doc_ids`` filter is an id selector inside the FAISS search.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from rag.index.keys import chunk_id_of, keys_of
from rag.index.vectors.base import Payload, VectorSpec

log = logging.getLogger(__name__)

EF_SEARCH = 128
# One query at a time: OpenMP threads gain nothing on one query and, on a machine whose cores are busy
# (the LLM runs beside us), their spin-waits made a 100k-vector search 5x slower (76 ms vs 14 ms). The
# setting is per thread: this call covers the importing thread, ``search`` covers every other one (the
# server searches on its worker threads, where OpenMP starts with one thread per core: 24 ms vs 2.9 ms).
faiss.omp_set_num_threads(1)
_FILE = "vectors.faiss"
_DOCS = "vector_docs.json"


def _hnsw(dim: int) -> Any:
    index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = EF_SEARCH
    return index


KINDS: dict[str, Callable[[int], Any]] = {"flat": faiss.IndexFlatIP, "hnsw": _hnsw}


class FaissVectors:
    """A ``VectorIndex`` over a FAISS index (``flat`` or ``hnsw``)."""

    def __init__(self, dim: int, kind: str = "flat", index: Any = None,
                 docs: dict[int, str] | None = None, dead: set[int] | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown FAISS index kind {kind!r}; known: {sorted(KINDS)}")
        self.kind, self.dim, self.name = kind, dim, f"faiss-{kind}"
        self._index = index if index is not None else faiss.IndexIDMap2(KINDS[kind](dim))
        self._doc_of: dict[int, str] = docs or {}
        self._dead: set[int] = dead or set()  # hnsw only: present in the graph, deleted
        self._by_doc: dict[str, set[int]] | None = None  # built on first use: a plain search never needs it

    @property
    def _keys_of_doc(self) -> dict[str, set[int]]:
        """The live keys of each document (for ``doc_ids`` filters and deletes by document)."""
        if self._by_doc is None:
            self._by_doc = {}
            for key, doc in self._doc_of.items():
                if key not in self._dead:
                    self._by_doc.setdefault(doc, set()).add(key)
        return self._by_doc

    # --- writes ------------------------------------------------------------------------------------
    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Payload]) -> None:
        if not (len(ids) == len(vectors) == len(payloads)):
            raise ValueError(f"upsert needs as many vectors and payloads as ids: {len(ids)}, {len(vectors)}, "
                             f"{len(payloads)}")
        keys = keys_of(ids)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        if self.kind == "hnsw":
            # An id names its content, so a stored point already holds this vector: revive it, add the rest.
            fresh = np.array([k not in self._doc_of for k in keys.tolist()], dtype=bool)
            self._dead.difference_update(keys.tolist())
            keys, vectors = keys[fresh], vectors[fresh]
            payloads = [p for p, f in zip(payloads, fresh, strict=True) if f]
        else:
            self._remove([k for k in keys.tolist() if k in self._doc_of])
        if len(keys):
            self._index.add_with_ids(vectors, keys)
        for key, payload in zip(keys.tolist(), payloads, strict=True):
            self._doc_of[key] = str(payload["doc_id"])
        for key in keys_of(ids).tolist():
            self._keys_of_doc.setdefault(self._doc_of[key], set()).add(key)

    def delete(self, ids: Sequence[str] | None = None, doc_ids: Sequence[str] | None = None) -> None:
        keys = set(keys_of(ids or []).tolist())
        for doc in doc_ids or []:
            keys |= self._keys_of_doc.get(doc, set())
        keys = {k for k in keys if k in self._doc_of and k not in self._dead}
        if self.kind == "hnsw":
            self._dead |= keys
        else:
            self._remove(sorted(keys))
        for key in keys:
            doc_keys = self._keys_of_doc.get(self._doc_of[key])
            if doc_keys is not None:
                doc_keys.discard(key)
                if not doc_keys:
                    del self._keys_of_doc[self._doc_of[key]]
            if self.kind != "hnsw":
                del self._doc_of[key]

    def _remove(self, keys: Sequence[int]) -> None:
        if keys:
            self._index.remove_ids(faiss.IDSelectorBatch(np.asarray(keys, dtype=np.int64)))

    # --- reads -------------------------------------------------------------------------------------
    def count(self) -> int:
        return int(self._index.ntotal) - len(self._dead)

    def search(self, vector: np.ndarray, k: int, doc_ids: Sequence[str] | None = None) -> list[tuple[str, float]]:
        selector: Any = None
        limit = self.count()
        if doc_ids is not None:
            allowed = sorted({key for d in doc_ids for key in self._keys_of_doc.get(d, ())})
            selector, limit = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64)), len(allowed)
        elif self._dead:
            selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.asarray(sorted(self._dead), dtype=np.int64)))
        k = min(k, limit)
        if k <= 0:
            return []
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self.dim)
        params: Any = None
        if selector is not None:
            params = _search_parameters(self.kind, selector, max(EF_SEARCH, k))
        with _one_thread():
            scores, keys = self._index.search(query, k, params=params)
        return [(chunk_id_of(int(key)), float(s)) for s, key in zip(scores[0], keys[0], strict=True) if key != -1]

    # --- persistence -------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self._index, str(folder / _FILE))
        docs = sorted(set(self._doc_of.values()))
        position = {d: i for i, d in enumerate(docs)}
        keys = list(self._doc_of)
        state = {"kind": self.kind, "dim": self.dim, "docs": docs, "keys": keys,
                 "doc_of_key": [position[self._doc_of[k]] for k in keys], "dead": sorted(self._dead)}
        (folder / _DOCS).write_text(json.dumps(state), "utf-8")

    @classmethod
    def load(cls, folder: Path) -> FaissVectors:
        state = json.loads((folder / _DOCS).read_text("utf-8"))
        docs = state["docs"]
        doc_of = {int(k): docs[i] for k, i in zip(state["keys"], state["doc_of_key"], strict=True)}
        index = faiss.read_index(str(folder / _FILE))
        return cls(int(state["dim"]), state["kind"], index, doc_of, set(state["dead"]))

    def compact(self) -> FaissVectors:
        """An HNSW index rebuilt without its deleted points (a flat index has none)."""
        if not self._dead:
            return self
        live = [k for k in self._doc_of if k not in self._dead]
        vectors = np.vstack([self._index.reconstruct(int(k)) for k in live]) if live else \
            np.zeros((0, self.dim), np.float32)
        fresh = FaissVectors(self.dim, self.kind)
        fresh.upsert([chunk_id_of(k) for k in live], vectors, [{"doc_id": self._doc_of[k]} for k in live])
        return fresh


@contextmanager
def _one_thread() -> Iterator[None]:
    """FAISS's OpenMP threads of the calling thread set to one, and back."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _search_parameters(kind: str, selector: Any, ef_search: int) -> Any:
    """Search parameters carrying an id selector (faiss's type stubs do not know these classes)."""
    module: Any = faiss
    if kind == "hnsw":
        return module.SearchParametersHNSW(sel=selector, efSearch=ef_search)
    return module.SearchParameters(sel=selector)


def opener(kind: str) -> Callable[[VectorSpec, Path | None], FaissVectors]:
    """Opens a ``faiss-<kind>`` index: reopens what ``save`` wrote, else a new empty one."""
    def open_kind(spec: VectorSpec, folder: Path | None) -> FaissVectors:
        if folder is not None and (folder / _FILE).exists():
            loaded = FaissVectors.load(folder)
            if loaded.kind != kind or loaded.dim != spec.dim:
                raise ValueError(f"{folder} holds a faiss-{loaded.kind} index of dim {loaded.dim}, "
                                 f"not faiss-{kind} of dim {spec.dim}")
            return loaded
        return FaissVectors(spec.dim, kind)
    return open_kind
