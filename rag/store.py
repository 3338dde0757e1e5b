"""Store: the index on disk — FAISS vectors, a BM25 lexical index, chunk records, sources, manifest.

Every save writes a new generation folder and then swaps the ``CURRENT`` pointer with one atomic
rename, so a crash or kill mid-ingestion leaves the previous index complete and loadable.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np
from scipy import sparse

from rag.errors import IndexMismatch, NotReady
from rag.types import Chunk

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_POINTER = "CURRENT"


# --- dense -------------------------------------------------------------------------------------------
class VectorStore(Protocol):
    def add(self, vectors: np.ndarray) -> None: ...
    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, rows)`` of the ``k`` nearest rows by inner product, best first."""
        ...
    def save(self, path: Path) -> None: ...


class FaissStore:
    """Inner product over unit vectors (= cosine). ``flat`` is exact; ``hnsw`` is approximate."""

    def __init__(self, dim: int, kind: str = "flat", index: Any = None) -> None:
        self.kind = kind
        self.index = index if index is not None else _FAISS_KINDS[kind](dim)

    def add(self, vectors: np.ndarray) -> None:
        if len(vectors):
            self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self.index.ntotal)
        if k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        scores, rows = self.index.search(np.ascontiguousarray(vector.reshape(1, -1), dtype=np.float32), k)
        keep = rows[0] >= 0
        return scores[0][keep], rows[0][keep]

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, kind: str) -> FaissStore:
        return cls(0, kind, faiss.read_index(str(path)))


def _hnsw(dim: int) -> Any:
    index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = 128
    return index


_FAISS_KINDS: dict[str, Callable[[int], Any]] = {
    "flat": faiss.IndexFlatIP,
    "hnsw": _hnsw,
}


class NumpyStore:
    """Brute-force inner product in numpy: the fake behind the ``VectorStore`` seam."""

    def __init__(self, dim: int) -> None:
        self.vectors = np.zeros((0, dim), np.float32)

    def add(self, vectors: np.ndarray) -> None:
        self.vectors = np.vstack([self.vectors, vectors.astype(np.float32)])

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = self.vectors @ vector.astype(np.float32)
        rows = np.argsort(-scores, kind="stable")[:k]
        return scores[rows], rows

    def save(self, path: Path) -> None:
        np.save(path, self.vectors)


# --- lexical -----------------------------------------------------------------------------------------
_TOKEN = re.compile(r"[\u3400-\u9fff]+|[A-Za-z]+|\d+(?:\.\d+)?")


def lexical_tokens(simplified: str) -> list[str]:
    """Character bigrams of Han runs (a lone character stands alone), Latin words, and numbers."""
    tokens: list[str] = []
    for run in _TOKEN.findall(simplified):
        if "\u3400" <= run[0] <= "\u9fff":
            tokens.extend([run] if len(run) == 1 else [run[i:i + 2] for i in range(len(run) - 1)])
        else:
            tokens.append(run.lower())
    return tokens


@dataclass
class Bm25:
    """Okapi BM25; the per-term weights are precomputed into a sparse matrix (rows = chunks)."""

    vocab: dict[str, int]
    weights: sparse.csr_matrix

    @classmethod
    def build(cls, texts: Sequence[str], k1: float = 1.2, b: float = 0.75) -> Bm25:
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        vals: list[int] = []
        lengths = np.zeros(len(texts), np.float32)
        for r, text in enumerate(texts):
            tokens = lexical_tokens(text)
            lengths[r] = len(tokens)
            counts: dict[int, int] = {}
            for t in tokens:
                col = vocab.setdefault(t, len(vocab))
                counts[col] = counts.get(col, 0) + 1
            rows.extend([r] * len(counts))
            cols.extend(counts)
            vals.extend(counts.values())
        tf = sparse.csr_matrix((np.asarray(vals, np.float32), (rows, cols)), shape=(len(texts), len(vocab)))
        df = np.bincount(tf.indices, minlength=len(vocab)).astype(np.float32)
        idf = np.log1p((len(texts) - df + 0.5) / (df + 0.5))
        norm = k1 * (1 - b + b * lengths / max(float(lengths.mean()) if len(texts) else 1.0, 1.0))
        tf = tf.tocoo()
        w = idf[tf.col] * tf.data * (k1 + 1) / (tf.data + norm[tf.row])
        weights = sparse.csr_matrix((w.astype(np.float32), (tf.row, tf.col)), shape=tf.shape)
        return cls(vocab, weights)

    def idf(self, term: str) -> float:
        """Rarity of a term across chunks; a term the index never saw counts as rarest."""
        if not hasattr(self, "_df"):
            self._df = np.diff(self.weights.tocsc().indptr)
        n = self.weights.shape[0]
        col = self.vocab.get(term)
        df = int(self._df[col]) if col is not None else 0
        return float(np.log1p((n - df + 0.5) / (df + 0.5)))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every row for ``query`` (Simplified)."""
        cols = sorted({self.vocab[t] for t in lexical_tokens(query) if t in self.vocab})
        if not cols or self.weights.shape[0] == 0:
            return np.zeros(self.weights.shape[0], np.float32)
        return np.asarray(self.weights[:, cols].sum(axis=1), np.float32).ravel()

    def save(self, folder: Path) -> None:
        sparse.save_npz(folder / "bm25.npz", self.weights)
        (folder / "bm25_vocab.json").write_text(json.dumps(self.vocab, ensure_ascii=False), "utf-8")

    @classmethod
    def load(cls, folder: Path) -> Bm25:
        vocab = json.loads((folder / "bm25_vocab.json").read_text("utf-8"))
        return cls(vocab, sparse.load_npz(folder / "bm25.npz").tocsr())


# --- the index ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DocRecord:
    """What the index knows of one document."""

    doc_id: str
    title: str
    characters: int
    chunks: int
    sha256: str
    ingested_at: str
    root: str = ""
    pages: tuple[int, ...] = ()  # offset where each page starts in the text (PDF only)


@dataclass
class Index:
    """Everything retrieval needs, loaded in memory. Rows of ``vectors`` align with ``chunks``."""

    manifest: dict[str, Any]
    chunks: list[Chunk]
    vectors: np.ndarray
    documents: dict[str, DocRecord]
    sources: dict[str, str]
    dense: VectorStore
    lexical: Bm25
    rows_by_doc: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for row, chunk in enumerate(self.chunks):
            self.rows_by_doc.setdefault(chunk.doc_id, []).append(row)

    @classmethod
    def build(cls, chunks: list[Chunk], vectors: np.ndarray, documents: dict[str, DocRecord],
              sources: dict[str, str], manifest: dict[str, Any], faiss_kind: str = "flat") -> Index:
        """Assemble an index (dense and lexical parts included) from chunk records and vectors."""
        dense = FaissStore(int(manifest["embedder"]["dim"]), faiss_kind)
        dense.add(vectors)
        lexical = Bm25.build([c.simplified for c in chunks])
        manifest = {**manifest, "format": FORMAT_VERSION, "faiss": faiss_kind, "lexical": "bm25-char-bigram",
                    "counts": {"documents": len(documents), "chunks": len(chunks)},
                    "documents": {d.doc_id: d.sha256 for d in documents.values()}}
        return cls(manifest, chunks, vectors, documents, sources, dense, lexical)

    def save(self, root: Path) -> Path:
        """Write a new generation under ``root`` and make it current atomically."""
        root.mkdir(parents=True, exist_ok=True)
        gen = root / f"gen-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        tmp = root / f".tmp-{gen.name}"
        tmp.mkdir()
        self._write(tmp)
        os.rename(tmp, gen)
        pointer = root / f".{_POINTER}.tmp"
        pointer.write_text(gen.name, "utf-8")
        os.replace(pointer, root / _POINTER)
        _remove_stale(root, keep=gen.name)
        log.info("saved index %s (%d chunks)", gen, len(self.chunks))
        return gen

    def _write(self, folder: Path) -> None:
        self.dense.save(folder / "vectors.faiss")
        np.save(folder / "vectors.npy", self.vectors)
        self.lexical.save(folder)
        _write_jsonl(folder / "chunks.jsonl", (asdict(c) for c in self.chunks))
        _write_jsonl(folder / "documents.jsonl",
                     ({**asdict(d), "text": self.sources[d.doc_id]} for d in self.documents.values()))
        (folder / "manifest.json").write_text(json.dumps(self.manifest, ensure_ascii=False, indent=2), "utf-8")

    @classmethod
    def load(cls, root: Path) -> Index:
        """Load the current generation; raise ``NotReady`` when there is none."""
        folder = current_generation(root)
        manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
        chunks = [Chunk(**{**r, "section": tuple(r["section"])}) for r in _read_jsonl(folder / "chunks.jsonl")]
        docs = list(_read_jsonl(folder / "documents.jsonl"))
        sources = {d["doc_id"]: d.pop("text") for d in docs}
        documents = {d["doc_id"]: DocRecord(**{**d, "pages": tuple(d.get("pages", ()))}) for d in docs}
        dense = FaissStore.load(folder / "vectors.faiss", manifest["faiss"])
        return cls(manifest, chunks, np.load(folder / "vectors.npy"), documents, sources, dense,
                   Bm25.load(folder))

    def check_embedder(self, name: str, dim: int) -> None:
        """Fail clearly when the index was built with another embedding model."""
        built = self.manifest["embedder"]
        if built["name"] != name or int(built["dim"]) != dim:
            raise IndexMismatch(
                f"the index was built with embedder {built['name']!r} (dim {built['dim']}) but the current "
                f"embedder is {name!r} (dim {dim}); re-ingest with `rag ingest --rebuild`")


def index_version(root: Path) -> str:
    """A cheap token that changes with every committed update of the index under ``root`` ("" when none):
    a running server compares it to notice an update written by another process."""
    pointer = root / _POINTER
    return pointer.read_text("utf-8").strip() if pointer.exists() else ""


def current_generation(root: Path) -> Path:
    pointer = root / _POINTER
    if not pointer.exists():
        raise NotReady(f"no index at {root}; build one with `rag ingest`")
    return root / pointer.read_text("utf-8").strip()


def _remove_stale(root: Path, keep: str) -> None:
    """Drop older generations and leftovers of interrupted builds."""
    for child in root.iterdir():
        if child.is_dir() and child.name != keep and (child.name.startswith(("gen-", ".tmp-"))):
            shutil.rmtree(child, ignore_errors=True)


def _write_jsonl(path: Path, rows: Any) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _read_jsonl(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)
