"""Question: one request's question, analysed once (script, Simplified form, content words, places and
years, query vector) and passed down to retrieval, evidence, prompt and citation, which read it and never
convert, segment or embed the question again."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from rag.embed import Embedder
from rag.errors import InvalidRequest
from rag.normalize import is_traditional, to_simplified


@dataclass(frozen=True, eq=False)
class Question:
    """``original`` is what the user asked; ``query`` what retrieval looks for (a follow-up carries the
    earlier question); ``simplified`` is ``query`` in Simplified script; ``traditional`` says the user wrote
    in Traditional (the answer follows); ``vector`` is the embedded ``simplified`` (``query: ``)."""

    original: str
    query: str
    simplified: str
    traditional: bool
    vector: np.ndarray

    @cached_property
    def words(self) -> tuple[tuple[str, bool], ...]:
        """Content words of ``simplified``, each with whether it is a must (a place name or a year).
        Segmented once, on first use (a plain search never needs them)."""
        from rag.evidence import content_words  # the evidence stage owns the word lists

        return tuple(content_words(self.simplified))

    @property
    def musts(self) -> tuple[str, ...]:
        """The places and years the question names, sorted."""
        return tuple(sorted(w for w, must in self.words if must))

def analyse(original: str, embedder: Embedder, query: str | None = None) -> Question:
    """Analyse a question once: script, Simplified form, content words, places and years, vector."""
    query = original if query is None else query
    if not query.strip():
        raise InvalidRequest("query must not be empty")
    simplified = to_simplified(query)
    return Question(original=original, query=query, simplified=simplified, traditional=is_traditional(original),
                    vector=embedder.embed_query(simplified))
