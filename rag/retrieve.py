"""Retrieve: hybrid search — dense (e5 ``query: ``) and BM25 over Simplified text, fused by RRF or
weights. A Traditional query finds Simplified passages and the reverse: both sides are Simplified."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rag.errors import InvalidRequest
from rag.index import Index
from rag.question import Question
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
    """Candidate chunks with their dense and lexical scores."""

    ids: list[str]
    dense: np.ndarray
    lexical: np.ndarray


def search(index: Index, question: Question, top_k: int = 5, doc_ids: Sequence[str] | None = None,
           config: RetrievalConfig = RetrievalConfig()) -> list[Hit]:
    """The ``top_k`` best chunks for ``question`` (its Simplified query and its vector), best first."""
    if top_k <= 0:
        raise InvalidRequest(f"top_k must be greater than 0. Currently, top_k is {top_k}")
    ranked = _candidates(index, question, doc_ids or None, max(config.candidates, top_k))
    if not ranked.ids:
        return []
    fused = _FUSIONS[config.fusion](ranked, config)
    order = np.argsort(-fused, kind="stable")[:top_k]
    chunks = index.chunks([ranked.ids[int(i)] for i in order])
    return [Hit(chunk, float(fused[i]), float(ranked.dense[i]), float(ranked.lexical[i]))
            for i, chunk in zip(order, chunks, strict=True) if chunk is not None]


def _candidates(index: Index, question: Question, doc_ids: Sequence[str] | None, n: int) -> Ranked:
    """The ``n`` best of each retriever (both filter by document inside their index), with both scores."""
    dense = [i for i, _ in index.dense_search(question.vector, n, doc_ids)]
    lexical, dense_lexical = index.lexical_search(question.simplified, n, doc_ids, also=dense)
    scores = dict(zip(dense, dense_lexical.tolist(), strict=True)) | dict(lexical)
    ids = list(dict.fromkeys(dense + [i for i, _ in lexical]))
    if not ids:
        return Ranked([], np.zeros(0, np.float32), np.zeros(0, np.float32))
    dense_scores = (index.chunk_vectors(ids) @ question.vector).astype(np.float32)
    return Ranked(ids, dense_scores, np.array([scores[i] for i in ids], np.float32))


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
