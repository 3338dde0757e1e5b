"""Evidence: does any retrieved document hold what the question asks about?

A 1.5B model both over-refuses and answers unanswerable questions with a figure from a neighbouring
passage, so refusal does not rest on the prompt alone. The question's content words (``Question.words``,
segmented by jieba in ``rag.question``) each weigh by their rarity in the index; a document covers the
question when it contains most of that weight. A question about one county's figure asked with another
county's name, or about a year or item the corpus never mentions, leaves rare words uncovered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from rag.index import Index
from rag.types import Hit

# Missing a place or a year the question names means the document is about something else.
MUST_PENALTY = 0.5


@dataclass(frozen=True)
class Evidence:
    """The best document's share of the question's weight, the best passage similarity, what is missing."""

    coverage: float
    best_dense: float
    doc_id: str = ""
    missing: tuple[str, ...] = ()
    by_doc: tuple[tuple[str, float], ...] = ()
    musts: tuple[str, ...] = ()

    def covering(self, threshold: float) -> set[str]:
        """Documents that cover the question at least to ``threshold``."""
        return {doc for doc, score in self.by_doc if score >= threshold}


def held(weights: dict[str, float], text: str) -> tuple[float, tuple[str, ...]]:
    """The share of the words' total weight that ``text`` contains, and the words it misses: the one notion
    of coverage, for a document (``EvidenceJudge``) and for the sentences an answer is cited from."""
    missing = tuple(w for w in weights if w not in text)
    total = sum(weights.values())
    return (1.0 - sum(weights[w] for w in missing) / total if total else 0.0), missing


class EvidenceJudge:
    """Measures, for an index, how well retrieved documents cover a question."""

    def __init__(self, index: Index) -> None:
        self._index = index

    def weight(self, word: str) -> float:
        """Rarity of a word across chunks (the lexical index's document frequencies); a word no chunk
        contains weighs most."""
        return self._index.word_weight(word)

    def assess(self, hits: Sequence[Hit], words: Sequence[tuple[str, bool]]) -> Evidence:
        """How well the hits' documents cover the question's content ``words`` (``Question.words``: each with
        whether it is a must)."""
        if not hits:
            return Evidence(0.0, -1.0)
        best_dense = max(h.dense for h in hits)
        if not words:  # "是什么？": nothing to look for, so nothing can be found
            return Evidence(0.0, best_dense)
        weights = {w: self.weight(w) for w, _ in words}
        must = {w for w, m in words if m}
        best = Evidence(-1.0, best_dense)
        scores: list[tuple[str, float]] = []
        for doc_id in dict.fromkeys(h.chunk.doc_id for h in hits):
            share, missing = held(weights, self._index.document_text(doc_id))  # clean, Simplified: from ingest
            score = share - MUST_PENALTY * len(must.intersection(missing))
            scores.append((doc_id, score))
            if score > best.coverage:
                best = Evidence(score, best_dense, doc_id, missing)
        return replace(best, by_doc=tuple(scores), musts=tuple(sorted(must)))
