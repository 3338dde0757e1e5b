"""Retrieve: hybrid search — dense (e5 ``query: ``) and BM25 over Simplified text, fused by RRF or
weights. A Traditional query finds Simplified passages and the reverse: both sides are Simplified."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rag.errors import InvalidRequest
from rag.question import Question
from rag.store import Index
from rag.types import Hit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrievalConfig:
    fusion: str = "rrf"
    rrf_k: int = 60
    dense_weight: float = 0.5
    candidates: int = 30


@dataclass(frozen=True)
class Ranked:
    """Candidate rows with their dense and lexical scores over the whole index."""

    rows: np.ndarray
    dense: np.ndarray
    lexical: np.ndarray


def search(index: Index, question: Question, top_k: int = 5, doc_ids: Sequence[str] | None = None,
           config: RetrievalConfig = RetrievalConfig()) -> list[Hit]:
    """The ``top_k`` best chunks for ``question`` (its Simplified query and its vector), best first."""
    if top_k <= 0:
        raise InvalidRequest(f"top_k must be greater than 0. Currently, top_k is {top_k}")
    ranked = _candidates(index, question.vector, question.simplified, doc_ids, max(config.candidates, top_k))
    fused = _FUSIONS[config.fusion](ranked, config)
    order = np.argsort(-fused, kind="stable")[:top_k]
    return [Hit(index.chunks[int(ranked.rows[i])], float(fused[i]), float(ranked.dense[i]),
                float(ranked.lexical[i])) for i in order]


def _candidates(index: Index, vector: np.ndarray, simplified: str, doc_ids: Sequence[str] | None,
                n: int) -> Ranked:
    lexical_all = index.lexical.scores(simplified)
    if doc_ids:
        allowed = np.array(sorted({r for d in doc_ids for r in index.rows_by_doc.get(d, [])}), dtype=np.int64)
        dense_rows = allowed[np.argsort(-(index.vectors[allowed] @ vector), kind="stable")[:n]]
        lexical_rows = allowed[np.argsort(-lexical_all[allowed], kind="stable")[:n]]
    else:
        _, dense_rows = index.dense.search(vector, n)
        lexical_rows = np.argsort(-lexical_all, kind="stable")[:n]
        lexical_rows = lexical_rows[lexical_all[lexical_rows] > 0]
    rows = np.array(list(dict.fromkeys([*map(int, dense_rows), *map(int, lexical_rows)])), dtype=np.int64)
    if rows.size == 0:
        return Ranked(rows, np.zeros(0, np.float32), np.zeros(0, np.float32))
    return Ranked(rows, index.vectors[rows] @ vector, lexical_all[rows])


def _rank(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each score (best = 1)."""
    ranks = np.empty(len(scores), np.float32)
    ranks[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
    return ranks


def _rrf(r: Ranked, config: RetrievalConfig) -> np.ndarray:
    lexical = 1.0 / (config.rrf_k + _rank(r.lexical))
    lexical[r.lexical <= 0] = 0.0  # no shared term: the lexical side casts no vote
    return 1.0 / (config.rrf_k + _rank(r.dense)) + lexical


def _weighted(r: Ranked, config: RetrievalConfig) -> np.ndarray:
    top = float(r.lexical.max()) if r.lexical.size else 0.0
    lexical = r.lexical / top if top > 0 else r.lexical
    return config.dense_weight * r.dense + (1 - config.dense_weight) * lexical


_FUSIONS: dict[str, Callable[[Ranked, RetrievalConfig], np.ndarray]] = {"rrf": _rrf, "weighted": _weighted}
